"""Runs a training step on Ray: a local Ray on a laptop, the cluster's Ray inside a RayJob.

``run_step`` is the one entrypoint both launchers reach (``python -m longrl.train`` calls it):
it settles the step's engine and parallelism with the planner (``longrl.train.planning``), joins
the Ray cluster named by ``RAY_ADDRESS`` (what a KubeRay job's driver has) or starts a local one,
and hands the step to its engine (``longrl.train.engines``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from longrl import storage
from longrl.curriculum import write_sources
from longrl.train.checkpoints import RESULT_FILE
from longrl.train.config import RLStepConfig, SFTStepConfig, TrainingConfig
from longrl.train.engines import Step, TrainingFailed

__all__ = ["STEP_CONFIGS", "Step", "TrainingFailed", "run_step", "run_step_here"]

logger = logging.getLogger(__name__)

STEP_CONFIGS: dict[str, type[TrainingConfig]] = {"sft": SFTStepConfig, "rl": RLStepConfig}


def finished_result(config: TrainingConfig) -> dict[str, Any] | None:
    """The result of an earlier run of exactly this step in the same output directory, if it finished."""
    from longrl.train.arguments import config_fingerprint

    result_uri = storage.join(config.output_dir, RESULT_FILE)
    if not storage.exists(result_uri):
        return None
    result = json.loads(storage.read_text(result_uri))
    return result if result.get("config_fingerprint") == config_fingerprint(config) else None


def run_step_here(step: Step, config: TrainingConfig, is_rank_zero: bool = True) -> dict[str, Any]:
    """The step's training function in this process (what each Ray worker runs), s3:// paths staged.

    A step that already finished with the same config in the same output directory is not run again.
    """
    from longrl.train.common import prepare_distributed
    from longrl.train.staging import staged

    done = finished_result(config)
    if done is not None:
        logger.info("%s already holds this step's result: not training again", config.output_dir)
        return done

    prepare_distributed(config)  # staging waits for the other ranks of the node
    with staged(config, is_rank_zero) as (local, callbacks):
        if step == "rl" and is_rank_zero:  # before result.json, which vouches for it
            write_sources(local.output_dir, config.retrospective_from)  # type: ignore[attr-defined]
        if step == "sft":
            from longrl.train.sft import run_sft

            result = run_sft(local, callbacks)  # type: ignore[arg-type]
        else:
            from longrl.train.rl import run_rl

            result = run_rl(local, callbacks)  # type: ignore[arg-type]
    return result


def with_absolute_paths(config: TrainingConfig) -> TrainingConfig:
    """Local paths made absolute: Ray workers do not run in the caller's working directory."""

    def absolute(value: str | None) -> str | None:
        return value if value is None or storage.is_s3(value) else str(Path(value).resolve())

    updates: dict[str, Any] = {
        name: absolute(getattr(config, name)) for name in ("model", "output_dir", "validation_file")
    }
    if hasattr(config, "train_file"):
        updates["train_file"] = absolute(config.train_file)
    if hasattr(config, "retrospective_from"):
        updates["retrospective_from"] = [absolute(d) for d in config.retrospective_from]
    return config.model_copy(update=updates)


def ensure_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("joining the Ray cluster at %s", address)
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # Without its dashboard: it added ~2.3 s to each step's start. To watch a local run in the
        # dashboard, start one Ray (`ray start --head`) and set RAY_ADDRESS: every step then joins it.
        logger.info("starting a local Ray (set RAY_ADDRESS to join a running one)")
        ray.init(logging_level=logging.WARNING, include_dashboard=False, configure_logging=True)


def run_step(step: Step, config: TrainingConfig) -> dict[str, Any]:
    """Runs a step with its engine on Ray and returns its result (``output_dir/result.json``)."""
    from longrl.train.engines import engine_named
    from longrl.train.planning import resolve

    config = resolve(step, with_absolute_paths(config)).config
    done = finished_result(config)
    if done is not None:
        logger.info("%s already holds this step's result: not training again", config.output_dir)
        return done
    ensure_ray()
    return engine_named(config.engine).run(step, config)
