"""Settles a step's engine and parallelism before anything is requested from Ray or Kubernetes.

On GPUs the planner (``longrl.plan``) searches the layouts the engines can run, keeping the
``parallelism`` fields the config sets explicitly and the engine when it is not ``auto``, and
refuses a step that fits nowhere with the planner's reason. On a CPU there is nothing to plan:
``auto`` means TRL with the parallelism as given.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from longrl import storage
from longrl.plan import Hardware, Workload
from longrl.train.config import RLStepConfig, SFTStepConfig, TrainingConfig

if TYPE_CHECKING:
    from longrl.plan import Plan


class PlacementRefused(ValueError):
    """The step does not fit the GPUs it was given in any layout the planner may choose."""


@dataclasses.dataclass(frozen=True)
class Resolved:
    config: TrainingConfig  # engine and parallelism settled
    plan: Plan | None  # None on CPU


def hardware(config: TrainingConfig) -> Hardware:
    workers = config.ray.num_workers
    per_node = min(config.ray.gpus_per_node, workers)
    return Hardware(
        nodes=math.ceil(workers / per_node),
        gpus_per_node=per_node,
        gpu_memory_gib=config.ray.gpu_memory_gib,
        cpu_memory_gib_per_node=config.ray.cpu_memory_gib_per_node,
    )


def longest_prompt(train_file: str) -> int:
    """The longest prompt of a prepared phase file, in tokens (its ``prompt_tokens`` column)."""
    local = storage.localize(train_file) if storage.is_s3(train_file) else train_file
    column = pq.read_table(local, columns=["prompt_tokens"]).column("prompt_tokens")
    return int(max(column.to_pylist(), default=0))


def workload(step: str, config: TrainingConfig) -> Workload:
    if step == "sft":
        assert isinstance(config, SFTStepConfig)
        sequences = (
            config.per_device_train_batch_size * config.gradient_accumulation_steps * config.ray.num_workers
        )
        return Workload(kind="sft", prompt_tokens=config.max_length, sequences_per_step=sequences)
    assert isinstance(config, RLStepConfig)
    return Workload(
        kind="rl",
        prompt_tokens=config.max_prompt_tokens or longest_prompt(config.train_file),
        response_tokens=config.max_completion_length,
        temperature=config.temperature,
        sequences_per_step=config.train_batch_prompts * config.num_generations,
    )


def plan_step(step: str, config: TrainingConfig) -> Plan:
    """The planner's verdict for this step on its GPUs (the config's explicit choices kept)."""
    from longrl.plan import auto, read_model_shape

    fixed: dict[str, Any] = {
        name: getattr(config.parallelism, name) for name in config.parallelism.model_fields_set
    }
    return auto(
        read_model_shape(config.model),
        workload(step, config),
        hardware(config),
        engine=None if config.engine == "auto" else config.engine,
        fixed=fixed,
    )


def cpu_problems(config: TrainingConfig) -> list[str]:
    """What a step asks for that only GPUs have (the paper preset's settings, say)."""
    problems = []
    if config.engine == "verl":
        problems.append("engine verl needs GPUs (ray.use_gpu): on a CPU use engine trl or auto")
    if config.attn_implementation == "flash_attention_2":
        problems.append("attn_implementation flash_attention_2 needs GPUs: on a CPU leave it unset")
    if getattr(config, "use_vllm", False):
        problems.append("use_vllm rolls out on GPUs: on a CPU set use_vllm false")
    if config.parallelism.fused_loss:
        problems.append("parallelism.fused_loss (Liger) needs GPUs")
    return problems


def resolve(step: str, config: TrainingConfig) -> Resolved:
    """The config with engine and parallelism settled, and the plan behind them (None on a CPU)."""
    if not config.ray.use_gpu:
        problems = cpu_problems(config)
        if problems:
            raise PlacementRefused(
                "this step runs on CPUs (ray.use_gpu is false; preset tiny is the CPU preset): "
                + "; ".join(problems)
            )
        return Resolved(config.model_copy(update={"engine": "trl"}), None)
    plan = plan_step(step, config)
    if not plan.fits:
        raise PlacementRefused(str(plan.reason))
    assert plan.engine is not None and plan.parallelism is not None
    return Resolved(config.model_copy(update={"engine": plan.engine, "parallelism": plan.parallelism}), plan)
