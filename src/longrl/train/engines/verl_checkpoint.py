"""verl checkpoints of an RL phase: what goes with them, where they go, and the final Hugging Face model.

verl's FSDP checkpoint manager writes ``checkpoints/global_step_N/actor/`` (one model, optimizer
and extra-state shard per rank, ``fsdp_config.json``, ``huggingface/`` with config and tokenizer),
the dataloader state ``data.pt``, and then the tracker ``latest_checkpointed_iteration.txt`` that
``resume_mode=auto`` resumes from. Every rank writes its own shards into that directory on its own
node, so on several nodes ``output_dir`` (or, for s3:// outputs, the local staging directory under
``LONGRL_CACHE_DIR``) must be a filesystem all of the job's Ray nodes share, as verl assumes;
``shared_directory_problems`` checks it before any GPU work.

``PhaseCheckpointCallback`` (verl's ``trainer.checkpoint_callback_class``, run by verl's driver
after each save) adds the difficulty record's state to the checkpoint and, for an s3:// output,
pushes the checkpoint (and verl's metric logs) and then the tracker, so the store never points at a
half checkpoint.
``convert_checkpoint`` turns the last checkpoint into ``output_dir/model`` with verl's own model
merger (``verl.model_merger``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from verl.trainer.ppo.checkpoint_callback import CheckpointCallback

from longrl import storage
from longrl.train.checkpoints import CHECKPOINTS_DIR
from longrl.train.remote_checkpoints import VERL_TRACKER, prune

logger = logging.getLogger(__name__)

DIFFICULTY_STATE_FILE = "difficulty_state.json"
TRACKER_FILE = VERL_TRACKER  # verl's checkpoint tracker
REMOTE_OUTPUT_ENV = "LONGRL_VERL_REMOTE_OUTPUT"  # the step's s3:// output directory, for the callback
ACTOR_DIR = "actor"


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The ``global_step_N`` directory verl's tracker names (what ``resume_mode=auto`` resumes from)."""
    tracker = checkpoints / TRACKER_FILE
    if not tracker.is_file():
        return None
    directory = checkpoints / f"global_step_{int(tracker.read_text().strip())}"
    return directory if directory.is_dir() else None


def global_step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix("global_step_"))


def save_difficulty_state(checkpoint: Path, state: dict[str, tuple[float, int]]) -> None:
    storage.write_text(str(checkpoint / DIFFICULTY_STATE_FILE), json.dumps(state))


def load_difficulty_state(checkpoint: Path | None) -> dict[str, tuple[float, int]] | None:
    """The difficulty record saved with ``checkpoint``; None when there is no checkpoint or no record."""
    if checkpoint is None:
        return None
    path = checkpoint / DIFFICULTY_STATE_FILE
    if not path.is_file():
        logger.warning(
            "%s has no %s (the step was stopped between verl's save and longrl's): the difficulty "
            "record restarts empty",
            checkpoint,
            DIFFICULTY_STATE_FILE,
        )
        return None
    return {key: (float(total), int(n)) for key, (total, n) in json.loads(path.read_text()).items()}


def push_checkpoint(checkpoint: Path, remote_output: str, keep: int | None = None) -> None:
    """Copies ``global_step_N`` and verl's metric logs to ``remote_output/checkpoints/``, then the tracker;
    then prunes the store to the ``keep`` newest checkpoints, as verl prunes its local directory."""
    from longrl.train.engines.verl_config import METRIC_LOGS_DIR

    local, remote = checkpoint.parent, storage.join(remote_output, CHECKPOINTS_DIR)
    storage.copy_tree(str(checkpoint), storage.join(remote, checkpoint.name))
    if (local / METRIC_LOGS_DIR).is_dir():
        storage.copy_tree(str(local / METRIC_LOGS_DIR), storage.join(remote, METRIC_LOGS_DIR))
    storage.upload_file(local / TRACKER_FILE, storage.join(remote, TRACKER_FILE))
    if keep:
        prune(remote, keep)


class PhaseCheckpointCallback(CheckpointCallback):
    """verl's per-save hook (driver side): the difficulty record into the checkpoint; s3 push."""

    def on_save(
        self, trainer: Any, global_step: int, checkpoint_dir: str, async_save: bool = False, **_: Any
    ) -> None:
        from longrl.train.engines.verl_reward import difficulty_state

        checkpoint = Path(checkpoint_dir)
        recorder = self.config.reward.custom_reward_function.reward_kwargs.get("difficulty_recorder")
        if recorder:
            import ray

            save_difficulty_state(checkpoint, difficulty_state(ray.get_actor(recorder)))
        remote = os.environ.get(REMOTE_OUTPUT_ENV)
        if remote:
            push_checkpoint(checkpoint, remote, self.config.trainer.get("max_actor_ckpt_to_keep"))


class CheckpointNotShared(RuntimeError):
    """verl's checkpoint shards are not all where the driver can read them."""


def missing_shards(actor_dir: Path) -> list[str]:
    """Shard files ``fsdp_config.json`` promises that are not in ``actor_dir``."""
    config_file = actor_dir / "fsdp_config.json"
    if not config_file.is_file():
        return [str(config_file)]
    world_size = int(json.loads(config_file.read_text())["world_size"])
    names = [f"model_world_size_{world_size}_rank_{rank}.pt" for rank in range(world_size)]
    return [name for name in names if not (actor_dir / name).is_file()]


def convert_checkpoint(checkpoint: Path, target_dir: Path, tokenizer_source: str) -> Path:
    """The actor of ``checkpoint`` as a Hugging Face directory (bf16, verl's merger) with the tokenizer."""
    from transformers import AutoTokenizer
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    actor_dir = checkpoint / ACTOR_DIR
    missing = missing_shards(actor_dir)
    if missing:
        raise CheckpointNotShared(
            f"{actor_dir} lacks {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}: each verl rank "
            "writes its shards on its own node, so the step's output directory must be on a filesystem "
            "shared by every Ray node of the job (a ReadWriteMany volume mounted at the same path)"
        )
    target_dir.mkdir(parents=True, exist_ok=True)
    merger = FSDPModelMerger(
        ModelMergerConfig(
            operation="merge",
            backend="fsdp",
            local_dir=str(actor_dir),
            target_dir=str(target_dir),
            hf_model_config_path=str(actor_dir / "huggingface"),
        )
    )
    merger.merge_and_save()
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(str(target_dir))
    return target_dir


def _write_marker(path: str, node_id: str) -> str:
    marker = Path(path) / f".longrl-shared-{node_id}"
    marker.write_text(node_id)
    return node_id


def shared_directory_problems(directory: Path, timeout_s: float = 120.0) -> list[str]:
    """Ray nodes (by id) that cannot write into ``directory`` where this process reads it back."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    directory.mkdir(parents=True, exist_ok=True)
    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    write = ray.remote(num_cpus=0)(_write_marker)
    refs = [
        write.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
            str(directory), node
        )
        for node in nodes
    ]
    problems = []
    for node, ref in zip(nodes, refs, strict=True):
        try:
            ray.get(ref, timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure means the node cannot write there
            problems.append(f"node {node}: {exc}")
            continue
        marker = directory / f".longrl-shared-{node}"
        if not marker.is_file():
            problems.append(f"node {node} wrote {marker} on its own disk, which this node does not see")
        marker.unlink(missing_ok=True)
    return problems
