"""Runs a training step under Ray Train: a local Ray on a laptop, the cluster's Ray inside a RayJob.

``run_step`` is the one entrypoint both launchers reach (``python -m longrl.train`` calls it):
it joins the Ray cluster named by ``RAY_ADDRESS`` (what a KubeRay job's driver has) or starts a
local one, then runs the step's training function on ``config.ray.num_workers`` workers with
``TorchTrainer``. A worker failure restarts the group up to ``max_failures`` times; the step
then resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from longrl import storage
from longrl.curriculum import CURRICULUM_FILE
from longrl.train.checkpoints import RESULT_FILE
from longrl.train.config import RLStepConfig, SFTStepConfig, TrainingConfig

logger = logging.getLogger(__name__)

Step = Literal["sft", "rl"]
STEP_CONFIGS: dict[str, type[TrainingConfig]] = {"sft": SFTStepConfig, "rl": RLStepConfig}


class TrainingFailed(RuntimeError):
    """The step's training function failed on the Ray workers."""


def finished_result(config: TrainingConfig) -> dict[str, Any] | None:
    """The result of an earlier run of exactly this step in the same output directory, if it finished."""
    from longrl.train.common import config_fingerprint

    result_uri = storage.join(config.output_dir, RESULT_FILE)
    if not storage.exists(result_uri):
        return None
    result = json.loads(storage.read_text(result_uri))
    return result if result.get("config_fingerprint") == config_fingerprint(config) else None


def run_step_here(step: Step, config: TrainingConfig, is_rank_zero: bool = True) -> dict[str, Any]:
    """The step's training function in this process (what each Ray worker runs), s3:// paths staged.

    A step that already finished with the same config in the same output directory is not run again.
    """
    from longrl.train.staging import staged

    done = finished_result(config)
    if done is not None:
        logger.info("%s already holds this step's result: not training again", config.output_dir)
        return done

    with staged(config, is_rank_zero) as (local, callbacks):
        if step == "sft":
            from longrl.train.sft import run_sft

            result = run_sft(local, callbacks)  # type: ignore[arg-type]
        else:
            from longrl.train.rl import run_rl

            result = run_rl(local, callbacks)  # type: ignore[arg-type]
    if step == "rl" and is_rank_zero:
        sources = {"retrospective_from": list(config.retrospective_from)}  # type: ignore[attr-defined]
        storage.write_text(storage.join(config.output_dir, CURRICULUM_FILE), json.dumps(sources))
    return result


def _train_loop(payload: dict[str, Any]) -> None:
    import ray.train

    step = payload["step"]
    config = STEP_CONFIGS[step].model_validate(payload["config"])
    result = run_step_here(step, config, ray.train.get_context().get_world_rank() == 0)
    metrics = {"global_step": float(result.get("global_step", 0)), **result.get("validation", {})}
    ray.train.report({k.replace("/", "_"): v for k, v in metrics.items()})


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
        logger.info("starting a local Ray")
        ray.init(logging_level=logging.WARNING, include_dashboard=True, configure_logging=True)


def run_step(step: Step, config: TrainingConfig) -> dict[str, Any]:
    """Runs a step on Ray Train workers and returns its result (``output_dir/result.json``)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    config = with_absolute_paths(config)
    done = finished_result(config)
    if done is not None:
        logger.info("%s already holds this step's result: not training again", config.output_dir)
        return done
    ensure_ray()
    if storage.is_s3(config.output_dir):
        ray_storage = str(storage.cache_dir() / "ray")
    else:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        ray_storage = str(Path(config.output_dir) / "ray")
    resources = {"CPU": config.ray.cpus_per_worker}
    if config.ray.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"step": step, "config": config.model_dump(mode="json")},
        scaling_config=ScalingConfig(
            num_workers=config.ray.num_workers, use_gpu=config.ray.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=f"longrl-{step}",
            storage_path=ray_storage,
            failure_config=FailureConfig(max_failures=config.ray.max_failures),
        ),
    )
    outcome = trainer.fit()
    if outcome.error is not None:
        raise TrainingFailed(f"{step} step failed on the Ray workers: {outcome.error}") from outcome.error
    result_uri = storage.join(config.output_dir, RESULT_FILE)
    if not storage.exists(result_uri):
        raise TrainingFailed(f"{step} step finished without writing {result_uri}")
    return json.loads(storage.read_text(result_uri))
