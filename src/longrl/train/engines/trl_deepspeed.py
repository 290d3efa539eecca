"""DeepSpeed ZeRO-3 for the ``trl`` engine: the config handed to transformers, the process group, and
the check that parameters really were partitioned.

``deepspeed_config`` is what ``TrainingArguments(deepspeed=...)`` receives. transformers fills every
``"auto"`` from the TrainingArguments (micro-batch, accumulation, clipping, bf16, learning rate, Adam
settings) and from the model (bucket sizes from ``hidden_size``), so the trainer and DeepSpeed cannot
disagree. Precision: with ``bf16`` DeepSpeed keeps the parameters that forward/backward use in
bfloat16 and, per rank, an fp32 copy of its partition (``fp32_partitioned_groups_flat`` in
``deepspeed/runtime/zero/stage3.py``) that the optimizer updates, with fp32 Adam states; without it
everything is fp32. Offload moves the partitioned parameters / optimizer states to CPU memory; CPU
offload of optimizer states needs DeepSpeed's own CPU Adam (``DeepSpeedCPUAdam``, JIT-built on first
use), so the config then names the optimizer instead of letting the Trainer build torch's AdamW.
``stage3_gather_16bit_weights_on_model_save`` makes ``save_model`` gather the shards into one
loadable Hugging Face directory on rank 0.

On a CPU (tests, laptops) ZeRO-3 runs over gloo once ``deepspeed.init_distributed`` has set up
DeepSpeed's communication layer before the Trainer exists; accelerate otherwise ignores the
DeepSpeed plugin for ``use_cpu`` runs. A silent fallback to plain DDP would still train, so
``sharding_report`` checks every parameter after the trainer is built.
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path
from typing import Any

from longrl.plan.placement import Parallelism

SHARDING_DIR = "sharding"


class ShardingNotApplied(RuntimeError):
    """A step configured for ZeRO-3 ended up with whole (unpartitioned) parameters on a rank."""


def deepspeed_config(parallelism: Parallelism) -> dict[str, Any]:
    """The ZeRO-3 config for ``TrainingArguments(deepspeed=...)``; "auto" values are filled by transformers."""
    zero: dict[str, Any] = {
        "stage": 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto",
        "stage3_gather_16bit_weights_on_model_save": True,
    }
    if parallelism.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if parallelism.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "steps_per_print": 1_000_000,
        "wall_clock_breakdown": False,
    }
    if parallelism.offload_optimizer:
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    return config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def init_deepspeed_distributed(use_gpu: bool) -> None:
    """Sets up DeepSpeed's communication layer over the job's process group (gloo on CPU, NCCL on GPU).

    Under Ray Train or torchrun the process group (or its environment) already exists; a lone
    process (a test, a debugger) becomes a world of one.
    """
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized() and "RANK" not in os.environ:
        os.environ.update(
            {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
            | ({} if "MASTER_PORT" in os.environ else {"MASTER_PORT": str(_free_port())})
        )
    deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo", auto_mpi_discovery=False)


def sharding_report(trainer: Any) -> dict[str, Any]:
    """What this rank holds: the distributed type accelerate chose and, per parameter, full vs local size."""
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    full = local = visible = partitioned = 0
    params = list(trainer.model.parameters())
    for param in params:
        numel = getattr(param, "ds_numel", param.numel())
        shard = getattr(param, "ds_tensor", None)
        full += numel
        visible += param.numel()
        if shard is not None and shard.numel() == math.ceil(numel / world):
            partitioned += 1
            local += shard.numel()
        else:
            local += param.numel()
    return {
        "rank": rank,
        "world_size": world,
        "distributed_type": str(trainer.accelerator.distributed_type.value),
        "zero_stage": plugin.zero_stage if plugin is not None else None,
        "parameters": len(params),
        "partitioned_parameters": partitioned,
        "full_numel": full,
        "local_numel": local,
        "visible_numel": visible,
    }


def check_sharding(report: dict[str, Any], sharding: str) -> None:
    """Raises ``ShardingNotApplied`` when ``sharding`` is zero3 and the report shows whole parameters."""
    if sharding != "zero3":
        return
    problems = []
    if report["distributed_type"] != "DEEPSPEED" or report["zero_stage"] != 3:
        problems.append(
            f"accelerate runs {report['distributed_type']} (ZeRO stage {report['zero_stage']}), not DeepSpeed ZeRO-3"
        )
    if report["partitioned_parameters"] != report["parameters"]:
        problems.append(
            f"{report['parameters'] - report['partitioned_parameters']} of {report['parameters']} parameters "
            f"are not partitioned over {report['world_size']} ranks"
        )
    if problems:
        raise ShardingNotApplied(
            f"parallelism.sharding=zero3 but rank {report['rank']}: {'; '.join(problems)}. The step would "
            "hold a whole model per rank: check that DeepSpeed is installed and that the TrainingArguments "
            "were created before the model (zero.Init partitions at load time)"
        )


def precision_report(trainer: Any) -> dict[str, Any]:
    """dtypes this rank trains with: parameter shards, the optimizer's master partitions, its Adam states."""
    import torch

    optimizer = getattr(getattr(trainer, "model_wrapped", None), "optimizer", None)
    masters = getattr(optimizer, "fp32_partitioned_groups_flat", None)
    if masters is None:  # not a ZeRO-3 engine: nothing DeepSpeed-specific to report
        return {}
    states = getattr(getattr(optimizer, "optimizer", None), "state", {})
    return {
        "parameter_dtype": str(next(trainer.model.parameters()).ds_tensor.dtype),
        "master_weight_dtypes": sorted({str(group.dtype) for group in masters}),
        "optimizer_state_dtypes": sorted(
            {
                str(v.dtype)
                for state in states.values()
                for v in state.values()
                if torch.is_tensor(v) and v.dim()
            }
        ),
    }


def record_precision(trainer: Any, output_dir: str | Path) -> dict[str, Any]:
    """Adds ``precision_report`` to this rank's sharding record (after training: the engine exists then)."""
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    path = Path(output_dir) / SHARDING_DIR / f"rank{rank}.json"
    report = precision_report(trainer)
    if report and path.is_file():
        path.write_text(json.dumps(json.loads(path.read_text()) | report, indent=2) + "\n")
    return report


def record_sharding(trainer: Any, sharding: str, output_dir: str | Path) -> dict[str, Any]:
    """Checks this rank's parameters and writes what it found to ``output_dir/sharding/rank{N}.json``."""
    report = sharding_report(trainer) | {"sharding": sharding}
    directory = Path(output_dir) / SHARDING_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"rank{report['rank']}.json").write_text(json.dumps(report, indent=2) + "\n")
    check_sharding(report, sharding)
    return report
