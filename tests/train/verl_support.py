"""What verl's GPU workers would hand the verl engine, produced on a CPU with verl's own code.

- ``save_fsdp_checkpoint``: a checkpoint in verl's FSDP layout, written by verl's
  ``FSDPCheckpointManager`` from two gloo processes that shard the model with verl's ``apply_fsdp2``
  (torch FSDP2 ``fully_shard``) and take one optimizer step; the full weights it holds afterwards
  are saved next to it for comparison.
- ``rollout_data``: a one-rollout ``DataProto`` exactly as verl's agent loop builds it for the
  reward loop (``AgentLoopWorker._compute_score``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

EXPECTED_WEIGHTS = "expected_full_weights.pt"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _save_worker(rank: int, world_size: int, port: int, model_dir: str, actor_dir: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager
        from verl.utils.fsdp_utils import apply_fsdp2

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        mesh = init_device_mesh("cpu", (world_size,), mesh_dim_names=("fsdp",))
        apply_fsdp2(model, {"mesh": mesh, "reshard_after_forward": True}, {})
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        ids = torch.randint(
            0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(rank)
        )
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        local = next(iter(model.parameters()))
        assert local.to_local().numel() < local.numel(), "the model is not sharded"
        manager = FSDPCheckpointManager(
            model=model,
            optimizer=optimizer,
            lr_scheduler=None,
            processing_class=AutoTokenizer.from_pretrained(model_dir),
        )
        manager.save_checkpoint(actor_dir, global_step=1)
        full = {name: tensor.full_tensor() for name, tensor in model.state_dict().items()}
        if rank == 0:
            torch.save(full, Path(actor_dir).parent / EXPECTED_WEIGHTS)
    finally:
        dist.destroy_process_group()


def save_fsdp_checkpoint(model_dir: Path, actor_dir: Path, world_size: int = 2) -> Path:
    """Writes verl's FSDP checkpoint of ``model_dir`` into ``actor_dir``; returns the expected weights file."""
    import torch.multiprocessing as mp

    mp.spawn(_save_worker, args=(world_size, _free_port(), str(model_dir), str(actor_dir)), nprocs=world_size)
    return actor_dir.parent / EXPECTED_WEIGHTS


def rollout_data(row: dict[str, Any], prompt_ids: list[int], response_ids: list[int]) -> Any:
    """The reward loop's input for one rollout of ``row`` (a verl dataset item), as the agent loop builds it."""
    import numpy as np
    import torch
    from tensordict import TensorDict
    from verl.protocol import DataProto

    prompts = torch.tensor([prompt_ids], dtype=torch.int64)
    responses = torch.tensor([response_ids], dtype=torch.int64)
    input_ids = torch.cat([prompts, responses], dim=1)
    batch = TensorDict(
        {
            "prompts": prompts,
            "responses": responses,
            "attention_mask": torch.ones_like(input_ids),
            "input_ids": input_ids,
            "position_ids": torch.arange(input_ids.shape[1]).unsqueeze(0),
        },
        batch_size=1,
    )
    non_tensor = {key: np.array([value]) for key, value in row.items() if key != "dummy_tensor"}
    non_tensor["__num_turns__"] = np.array([2])
    return DataProto(batch=batch, non_tensor_batch=non_tensor)
