"""The ``trl`` engine: TRL's trainers on Ray Train workers (``TorchTrainer``), one worker per GPU.

Each worker runs ``run_step_here``: the TRL SFT or GRPO/DAPO loop of ``longrl.train.sft`` /
``longrl.train.rl``, sharded with DeepSpeed ZeRO-3 when ``parallelism.sharding`` is ``zero3``
(``longrl.train.engines.trl_deepspeed``; how every ``parallelism`` field reaches TRL is in
``longrl.train.common``). A worker failure restarts the group up to ``ray.max_failures`` times;
the step then resumes from its last complete checkpoint. A mistake in the step's inputs or config
is not retried (``longrl.train.engines.failures``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from longrl import storage
from longrl.train.checkpoints import RESULT_FILE
from longrl.train.config import TrainingConfig
from longrl.train.engines import TrainingFailed

RAY_TRAIN_PRINT_PATCH_ENV = "RAY_TRAIN_ENABLE_PRINT_PATCH"


def _train_loop(payload: dict[str, Any]) -> None:
    import ray.train

    from longrl.train.runner import STEP_CONFIGS, run_step_here

    step = payload["step"]
    config = STEP_CONFIGS[step].model_validate(payload["config"])
    result = run_step_here(step, config, ray.train.get_context().get_world_rank() == 0)
    metrics = {"global_step": float(result.get("global_step", 0)), **result.get("validation", {})}
    ray.train.report({k.replace("/", "_"): v for k, v in metrics.items()})


def preflight(step: str, config: TrainingConfig) -> None:
    """Refuses, before any worker starts, a layout the workers would refuse (same checks, same words)."""
    from longrl.train.arguments import kernel_arguments, rollout_arguments, sharding_arguments

    sharding_arguments(config)
    kernel_arguments(config)
    if step == "rl":
        rollout_arguments(config, prompt_tokens=1)  # type: ignore[arg-type]


def torch_config(config: TrainingConfig) -> Any:
    """Ray Train's torch setup: the process group's timeout when the step sets one (else Ray's 1800 s)."""
    from ray.train.torch import TorchConfig

    timeout = config.ray.collective_timeout_s
    return TorchConfig(timeout_s=timeout) if timeout else TorchConfig()


class TrlEngine:
    name = "trl"

    def run(self, step: str, config: TrainingConfig) -> dict[str, Any]:
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.v2.api.exceptions import TrainingFailedError

        from longrl.train.engines.failures import MistakeAwareTorchTrainer, failure_message

        preflight(step, config)
        # Ray Train's workers log every print() by default, even one made while a library has swapped
        # sys.stdout to capture it: dill disassembles each function datasets fingerprints into a captured
        # stdout, ~5,000 lines of bytecode in an SFT step's log. Ray Train hands this variable to its workers.
        os.environ.setdefault(RAY_TRAIN_PRINT_PATCH_ENV, "0")

        if storage.is_s3(config.output_dir):
            ray_storage = str(storage.cache_dir() / "ray")
        else:
            Path(config.output_dir).mkdir(parents=True, exist_ok=True)
            ray_storage = str(Path(config.output_dir) / "ray")
        resources = {"CPU": config.ray.cpus_per_worker}
        if config.ray.use_gpu:
            resources["GPU"] = 1
        trainer = MistakeAwareTorchTrainer(
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
            torch_config=torch_config(config),
        )
        try:
            outcome = trainer.fit()
        except TrainingFailedError as exc:
            raise TrainingFailed(failure_message(step, exc)) from exc
        if outcome.error is not None:
            raise TrainingFailed(f"{step} step failed on the Ray workers: {outcome.error}") from outcome.error
        result_uri = storage.join(config.output_dir, RESULT_FILE)
        if not storage.exists(result_uri):
            raise TrainingFailed(f"{step} step finished without writing {result_uri}")
        return json.loads(storage.read_text(result_uri))
