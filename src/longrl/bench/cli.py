"""``python -m longrl.bench``: run the benchmarks (``make bench``), or compare two reports."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import CliApp, CliPositionalArg, CliSubCommand

from longrl.bench.config import BenchConfig
from longrl.bench.report import JSON_FILE, MARKDOWN_FILE, comparison_markdown, read_report
from longrl.cli import ConfigFileOption, UsageError, run_cli


class CompareCommand(BaseModel):
    """Print each figure's ratio (and value) in two bench.json files and how it changed."""

    old: CliPositionalArg[str] = Field(description="The earlier bench.json (or its directory)")
    new: CliPositionalArg[str] = Field(description="The later bench.json (or its directory)")
    tolerance: float = Field(0.05, ge=0, description="Relative ratio change still called 'same' (noise)")

    def cli_cmd(self) -> None:
        print(comparison_markdown(_load(self.old), _load(self.new), self.tolerance), end="")


def _load(path: str):
    file = Path(path) / JSON_FILE if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such report (expected a bench.json or a directory holding one)")
    return read_report(file)


class BenchCli(ConfigFileOption, BenchConfig):
    """longrl benchmarks: each figure is a ratio against a baseline measured in the same run.

    Without a subcommand, runs the benchmarks and writes bench.json and bench.md.
    """

    compare: CliSubCommand[CompareCommand]

    def cli_cmd(self) -> None:
        if self.compare is not None:
            CliApp.run_subcommand(self)
            return
        from longrl.bench.runner import run_benchmarks

        config = self.step_config(BenchConfig)
        report = run_benchmarks(config)
        out = Path(config.output_dir)
        print((out / MARKDOWN_FILE).read_text(), end="")
        failed = [name for name, result in report.benchmarks.items() if result.status == "failed"]
        print(f"\nwrote {out / JSON_FILE} and {out / MARKDOWN_FILE}")
        if failed:
            raise RuntimeError(f"benchmark(s) failed: {', '.join(failed)}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "openai"):  # a line per judge request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run_cli(BenchCli, "python -m longrl.bench", argv, known_errors=(RuntimeError, OSError))
