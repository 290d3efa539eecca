"""Pre-flight checks: every step looks at its inputs before it asks Ray or Kubernetes for anything.

One function per step returns the step's problems, one line each, naming the option, the path or
URI and what to do: the model directory (config.json, tokenizer files, readable weights), the
prepared tables (there, parquet, the columns the step reads, not empty; an RL phase's rows in its
length band), where the outputs go (writable; on S3 the bucket exists and takes the credentials),
the judge when the reward asks one, and the planner's verdict on the placement. ``s3://`` inputs
are listed, never downloaded. Everything wrong is reported at once: ``require`` raises
``PreflightFailed`` with all of it, which the command lines turn into exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from longrl.cli import UsageError
from longrl.preflight.endpoints import judge_problems, port_problems
from longrl.preflight.inputs import (
    Table,
    directory_files_problems,
    file_problems,
    flag,
    model_problems,
    output_problems,
    problem,
    table_problems,
)

if TYPE_CHECKING:
    from longrl.evaluation.run import EvalConfig
    from longrl.serving.config import VerifierConfig
    from longrl.train.config import RLStepConfig, SFTStepConfig, TrainingConfig

__all__ = [
    "PreflightFailed",
    "evaluation_problems",
    "require",
    "rl_problems",
    "sft_problems",
    "training_problems",
    "verifier_problems",
]

# What the steps read of a prepared table (``longrl.train.sft`` / ``rl``, the rewards, validation).
SFT_COLUMNS = ("prompt", "completion")
RL_COLUMNS = ("id", "prompt", "answer", "question", "data_source")
VALIDATION_COLUMNS = ("prompt", "answer", "question", "data_source")
SFT_REMEDY = "give a prepared SFT file (python -m longrl.data prepare --sft writes train-phase1.parquet)"
RL_REMEDY = "give the phase's prepared file (python -m longrl.data prepare writes train-phase<k>.parquet)"
VALIDATION_REMEDY = (
    "give a prepared validation.parquet (python -m longrl.data prepare), or set validation_max_examples 0"
)

PlacementProblems = Callable[[str], list[str]]  # engine -> what the placement lacks for it


class PreflightFailed(UsageError):
    """A step's inputs are not ready; nothing was started. ``problems``: one line each."""

    def __init__(self, step: str, problems: list[str]) -> None:
        self.step = step
        self.problems = list(problems)
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        super().__init__(
            f"{step}: not started, {count} to fix first:\n" + "\n".join(f"  {p}" for p in problems)
        )


def require(step: str, problems: list[str]) -> None:
    """Raises ``PreflightFailed`` when there are problems."""
    if problems:
        raise PreflightFailed(step, problems)


# ----- training ---------------------------------------------------------------------------------


def sft_problems(config: SFTStepConfig, placement: PlacementProblems | None = None) -> list[str]:
    return training_problems("sft", config, placement)


def rl_problems(config: RLStepConfig, placement: PlacementProblems | None = None) -> list[str]:
    return training_problems("rl", config, placement)


def training_problems(
    step: str, config: TrainingConfig, placement: PlacementProblems | None = None
) -> list[str]:
    """Everything wrong with a training step's inputs, outputs, judge and placement."""
    model = model_problems("model", config.model)
    problems = list(model)
    problems += output_problems("output_dir", config.output_dir)
    train, table = _train_file_problems(step, config)
    problems += train
    if step == "rl":
        problems += _phase_problems(config, table)  # type: ignore[arg-type]
    if config.validation_file and config.validation_max_examples:
        problems += table_problems(
            "validation_file", config.validation_file, VALIDATION_COLUMNS, VALIDATION_REMEDY
        )[0]
    # The planner reads the model's config.json (GPUs) and an RL phase's longest prompt: only when they are there.
    if not config.ray.use_gpu or (not model and (step == "sft" or table is not None)):
        problems += _planner_problems(step, config, table, placement)
    return problems


def _train_file_problems(step: str, config: TrainingConfig) -> tuple[list[str], Table | None]:
    if step == "sft":
        return table_problems("train_file", config.train_file, SFT_COLUMNS, SFT_REMEDY)  # type: ignore[attr-defined]
    columns = RL_COLUMNS if config.max_prompt_tokens is not None else (*RL_COLUMNS, "prompt_tokens")  # type: ignore[attr-defined]
    return table_problems("train_file", config.train_file, columns, RL_REMEDY)  # type: ignore[attr-defined]


