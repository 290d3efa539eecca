"""``python -m longrl.train sft|rl``: run a training step under Ray Train (the Ray job entrypoint).

Options come from the step's config (``--help`` lists them), from ``--config FILE`` (YAML/JSON, or
``env:VAR`` to read JSON from an environment variable, which is how a RayJob receives it) and from
``--preset tiny`` (CPU-sized values for the tiny model). Precedence: flags > file > preset > the
recipe's defaults.

Before anything starts (no Ray, no MLflow run), the step's inputs are checked (``longrl.preflight``):
every problem is printed on one line and the command exits with code 2.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field
from pydantic_settings import CliApp, CliSubCommand

from longrl.cli import ConfigFileOption, run_cli
from longrl.preflight import require, training_problems
from longrl.tracking import step_run
from longrl.train.config import PRESETS, RLStepConfig, SFTStepConfig, TrainingConfig
from longrl.train.engines import Step, TrainingFailed


class _StepCommand(ConfigFileOption):
    step: ClassVar[Step]
    preset: Literal["paper", "tiny"] = Field(
        "paper", description="Start from the recipe's values or the CPU preset"
    )

    @classmethod
    def option_defaults(cls, flags: dict[str, Any]) -> dict[str, Any]:
        return PRESETS[flags.get("preset", "paper")][cls.step]

    def run(self, config_type: type[TrainingConfig]) -> None:
        config = self.step_config(config_type)
        require(f"{self.step} step", training_problems(self.step, config))
        from longrl.train.runner import run_step  # imports the trainers (seconds): after the check

        with step_run(config.tracking, params=config.model_dump(mode="json")) as run_id:
            if run_id is not None:
                config = config.model_copy(
                    update={"tracking": config.tracking.model_copy(update={"run_id": run_id})}
                )
            result = run_step(self.step, config)
        print(json.dumps(result, indent=2, default=str))


class SFTCommand(_StepCommand, SFTStepConfig):
    """Warm-up SFT on prepared SFT data (loss on the response only)."""

    step: ClassVar[Step] = "sft"

    def cli_cmd(self) -> None:
        self.run(SFTStepConfig)


class RLCommand(_StepCommand, RLStepConfig):
    """One curriculum RL phase (GRPO or DAPO) on a phase's prepared data plus retrospective samples."""

    step: ClassVar[Step] = "rl"

    def cli_cmd(self) -> None:
        self.run(RLStepConfig)


class TrainCli(BaseModel):
    """longrl training steps, run under Ray Train (a local Ray, or the cluster's inside a RayJob)."""

    sft: CliSubCommand[SFTCommand]
    rl: CliSubCommand[RLCommand]

    def cli_cmd(self) -> None:
        CliApp.run_subcommand(self)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_cli(
        TrainCli, "python -m longrl.train", argv, known_errors=(TrainingFailed, FileNotFoundError, ValueError)
    )
