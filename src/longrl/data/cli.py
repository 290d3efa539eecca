"""``python -m longrl.data``: generate synthetic data, build the tiny model, prepare datasets, show stats."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import CliApp, CliPositionalArg, CliSubCommand

from longrl.cli import ConfigFileOption, run_cli
from longrl.data.io import DataError
from longrl.data.prepare import STATS_FILE, PrepareConfig, prepare
from longrl.data.stats import file_stats, format_stats
from longrl.data.synthetic import GenerateConfig, generate
from longrl.tiny_model import TinyModelConfig, build_tiny_model


class PrepareCommand(ConfigFileOption, PrepareConfig):
    """Validate, de-duplicate and tokenise QA (or SFT) files; write one dataset per curriculum phase,
    a validation set, rejected.jsonl and stats.json."""

    def cli_cmd(self) -> None:
        stats = prepare(self.step_config(PrepareConfig))
        print(format_stats(stats))
        print(f"\nwrote {self.output_dir}")


class GenerateCommand(ConfigFileOption, GenerateConfig):
    """Generate synthetic long-document QA (numeric, multiple-choice, multi-hop) in DocQA-RL-1.6K's schema."""

    def cli_cmd(self) -> None:
        path = generate(self.step_config(GenerateConfig))
        print(f"wrote {self.num_records} records to {path}")


class TinyModelCommand(ConfigFileOption, TinyModelConfig):
    """Build a tiny random-weight Qwen2 model with a locally trained tokenizer (Hugging Face format)."""

    def cli_cmd(self) -> None:
        path = build_tiny_model(self.step_config(TinyModelConfig))
        print(f"wrote {path}")


class StatsCommand(BaseModel):
    """Show statistics of a prepared directory (its stats.json) or of a QA file (JSONL or parquet)."""

    path: CliPositionalArg[str] = Field(description="A prepared directory, or a .jsonl/.parquet file")
    json_output: bool = Field(False, alias="json", description="Print JSON instead of a table")

    def cli_cmd(self) -> None:
        path = Path(self.path)
        if path.is_dir():
            stats_path = path / STATS_FILE
            if not stats_path.is_file():
                raise DataError(
                    f"{path}: no {STATS_FILE}; is it the output of 'prepare' (and did it finish)?"
                )
            stats = json.loads(stats_path.read_text())
        else:
            stats = file_stats(path)
        print(json.dumps(stats, indent=2) if self.json_output else format_stats(stats))


class DataCli(BaseModel):
    """longrl data tools: synthetic data, the tiny model, dataset preparation and statistics."""

    generate: CliSubCommand[GenerateCommand]
    tiny_model: CliSubCommand[TinyModelCommand]
    prepare: CliSubCommand[PrepareCommand]
    stats: CliSubCommand[StatsCommand]

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)


def main(argv: list[str] | None = None) -> int:
    return run_cli(DataCli, "python -m longrl.data", argv, known_errors=(DataError, OSError))
