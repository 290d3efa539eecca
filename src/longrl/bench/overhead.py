"""Platform overhead: one RL phase run through longrl against the same TRL loop called directly.

Both sides train the same GRPO phase (same model, rows, seed and ``GRPOConfig``, built by longrl's
own ``grpo_arguments`` so the TRL loop is identical) and save the final model. longrl adds what a
pipeline step has: an MLflow run (SQLite store here) with params and per-step metrics,
``metrics.jsonl``, staging, the difficulty record, the curriculum files and ``result.json``. The
baseline is a bare ``trl.GRPOTrainer`` with the rule reward: no launcher, tracking, staging or
difficulty recording. Target: ratio (longrl wall time / direct) below 1.10.

* ``overhead/in_process``: longrl's step function (``run_step_here`` inside an MLflow step run,
  as the step entrypoint calls it) against TRL directly, both in this process after a warm-up.
* ``overhead/launcher`` (``--size full`` or ``--launcher``): ``LocalLauncher().run("rl", ...)``
  (a fresh ``python -m longrl.train`` process starting a local Ray) against a fresh Python process
  running TRL directly. Start-up costs are fixed, so the ratio falls as the phase gets longer.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

from longrl.bench.core import BenchContext, logger, seconds, timed_pairs
from longrl.bench.report import BenchmarkResult, Target, figure
from longrl.train.config import TINY_RL, RLStepConfig, with_overrides

TARGET = Target(op="<", bound=1.10)
DIRECT_MODEL_DIR = "model"


@dataclasses.dataclass(frozen=True)
class Sizes:
    steps: int
    completion_tokens: int
    records: int


SIZES = {"small": Sizes(steps=3, completion_tokens=32, records=64), "full": Sizes(20, 96, 256)}


def training_data(context: BenchContext, sizes: Sizes) -> Path:
    """A prepared RL phase of short generated documents (kept in the cache)."""
    from longrl.data import GenerateConfig, PrepareConfig, generate, prepare

    root = context.cache / f"overhead-data-{sizes.records}-seed{context.config.seed}"
    source = root / "qa.jsonl"
    if not source.is_file():
        generate(
            GenerateConfig(
                output=str(source),
                num_records=sizes.records,
                doc_tokens_min=16,
                doc_tokens_max=160,
                seed=context.config.seed,
            )
        )
    prepare(
        PrepareConfig(
            inputs=[str(source)],
            output_dir=str(root / "prepared"),
            tokenizer=str(context.tiny_model),
            phase_max_tokens=[4_096],
            validation_fraction=0,
        )
    )
    return root / "prepared" / "train-phase1.parquet"


def rl_config(
    model: Path, train_file: Path, output_dir: Path, tracking_uri: str, sizes: Sizes, seed: int
) -> RLStepConfig:
    return with_overrides(
        RLStepConfig,
        TINY_RL,
        {
            "model": str(model),
            "output_dir": str(output_dir),
            "train_file": str(train_file),
            "algorithm": "grpo",
            "reward": "rule",
            "seed": seed,
            "max_steps": sizes.steps,
            "save_steps": sizes.steps,
            "max_completion_length": sizes.completion_tokens,
            "overlong_buffer": 0,
            "per_device_train_batch_size": 16,
            "train_batch_prompts": 2,
            "generation_batch_prompts": 2,
            "num_generations": 8,
            "validation_file": None,
            "tracking": {"tracking_uri": tracking_uri, "experiment": "longrl-bench"},
        },
    )


def direct_trl(config: RLStepConfig) -> None:
    """The same GRPO loop with TRL alone: its trainer, the phase's rows, the rule reward, the final model."""
    import datasets
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    from longrl.curriculum import phase_dataset
    from longrl.rewards import HybridReward
    from longrl.train.rl import grpo_arguments

    rows, _ = phase_dataset(config.train_file, [], 0.0, seed=config.seed + config.phase)
    trainer = GRPOTrainer(
        model=config.model,
        reward_funcs=[HybridReward(judge=None)],
        args=grpo_arguments(config),
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(config.model),
    )
    trainer.train()
    trainer.save_model(str(Path(config.output_dir) / DIRECT_MODEL_DIR))


def longrl_in_process(config: RLStepConfig) -> dict[str, Any]:
    """The step as its entrypoint runs it, minus the Ray worker: an MLflow step run around ``run_step_here``."""
    from longrl.tracking import step_run
    from longrl.train.runner import run_step_here

    with step_run(config.tracking, params=config.model_dump(mode="json")) as run_id:
        tracking = config.tracking.model_copy(update={"run_id": run_id})
        return run_step_here("rl", config.model_copy(update={"tracking": tracking}))


def longrl_launcher(config: RLStepConfig) -> dict[str, Any]:
    from longrl.launchers.local import LocalLauncher

    return LocalLauncher(log=lambda line: logger.debug("launcher: %s", line)).run("rl", config)


def direct_trl_process(config: RLStepConfig, scratch: Path) -> None:
    """TRL directly, in a fresh Python process (so it pays the same interpreter and import start-up)."""
    config_file = scratch / "direct-config.json"
    config_file.write_text(config.model_dump_json())
    command = [sys.executable, "-m", "longrl.bench.overhead", "--config", str(config_file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3_600)
    if done.returncode != 0:
        raise RuntimeError(f"direct TRL process failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def prepare_tracking(tracking_uri: str) -> None:
    """Creates the SQLite store's schema once, so the first timed run does not pay for migrations."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    if client.get_experiment_by_name("longrl-bench") is None:
        client.create_experiment("longrl-bench")


def run(context: BenchContext) -> BenchmarkResult:
    sizes = SIZES[context.config.size]
    work = context.work("overhead")
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    train_file = training_data(context, sizes)
    prepare_tracking(tracking_uri)

    def config(name: str, index: int, **updates: Any) -> RLStepConfig:
        made = rl_config(
            context.tiny_model, train_file, work / f"{name}-{index}", tracking_uri, sizes, context.config.seed
        )
        return made.model_copy(update=updates)

    logger.info("overhead: warm-up run (one step, untimed)")
    direct_trl(config("warmup", 0, max_steps=1, save_steps=1))
    value, baseline = timed_pairs(
        lambda i: longrl_in_process(config("longrl", i)),
        lambda i: direct_trl(config("direct", i)),
        context.config.repeats,
        "in_process",
    )
    figures = [
        figure(
            "in_process",
            "s",
            value,
            baseline,
            baseline_name="TRL GRPOTrainer directly",
            better="lower",
            target=TARGET,
            note=f"{sizes.steps} GRPO steps x 16 completions of {sizes.completion_tokens} tokens; wall time",
        )
    ]
    if context.config.time_launcher():
        launched, fresh = [], []
        for index in range(context.config.repeats):
            logger.info("overhead: launcher run %d/%d", index + 1, context.config.repeats)
            fresh.append(seconds(lambda i=index: direct_trl_process(config("direct-process", i), work)))
            launched.append(seconds(lambda i=index: longrl_launcher(config("launcher", i))))
        figures.append(
            figure(
                "launcher",
                "s",
                launched,
                fresh,
                baseline_name="TRL directly in a fresh Python process",
                better="lower",
                target=TARGET,
                note="includes process start-up and a local Ray; fixed costs dominate short phases",
            )
        )
    return BenchmarkResult(figures=figures, details={"steps": sizes.steps, "tracking_uri": tracking_uri})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Direct-TRL side of the overhead benchmark (internal)")
    parser.add_argument("--config", required=True, help="RLStepConfig as JSON")
    args = parser.parse_args(argv)
    direct_trl(RLStepConfig.model_validate_json(Path(args.config).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
