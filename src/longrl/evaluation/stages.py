"""What each stage of a run added: every stage's model (base, SFT, each RL phase) evaluated on the same
questions as the final one, in one table with a column per stage, notes that explain its zeros, and a
bar chart.

Each stage is evaluated exactly as the final model is (``longrl.evaluation.run.evaluate``: the same
benchmarks, prompts, sampling and judge) into ``<output>/stages/<stage>/``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrl import storage
from longrl.evaluation.report import comparison_plot
from longrl.evaluation.run import PREDICTIONS_FILE, EvalConfig, evaluate

logger = logging.getLogger(__name__)

STAGES_DIR = "stages"
STAGE_TABLE_FILE = "stages.md"
STAGE_PLOT_FILE = "stages.png"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def stage_config(config: EvalConfig, name: str, model: str) -> EvalConfig:
    """One earlier stage's evaluation: the final one's questions and settings, no baseline."""
    return config.model_copy(
        update={
            "model": model,
            "output_dir": storage.join(config.output_dir, STAGES_DIR, slug(name)),
            "model_name": name,
            "baseline": None,
            # a run of its own next to the final evaluation's: "evaluation-sft", "evaluation-rl-phase-1", ...
            "tracking": config.tracking.model_copy(
                update={
                    "run_name": f"{config.tracking.run_name or 'evaluation'}-{slug(name)}",
                    "run_id": None,
                }
            ),
        }
    )


def answered(output_dir: str) -> dict[str, tuple[int, int, int]]:
    """Per benchmark: (answers with a final answer, answers, answers the judge accepted that the match missed)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(storage.localize(storage.join(output_dir, PREDICTIONS_FILE))).to_pylist()
    counts: dict[str, list[int]] = {}
    for row in rows:
        count = counts.setdefault(row["benchmark"], [0, 0, 0])
        count[0] += bool(row["prediction"])
        count[1] += 1
        count[2] += row["em"] < 1 and (row["judge"] or 0) >= 1
    return {name: (a, n, rescued) for name, (a, n, rescued) in counts.items()}


def stage_table(
    summaries: dict[str, dict[str, Any]],
    answers: dict[str, dict[str, tuple[int, int, int]]],
    max_new_tokens: int,
) -> str:
    """Benchmarks down, stages across (score = max(EM, judge), %), then notes that say why a cell is 0."""
    names = list(summaries)
    benchmarks = sorted({b for summary in summaries.values() for b in summary["benchmarks"]})
    lines = ["| benchmark | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for benchmark in benchmarks:
        cells = []
        for name in names:
            score = summaries[name]["benchmarks"].get(benchmark, {}).get("score")
            cells.append("–" if score is None else f"{100 * score:.1f}")
        lines.append(f"| {benchmark} | " + " | ".join(cells) + " |")
    lines.append(
        "| **average** | " + " | ".join(f"{100 * summaries[n]['average']:.1f}" for n in names) + " |"
    )
    shares = []
    for name in names:
        given = sum(answers[name].get(b, (0, 0, 0))[0] for b in benchmarks)
        total = sum(answers[name].get(b, (0, 0, 0))[1] for b in benchmarks)
        shares.append(f"{100 * given / total:.1f}" if total else "–")
    lines.append(
        "| *answered* | " + " | ".join(shares) + " |"
    )  # what a stage changed even where no score moved
    questions = {b: summaries[names[-1]]["benchmarks"][b]["n"] for b in benchmarks}
    notes = [
        "",
        "Score = max(exact match, judge) in %, on the same held-out questions for every column ("
        + ", ".join(f"{b}: {n}" for b, n in questions.items())
        + "); answered = answers that end with a final answer the scorer can read.",
    ]
    for name in names:
        parts = []
        for benchmark in benchmarks:
            given, total, rescued = answers[name].get(benchmark, (0, 0, 0))
            score = summaries[name]["benchmarks"].get(benchmark, {}).get("score")
            part = f"{benchmark} answered {given}/{total}"
            if rescued:
                part += f", {rescued} accepted by the judge only"
            if score == 0 and total:
                part += (
                    f" (0: no final answer within {max_new_tokens} new tokens)"
                    if given == 0
                    else " (0: every answer given was wrong)"
                )
            parts.append(part)
        notes.append(f"- {name}: " + "; ".join(parts) + ".")
    return "\n".join(lines + notes) + "\n"


def evaluate_stages(
    config: EvalConfig,
    final: dict[str, Any],
    stages: dict[str, str],
    final_name: str,
    run: Callable[[EvalConfig], dict[str, Any]] = evaluate,
) -> dict[str, dict[str, Any]]:
    """Evaluates each earlier stage (name -> model) with ``run``, as the final model was (its ``final``
    summary is given); writes the stage table and chart next to the final evaluation; returns the summaries."""
    summaries = {name: run(stage_config(config, name, model)) for name, model in stages.items()}
    summaries[final_name] = final
    answers = {name: answered(storage.join(config.output_dir, STAGES_DIR, slug(name))) for name in stages}
    answers[final_name] = answered(config.output_dir)
    table = stage_table(summaries, answers, config.generation.max_new_tokens)
    storage.write_text(storage.join(config.output_dir, STAGE_TABLE_FILE), table)
    if storage.is_s3(config.output_dir):
        plot = storage.cache_dir() / "stage-plots" / STAGE_PLOT_FILE
        plot.parent.mkdir(parents=True, exist_ok=True)
        comparison_plot(summaries, plot)
        storage.copy_file(str(plot), storage.join(config.output_dir, STAGE_PLOT_FILE))
    else:
        comparison_plot(summaries, Path(config.output_dir) / STAGE_PLOT_FILE)
    return summaries


def log_stages(run_id: str, tracking_uri: str, output_dir: str, summaries: dict[str, dict[str, Any]]) -> None:
    """The stage table, chart and per-stage scores into the evaluation's MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    for name, summary in summaries.items():
        client.log_metric(run_id, f"stage/{slug(name)}/average", summary["average"])
        for benchmark, values in summary["benchmarks"].items():
            client.log_metric(run_id, f"stage/{slug(name)}/{benchmark}", values["score"])
    for file in (STAGE_TABLE_FILE, STAGE_PLOT_FILE):
        client.log_artifact(run_id, str(storage.localize(storage.join(output_dir, file))), "evaluation")