def _phase_problems(config: RLStepConfig, table: Table | None) -> list[str]:
    """The phase's rows in its band, the earlier phases it draws from finished, its judge answering."""
    problems = []
    if table is not None:
        problems += _band_problems(config, table)
    for earlier in config.retrospective_from:
        problems += directory_files_problems(
            "retrospective_from",
            earlier,
            ("difficulty.jsonl", "train_data.parquet"),
            "the output directory of a finished RL phase",
        )
    if config.reward == "hybrid" and config.judge is not None:
        problems += judge_problems(config.judge)
    return problems


def _band_problems(config: RLStepConfig, table: Table) -> list[str]:
    """Rows of this phase only (the ``phase`` column data preparation writes), no prompt above the band."""
    problems = []
    phases = table.value_range("phase")
    if phases is not None and phases != (config.phase, config.phase):
        held = str(phases[0]) if phases[0] == phases[1] else f"{phases[0]} to {phases[1]}"
        problems.append(
            problem(
                "train_file",
                table.location,
                f"holds rows of phase {held}, not of phase {config.phase}: give train-phase{config.phase}.parquet "
                f"or set {flag('phase')} to the file's phase",
            )
        )
    tokens = table.value_range("prompt_tokens")
    if tokens is not None and config.max_prompt_tokens is not None and tokens[1] > config.max_prompt_tokens:
        problems.append(
            problem(
                "train_file",
                table.location,
                f"its longest prompt has {tokens[1]} tokens, above the phase's band "
                f"({flag('max_prompt_tokens')} {config.max_prompt_tokens}): give the phase's prepared file or "
                f"raise {flag('max_prompt_tokens')}",
            )
        )
    return problems


def _planner_problems(
    step: str, config: TrainingConfig, table: Table | None, placement: PlacementProblems | None
) -> list[str]:
    """The planner's verdict (``longrl.train.planning.resolve``), then what the placement lacks for its engine."""
    from longrl.train.planning import PlacementRefused, resolve

    if step == "rl" and config.max_prompt_tokens is None and table is not None:  # type: ignore[attr-defined]
        longest = table.value_range("prompt_tokens")  # from the footer: the planner would download the file
        if longest is not None:
            config = config.model_copy(update={"max_prompt_tokens": max(1, int(longest[1]))})
    hardware = (
        f"{config.ray.num_workers} GPU(s) of {config.ray.gpu_memory_gib:g} GiB"
        if config.ray.use_gpu
        else "CPU"
    )
    where = f"{flag('engine')} {config.engine} on {hardware}"
    try:
        engine = resolve(step, config).config.engine
    except PlacementRefused as exc:
        return [f"{where}: the planner refuses this step: {exc}"]
    except ValueError as exc:  # the model's config.json is not one the planner can read
        return [problem("model", config.model, f"the planner cannot read its shape: {exc}")]
    return [f"{where}: {line}" for line in placement(engine)] if placement else []


# ----- evaluation and serving -------------------------------------------------------------------


def evaluation_problems(config: EvalConfig) -> list[str]:
    """The model (a directory, local or s3://), the benchmark files, the output, the judge, the baseline."""
    from longrl.data.io import JSONL_SUFFIXES, PARQUET_SUFFIXES
    from longrl.evaluation.benchmarks import BENCHMARKS

    problems = model_problems("model", config.model, hub_names=False)
    if not config.benchmarks:
        problems.append(
            f'{flag("benchmarks")}: none given: name at least one, e.g. \'{{"hotpotqa": "FILE"}}\''
        )
    for name, location in config.benchmarks.items():
        option = f"benchmarks.{name}"
        if name not in BENCHMARKS:
            problems.append(
                problem(option, location, f"unknown benchmark '{name}'; known: {', '.join(BENCHMARKS)}")
            )
        elif location.endswith(PARQUET_SUFFIXES):
            problems += table_problems(option, location, (), "give the benchmark's file")[0]
        elif location.endswith(JSONL_SUFFIXES):
            problems += file_problems(option, location, "the benchmark's file")
        else:
            suffixes = ", ".join(JSONL_SUFFIXES + PARQUET_SUFFIXES)
            problems.append(problem(option, location, f"unknown file type: give a file ending in {suffixes}"))
    problems += output_problems("output_dir", config.output_dir)
    if config.judge is not None:
        problems += judge_problems(config.judge)
    if config.baseline:
        problems += directory_files_problems(
            "baseline", config.baseline, ("metrics.json",), "the output directory of an earlier evaluation"
        )
    return problems


def verifier_problems(
    config: VerifierConfig, host: str | None = None, port: int | None = None, log_file: str | None = None
) -> list[str]:
    """The judge model to serve; on this machine also its port and log file."""
    problems = model_problems("model", config.model)
    if host is not None and port is not None:
        problems += port_problems(host, port)
    if log_file is not None:
        problems += output_problems("log_file", log_file, directory=str(Path(log_file).absolute().parent))
    return problems
