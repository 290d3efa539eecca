"""The per-stage evaluation table: a column per stage, the same questions, notes that explain zeros."""

from pathlib import Path

import pytest

from longrl.evaluation.run import PREDICTIONS_FILE, EvalConfig, _write_predictions
from longrl.evaluation.stages import STAGE_PLOT_FILE, STAGE_TABLE_FILE, evaluate_stages, stage_table


def _summary(scores: dict[str, float]) -> dict:
    benchmarks = {name: {"score": score, "n": 4} for name, score in scores.items()}
    return {"benchmarks": benchmarks, "average": sum(scores.values()) / len(scores)}


def test_the_table_has_a_column_per_stage_and_says_why_a_cell_is_zero() -> None:
    summaries = {
        "base": _summary({"docmath": 0.0, "musique": 0.0}),
        "SFT": _summary({"docmath": 0.0, "musique": 0.25}),
        "RL phase 1": _summary({"docmath": 0.0, "musique": 0.75}),
    }
    answers = {
        "base": {"docmath": (0, 4, 0), "musique": (0, 4, 0)},
        "SFT": {"docmath": (3, 4, 0), "musique": (4, 4, 0)},
        "RL phase 1": {"docmath": (4, 4, 0), "musique": (4, 4, 2)},
    }
    table = stage_table(summaries, answers, max_new_tokens=96)
    lines = table.splitlines()
    assert lines[0] == "| benchmark | base | SFT | RL phase 1 |"
    assert "| musique | 0.0 | 25.0 | 75.0 |" in lines
    assert "| **average** | 0.0 | 12.5 | 37.5 |" in lines
    assert "| *answered* | 0.0 | 87.5 | 100.0 |" in lines
    assert "docmath: 4, musique: 4" in table
    base = next(line for line in lines if line.startswith("- base:"))
    assert "docmath answered 0/4 (0: no final answer within 96 new tokens)" in base
    sft = next(line for line in lines if line.startswith("- SFT:"))
    assert "docmath answered 3/4 (0: every answer given was wrong)" in sft
    assert "musique answered 4/4, 2 accepted by the judge only" in table


def _fake_evaluation(config: EvalConfig, right: float) -> dict:
    """What ``evaluate`` leaves behind, without a model: predictions (half answered) and a summary."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "benchmark": "musique",
            "id": str(i),
            "sample": 0,
            "question": "Who founded X?",
            "answers": ["Kalo Mervin"],
            "completion": "…",
            "prediction": "Kalo Mervin" if i % 2 else None,
            "em": 1.0 if i < 4 * right else 0.0,
            "sub_em": 0.0,
            "f1": 0.0,
            "judge": None,
            "score": 1.0 if i < 4 * right else 0.0,
        }
        for i in range(4)
    ]
    _write_predictions(rows, out / PREDICTIONS_FILE)
    return _summary({"musique": right})


def test_every_stage_is_evaluated_with_the_final_models_settings_and_charted(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    config = EvalConfig(
        model="final", output_dir=str(tmp_path / "eval"), benchmarks={"musique": "q.jsonl"}, max_examples=4
    )
    final = _fake_evaluation(config, right=0.5)
    seen: list[EvalConfig] = []

    def run(stage: EvalConfig) -> dict:
        seen.append(stage)
        return _fake_evaluation(stage, right=0.0 if stage.model_name == "base" else 0.25)

    summaries = evaluate_stages(config, final, {"base": "m/base", "SFT": "m/sft"}, "RL phase 1", run)
    assert list(summaries) == ["base", "SFT", "RL phase 1"]
    assert [(s.model, s.model_name, s.baseline) for s in seen] == [
        ("m/base", "base", None),
        ("m/sft", "SFT", None),
    ]
    assert all(s.max_examples == 4 and s.benchmarks == config.benchmarks for s in seen)
    assert [s.tracking.run_name for s in seen] == ["evaluation-base", "evaluation-sft"]
    assert all(s.output_dir.startswith(config.output_dir) for s in seen)
    table = (tmp_path / "eval" / STAGE_TABLE_FILE).read_text()
    assert "| musique | 0.0 | 25.0 | 50.0 |" in table
    assert (tmp_path / "eval" / STAGE_PLOT_FILE).stat().st_size > 0


def test_the_stages_of_a_run_are_the_base_sft_and_each_rl_phase_in_order(tmp_path) -> None:
    import json

    from longrl.curriculum import CURRICULUM_FILE, DIFFICULTY_FILE
    from longrl.steps import stage_models

    phases = [tmp_path / f"rl{k}" for k in (1, 2, 3)]
    for k, phase in enumerate(phases):
        phase.mkdir()
        (phase / DIFFICULTY_FILE).write_text("")
        (phase / CURRICULUM_FILE).write_text(json.dumps({"retrospective_from": [str(p) for p in phases[:k]]}))
    stages = stage_models("hub/base", str(tmp_path / "sft"), str(phases[-1]))
    assert stages == {
        "base": "hub/base",
        "SFT": str(tmp_path / "sft" / "model"),
        **{f"RL phase {k}": str(phase / "model") for k, phase in enumerate(phases, start=1)},
    }
