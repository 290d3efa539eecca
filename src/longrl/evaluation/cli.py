"""``python -m longrl.evaluation``: evaluate a model, compare evaluations, make synthetic benchmark files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import CliApp, CliPositionalArg, CliSubCommand

from longrl.cli import ConfigFileOption, run_cli
from longrl.data.io import DataError
from longrl.data.synthetic import GenerateConfig, generate_records
from longrl.evaluation.benchmarks import BENCHMARKS, write_benchmark_file
from longrl.evaluation.report import comparison_markdown
from longrl.evaluation.run import EvalConfig, evaluate, read_summary
from longrl.preflight import evaluation_problems, require
from longrl.storage import StorageError

# synthetic stand-ins: the generator's kinds that match each benchmark's questions
_SYNTHETIC_KIND = {"docmath": "docmath"}


class RunCommand(ConfigFileOption, EvalConfig):
    """Generate answers with vLLM, score them (EM, sub-EM, F1, judge, max(EM, judge)), write the report."""

    def cli_cmd(self) -> None:
        config = self.step_config(EvalConfig)
        require("evaluation", evaluation_problems(config))
        summary = evaluate(config)
        print(json.dumps(summary, indent=2))


class CompareCommand(BaseModel):
    """Print a Markdown comparison of evaluations (their output directories), the first as the reference."""

    evaluations: CliPositionalArg[list[str]] = Field(description="Output directories of evaluations")

    def cli_cmd(self) -> None:
        summaries = {}
        for directory in self.evaluations:
            summary = read_summary(directory)
            summaries[summary.get("model") or directory] = summary
        print(comparison_markdown(summaries), end="")


class SyntheticCommand(BaseModel):
    """Write generated questions in a benchmark's published file layout (for trying the pipeline offline)."""

    benchmark: str = Field(description=f"One of: {', '.join(BENCHMARKS)}")
    output: str = Field(description="JSONL file to write")
    num_records: int = Field(32, ge=1, description="Questions")
    doc_tokens_min: int = Field(256, ge=16, description="Shortest document, in tokens (estimated)")
    doc_tokens_max: int = Field(2048, ge=16, description="Longest document, in tokens (estimated)")
    seed: int = Field(0, description="Seed")

    def cli_cmd(self) -> None:
        if self.benchmark not in BENCHMARKS:
            raise DataError(f"unknown benchmark '{self.benchmark}'; known: {', '.join(BENCHMARKS)}")
        kind = _SYNTHETIC_KIND.get(self.benchmark, "multihop")
        records = generate_records(
            GenerateConfig(
                output=self.output,
                num_records=self.num_records,
                kinds=[kind],
                doc_tokens_min=self.doc_tokens_min,
                doc_tokens_max=self.doc_tokens_max,
                seed=self.seed,
            )
        )
        path = write_benchmark_file(self.benchmark, list(records), Path(self.output))
        print(f"wrote {self.num_records} {self.benchmark} questions to {path}")


class EvaluationCli(BaseModel):
    """longrl evaluation on long-document QA benchmarks (DocMath, Frames, 2WikiMultihopQA, HotpotQA, Musique,
    NarrativeQA, Qasper)."""

    run: CliSubCommand[RunCommand]
    compare: CliSubCommand[CompareCommand]
    synthetic: CliSubCommand[SyntheticCommand]

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_cli(
        EvaluationCli,
        "python -m longrl.evaluation",
        argv,
        known_errors=(DataError, StorageError, FileNotFoundError, ValueError),
    )
