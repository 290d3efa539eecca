"""Does the recipe learn? SFT then two curriculum RL phases on the tiny model, on a CPU, in minutes.

The task is one the tiny model can pick up quickly: one-hop questions ("Who founded X?") over
generated documents whose lengths span two curriculum bands; the answer must be copied out of
the document. Warm-up SFT teaches the answer format and some copying; the RL phases then raise
the reward. The report gives, with the seed, the mean reward over the first and last third of
each phase's steps and the validation accuracy (greedy, same held-out set) after SFT and after
each phase; the check passes when every phase's reward rose and the final validation accuracy
is not below SFT's.

    python -m longrl.train.learning_check --work-dir build/learning-check --seed 0
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from longrl.data.prepare import PrepareConfig, prepare
from longrl.data.synthetic import GenerateConfig, generate
from longrl.tiny_model import LEARNER_SHAPE, TinyModelConfig, build_tiny_model
from longrl.tracking import read_metrics
from longrl.train.config import TINY_RL, TINY_SFT, RLStepConfig, SFTStepConfig, with_overrides
from longrl.train.rl import run_rl
from longrl.train.sft import run_sft


class LearningCheckConfig(BaseModel):
    """Sizes of the CPU learning check; the defaults take a few minutes on two cores."""

    work_dir: str = Field("build/learning-check", description="Where data, models and the report go")
    seed: int = Field(0, description="Seed of the model, the data and training")
    sft_steps: int = Field(1200, ge=1, description="SFT optimizer steps (16 sequences each)")
    sft_learning_rate: float = Field(2e-3, gt=0, description="SFT peak learning rate")
    sft_lr_scheduler: str = Field("cosine", description="SFT learning-rate schedule")
    rl_steps: int = Field(60, ge=3, description="Optimizer steps per RL phase")
    rl_learning_rate: float = Field(5e-4, gt=0, description="RL learning rate")
    rl_warmup_steps: int = Field(3, ge=0, description="RL learning-rate warm-up steps")
    rl_prompts_per_step: int = Field(4, ge=1, description="Prompts (groups of 8) per RL step")
    rl_records: int = Field(2000, ge=100, description="Generated RL examples (split into the two bands)")
    validation_examples: int = Field(200, ge=10, description="Held-out examples scored after each step")
    doc_tokens_max: int = Field(100, ge=24, description="Longest generated document, in tokens")
    phase_max_tokens: list[int] = Field([110, 170], description="The two curriculum bands (prompt tokens)")


def _third_means(values: list[float]) -> tuple[float, float]:
    third = max(1, len(values) // 3)
    return sum(values[:third]) / third, sum(values[-third:]) / third


def _rewards(output_dir: Path) -> list[float]:
    return [m["train/reward"] for m in read_metrics(output_dir) if "train/reward" in m]


def run(config: LearningCheckConfig) -> dict[str, Any]:
    work = Path(config.work_dir)
    started = time.monotonic()
    model = build_tiny_model(
        TinyModelConfig(
            output_dir=str(work / "base-model"),
            **LEARNER_SHAPE,
            seed=config.seed,
        )
    )
    task = {
        "kinds": ["multihop"],
        "max_hops": 1,
        "distractors": 0,
        "doc_tokens_min": 16,
        "doc_tokens_max": config.doc_tokens_max,
    }
    generate(
        GenerateConfig(
            output=str(work / "sft.jsonl"),
            num_records=config.sft_steps * 16 // 3 + 64,
            sft=True,
            seed=config.seed,
            **task,
        )
    )
    generate(
        GenerateConfig(
            output=str(work / "rl.jsonl"), num_records=config.rl_records, seed=config.seed + 1, **task
        )
    )
    prepare(
        PrepareConfig(
            inputs=[str(work / "sft.jsonl")],
            output_dir=str(work / "sft-data"),
            tokenizer=str(model),
            sft=True,
            phase_max_tokens=[config.phase_max_tokens[-1]],
            validation_fraction=0,
        )
    )
    stats = prepare(
        PrepareConfig(
            inputs=[str(work / "rl.jsonl")],
            output_dir=str(work / "rl-data"),
            tokenizer=str(model),
            phase_max_tokens=config.phase_max_tokens,
            validation_fraction=min(0.5, config.validation_examples / config.rl_records),
            seed=config.seed,
        )
    )
    validation = {
        "validation_file": str(work / "rl-data" / "validation.parquet"),
        "validation_max_examples": config.validation_examples,
        "seed": config.seed,
    }
    sft = run_sft(
        with_overrides(
            SFTStepConfig,
            TINY_SFT,
            {
                "model": str(model),
                "output_dir": str(work / "sft"),
                "train_file": str(work / "sft-data/train-phase1.parquet"),
                "max_steps": config.sft_steps,
                "learning_rate": config.sft_learning_rate,
                "lr_scheduler_type": "constant",
                "logging_steps": 50,
                **validation,
            },
        )
    )
    report: dict[str, Any] = {
        "seed": config.seed,
        "data": [
            {"phase": p["phase"], "train": p["train_rows"], "validation": p["validation_rows"]}
            for p in stats["phases"]
        ],
        "sft": {"steps": sft["global_step"], "val_accuracy": sft["validation"]["val/accuracy"]},
        "phases": [],
    }
    previous, earlier = work / "sft" / "model", []
    for phase in (1, 2):
        out = work / f"rl-phase{phase}"
        result = run_rl(
            with_overrides(
                RLStepConfig,
                TINY_RL,
                {
                    "model": str(previous),
                    "output_dir": str(out),
                    "phase": phase,
                    "train_file": str(work / f"rl-data/train-phase{phase}.parquet"),
                    "retrospective_from": earlier,
                    "max_steps": config.rl_steps,
                    "learning_rate": config.rl_learning_rate,
                    "train_batch_prompts": config.rl_prompts_per_step,
                    "generation_batch_prompts": config.rl_prompts_per_step,
                    **validation,
                },
            )
        )
        first, last = _third_means(_rewards(out))
        report["phases"].append(
            {
                "phase": phase,
                "steps": result["global_step"],
                "reward_first_third": first,
                "reward_last_third": last,
                "val_accuracy": result["validation"]["val/accuracy"],
                "retrospective_drawn": result["curriculum"]["retrospective_drawn"],
            }
        )
        previous, earlier = out / "model", [*earlier, str(out)]
    report["seconds"] = round(time.monotonic() - started, 1)
    report["checks"] = {
        "reward_rose_in_every_phase": all(
            p["reward_last_third"] > p["reward_first_third"] for p in report["phases"]
        ),
        "final_val_not_below_sft": report["phases"][-1]["val_accuracy"] >= report["sft"]["val_accuracy"],
    }
    report["passed"] = all(report["checks"].values())
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"learning check (seed {report['seed']}, {report['seconds']} s)",
        f"  SFT      {report['sft']['steps']:>5} steps   validation accuracy {report['sft']['val_accuracy']:.3f}",
    ]
    for p in report["phases"]:
        lines.append(
            f"  RL {p['phase']}     {p['steps']:>5} steps   validation accuracy {p['val_accuracy']:.3f}   "
            f"reward {p['reward_first_third']:.3f} -> {p['reward_last_third']:.3f} (first -> last third)"
        )
    lines += [f"  {name}: {'yes' if ok else 'NO'}" for name, ok in report["checks"].items()]
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from pydantic_settings import CliApp, CliSettingsSource

    source = CliSettingsSource(
        LearningCheckConfig, cli_prog_name="python -m longrl.train.learning_check", cli_kebab_case=True
    )
    config = CliApp.run(
        LearningCheckConfig, cli_args=sys.argv[1:] if argv is None else argv, cli_settings_source=source
    )
    report = run(config)
    print(format_report(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
