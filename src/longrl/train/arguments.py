"""What a step's trainer receives from its config (sharding, precision, kernels, micro-batches,
rollouts), and the fingerprint that identifies a step's result.

No ML library is imported here: the driver of a training job computes these arguments before any
Ray worker starts, so that a layout the workers would refuse fails in seconds, not after every
worker has imported torch and TRL (~10 s on a CPU).

How ``parallelism`` reaches the trainer (the ``trl`` engine):

- ``sharding: zero3`` -> ``TrainingArguments(deepspeed=<ZeRO-3 config>)`` (see
  ``longrl.train.engines.trl_deepspeed``), with DeepSpeed's communication layer set up first
  (``longrl.train.common.prepare_distributed``) and the partitioning checked once the trainer exists
  (``longrl.train.common.check_sharding``); ``ddp`` -> a whole model per rank, as accelerate sets it up.
- ``offload_params`` / ``offload_optimizer`` -> ZeRO-3 CPU offload.
- ``gradient_checkpointing`` -> the Trainer's, non-reentrant (what ZeRO-3 and TRL expect).
- ``fused_loss`` -> TRL's ``use_liger_kernel`` (Liger's Triton kernels; GPU only). TRL 1.16 computes
  the loss through its own fused LM head in SFT and GRPO whatever this says (the logits over the
  vocabulary are never whole); Liger adds its fused RMSNorm / RoPE / SwiGLU kernels.
- ``micro_batch_tokens`` -> sequences per micro-batch: RL's ``completions_per_pass`` here, SFT's in ``sft.py``.
- ``rollout_tensor_parallel`` / ``rollout_memory_fraction`` -> vLLM for RL rollouts
  (``rollout_arguments``) and for validation on GPUs.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from longrl.plan.placement import engine_problems
from longrl.train.checkpoints import CHECKPOINTS_DIR
from longrl.train.config import RLStepConfig, TrainingConfig


def config_fingerprint(config: TrainingConfig) -> str:
    """Identifies what a step computes (tracking and compute placement aside), by its inputs as given:
    a staged copy with local paths has the fingerprint of the s3:// config it stands for."""
    payload = config.as_given.model_dump_json(exclude={"tracking", "ray", "output_dir"})
    return hashlib.sha256(payload.encode()).hexdigest()


def kernel_arguments(config: TrainingConfig) -> dict[str, Any]:
    """``use_liger_kernel`` when ``parallelism.fused_loss`` asks for it and the machine can run it."""
    if not config.parallelism.fused_loss:
        return {}
    if not config.ray.use_gpu:
        raise ValueError(
            "parallelism.fused_loss turns on Liger's Triton kernels, which need GPUs (ray.use_gpu): "
            "set parallelism.fused_loss=false on a CPU"
        )
    if importlib.util.find_spec("liger_kernel") is None:
        raise ValueError(
            "parallelism.fused_loss needs the liger-kernel package (the trainer image's 'gpu' extra): "
            "install it or set parallelism.fused_loss=false"
        )
    return {"use_liger_kernel": True}


def sharding_arguments(config: TrainingConfig) -> dict[str, Any]:
    """The DeepSpeed config for ``zero3``; nothing for ``ddp``; an error for layouts TRL cannot run."""
    problems = engine_problems("trl", config.parallelism)
    if problems:
        raise ValueError(f"the trl engine cannot run this step's parallelism: {'; '.join(problems)}")
    if config.parallelism.sharding != "zero3":
        return {}
    from longrl.train.engines.trl_deepspeed import deepspeed_config

    return {"deepspeed": deepspeed_config(config.parallelism)}


def load_dtype(config: TrainingConfig) -> str:
    """The dtype the model is loaded in: bf16 only where an fp32 master copy is kept elsewhere.

    ZeRO-3 keeps fp32 master weights and Adam states in DeepSpeed's optimizer, so its bf16 partitions
    may be loaded in bf16. Unsharded, the loaded weights are the master weights: bf16 there would lose
    every update below bf16's resolution (lr 2e-6 on weights of ~1e-2 is one), so they stay fp32 and
    ``bf16`` autocasts the forward and backward.
    """
    return "bfloat16" if config.bf16 and config.parallelism.sharding == "zero3" else "float32"


def trainer_arguments(config: TrainingConfig) -> dict[str, Any]:
    """transformers TrainingArguments fields that every step sets the same way."""
    model_kwargs: dict[str, Any] = {"dtype": load_dtype(config)}
    if config.attn_implementation:
        model_kwargs["attn_implementation"] = config.attn_implementation
    checkpointing = config.parallelism.gradient_checkpointing
    return {
        "output_dir": str(Path(config.output_dir) / CHECKPOINTS_DIR),
        "seed": config.seed,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_steps,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "max_steps": config.max_steps,
        "num_train_epochs": config.num_train_epochs,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "logging_steps": config.logging_steps,
        "gradient_checkpointing": checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if checkpointing else None,
        "bf16": config.bf16,
        "use_cpu": not config.ray.use_gpu,
        "report_to": [],
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
        "model_init_kwargs": model_kwargs,
        **sharding_arguments(config),
        **kernel_arguments(config),
    }


def completions_per_pass(config: RLStepConfig, prompt_tokens: int) -> int:
    """Completions in one forward/backward pass of one worker (its micro-batch)."""
    per_worker = config.train_batch_prompts * config.num_generations // config.ray.num_workers
    budget = config.parallelism.micro_batch_tokens
    if budget is None:
        return config.per_device_train_batch_size
    fitting = max(1, budget // (prompt_tokens + config.max_completion_length))
    return max(d for d in range(1, min(fitting, per_worker) + 1) if per_worker % d == 0)


def rollout_arguments(config: RLStepConfig, prompt_tokens: int) -> dict[str, Any]:
    """GRPOConfig fields of the rollout engine: transformers generate, or vLLM colocated (GPUs)."""
    if not config.use_vllm:
        return {"use_vllm": False}
    if not config.ray.use_gpu:
        raise ValueError(
            "use_vllm rolls out with vLLM colocated on the training GPUs (ray.use_gpu); vLLM's CPU backend "
            "cannot take the policy's weight updates: set use_vllm=false on a CPU"
        )
    tensor_parallel = config.parallelism.rollout_tensor_parallel
    workers, per_node = config.ray.num_workers, config.ray.gpus_per_node
    if workers % tensor_parallel or (workers > per_node and per_node % tensor_parallel):
        raise ValueError(
            f"parallelism.rollout_tensor_parallel ({tensor_parallel}) must divide ray.num_workers ({workers}) "
            f"and ray.gpus_per_node ({per_node}): each vLLM engine spans neighbouring ranks of one node"
        )
    return {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_tensor_parallel_size": tensor_parallel,
        "vllm_gpu_memory_utilization": config.parallelism.rollout_memory_fraction,
        "vllm_enable_sleep_mode": True,
        "vllm_max_model_length": prompt_tokens + config.max_completion_length,
    }
