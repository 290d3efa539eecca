"""An evaluation run: prompts, vLLM generation, scoring, and the artifacts a person looks at."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from longrl import storage
from longrl.evaluation.benchmarks import EvalRecord, load_benchmark
from longrl.evaluation.generation import GenerationConfig, build_prompt, generate
from longrl.evaluation.report import comparison_markdown, comparison_plot
from longrl.evaluation.scoring import score_all, summarize
from longrl.rewards import JudgeConfig, LLMJudge
from longrl.tracking import TrackingConfig, flatten, step_run

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.json"
TABLE_FILE = "comparison.md"
PLOT_FILE = "comparison.png"


class EvalConfig(BaseModel):
    """Evaluate a model on long-document QA benchmarks and compare it with a baseline."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model to evaluate: a Hugging Face directory or s3:// URI")
    output_dir: str = Field(description="Where predictions, metrics and the comparison go (local or s3://)")
    benchmarks: dict[str, str] = Field(
        description="Benchmark name -> data file (JSONL/parquet, local or s3://); names: docmath, frames, "
        "2wikimqa, hotpotqa, musique, narrativeqa, qasper"
    )
    model_name: str = Field("candidate", description="The model's name in reports")
    max_input_tokens: int = Field(
        120_000, ge=64, description="Longest prompt; longer documents are cut in the middle"
    )
    max_examples: int | None = Field(None, ge=1, description="At most this many questions per benchmark")
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    judge: JudgeConfig | None = Field(
        None, description="The verifier for the LLM-judged score (None: EM only)"
    )
    baseline: str | None = Field(
        None, description="Output directory of an earlier evaluation to compare with"
    )
    baseline_name: str = Field("baseline", description="The baseline's name in reports")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)


def _write_predictions(rows: list[dict[str, Any]], path: Path) -> None:
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("benchmark", pa.string()),
                ("id", pa.string()),
                ("sample", pa.int64()),
                ("question", pa.string()),
                ("answers", pa.list_(pa.string())),
                ("completion", pa.string()),
                ("prediction", pa.string()),
                ("em", pa.float64()),
                ("sub_em", pa.float64()),
                ("f1", pa.float64()),
                ("judge", pa.float64()),
                ("score", pa.float64()),
            ]
        ),
    )
    pq.write_table(table, path)


def read_summary(output_dir: str) -> dict[str, Any]:
    return json.loads(storage.read_text(storage.join(output_dir, METRICS_FILE)))


async def _score(records: list[EvalRecord], completions: list[list[str]], judge_config: JudgeConfig | None):
    if judge_config is None:
        return await score_all(records, completions, None), {}
    async with LLMJudge(judge_config) as judge:
        rows = await score_all(records, completions, judge)
        return rows, judge.stats.snapshot()


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Runs the evaluation; returns the summary (also in metrics.json)."""
    from transformers import AutoTokenizer

    model = str(storage.localize(config.model))
    tokenizer = AutoTokenizer.from_pretrained(model)
    records: list[EvalRecord] = []
    for name, path in config.benchmarks.items():
        loaded = load_benchmark(name, path, limit=config.max_examples)
        logger.info("%s: %d questions from %s", name, len(loaded), path)
        records.extend(loaded)
    prompts, lengths, truncated = [], [], 0
    for record in records:
        prompt, length, cut = build_prompt(tokenizer, record, config.max_input_tokens)
        prompts.append(prompt)
        lengths.append(length)
        truncated += cut
    max_model_len = max(lengths) + config.generation.max_new_tokens
    completions = generate(model, prompts, config.generation, max_model_len)
    rows, judge_stats = asyncio.run(_score(records, completions, config.judge))
    summary = summarize(rows)
    summary.update(
        {
            "model": config.model_name,
            "questions": len(records),
            "truncated_inputs": truncated,
            "judge": judge_stats,
            "judge_model": config.judge.model if config.judge else None,
            "max_input_tokens": config.max_input_tokens,
        }
    )

    evaluations = {config.model_name: summary}
    if config.baseline:
        evaluations = {config.baseline_name: read_summary(config.baseline), **evaluations}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) if storage.is_s3(config.output_dir) else Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_FILE).unlink(missing_ok=True)  # an earlier run's: it would vouch for a mix
        _write_predictions(rows, out / PREDICTIONS_FILE)
        (out / TABLE_FILE).write_text(comparison_markdown(evaluations))
        comparison_plot(evaluations, out / PLOT_FILE)
        # last, atomically: its presence says the evaluation is complete
        storage.write_text(str(out / METRICS_FILE), json.dumps(summary, indent=2) + "\n")
        _track(config, summary, out)
        if storage.is_s3(config.output_dir):
            storage.copy_tree(str(out), config.output_dir, last=(METRICS_FILE,))
    return summary


def _track(config: EvalConfig, summary: dict[str, Any], out: Path) -> None:
    with step_run(
        config.tracking, params=flatten(config.model_dump(mode="json", exclude={"tracking"}))
    ) as run_id:
        if run_id is None:
            return
        import mlflow

        metrics = {"eval/average": summary["average"]}
        for name, values in summary["benchmarks"].items():
            for key in ("em", "sub_em", "f1", "judge", "score"):
                if values.get(key) is not None:
                    metrics[f"eval/{name}/{key}"] = values[key]
        mlflow.log_metrics(metrics)
        for name in (METRICS_FILE, TABLE_FILE, PLOT_FILE, PREDICTIONS_FILE):
            mlflow.log_artifact(str(out / name), artifact_path="evaluation")
