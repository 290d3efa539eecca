"""Steps read and write local files; this stages s3:// inputs and outputs around them.

Inputs given as ``s3://`` URIs are downloaded (verified) to a local cache. An ``s3://`` output
directory is mirrored by a local one: checkpoints already in the store are pulled first (so a
restarted step resumes), every new checkpoint is pushed as soon as it is saved, and everything
else is pushed when the step ends.

With several ranks, one process per node (local rank 0) pulls and pushes while the node's other
ranks wait: every node holds its own ranks' parts of a checkpoint (DeepSpeed shards, RNG states,
difficulty records), and nodes need not share a filesystem. A checkpoint's completion marker goes
up last, after every node has pushed, so the store never shows a half checkpoint as complete.
Likewise at the end: ``result.json``, which says the step finished, goes up after everything it
vouches for (``curriculum.json`` just before it), so a step killed while pushing is redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from longrl import storage
from longrl.curriculum import CURRICULUM_FILE
from longrl.train.checkpoints import (
    CHECKPOINTS_DIR,
    COMPLETE_MARKER,
    RESULT_FILE,
    checkpoint_dir,
    patient_group,
    wait_for_all_ranks,
)
from longrl.train.config import TrainingConfig

_INPUT_FIELDS = ("model", "train_file", "validation_file")
# The files of a step's output that vouch for others, pushed after them in this order.
DONE_FILES = (COMPLETE_MARKER, CURRICULUM_FILE, RESULT_FILE)


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


class PushCheckpoints(TrainerCallback):
    """Pushes each checkpoint to the remote output directory right after it is saved, marker last."""

    def __init__(self, remote_output: str) -> None:
        self.remote = storage.join(remote_output, CHECKPOINTS_DIR)
        self.waiting: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.waiting = patient_group()  # uploads of a large checkpoint outlast the job's own timeout

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        local = checkpoint_dir(args.output_dir, state.global_step)
        remote = storage.join(self.remote, local.name)
        if _local_rank() == 0 and local.is_dir():
            for path in sorted(p for p in local.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER):
                storage.upload_file(path, storage.join(remote, path.relative_to(local).as_posix()))
        wait_for_all_ranks(self.waiting)
        marker = local / COMPLETE_MARKER
        if state.is_world_process_zero and marker.is_file():
            storage.upload_file(marker, storage.join(remote, COMPLETE_MARKER))
        wait_for_all_ranks(self.waiting)


def local_output_dir(remote: str) -> Path:
    return storage.cache_dir() / "steps" / hashlib.sha256(remote.encode()).hexdigest()[:16]


@contextlib.contextmanager
def staged(
    config: TrainingConfig, is_rank_zero: bool = True
) -> Iterator[tuple[TrainingConfig, list[TrainerCallback]]]:
    """(the config with local paths, callbacks to add); pushes the outputs back when the block ends."""
    updates: dict[str, Any] = {}
    for field in _INPUT_FIELDS:
        value = getattr(config, field, None)
        if value and storage.is_s3(value):
            updates[field] = str(storage.localize(value))
    earlier = getattr(config, "retrospective_from", None)
    if earlier:
        updates["retrospective_from"] = [str(storage.localize(d)) if storage.is_s3(d) else d for d in earlier]
    callbacks: list[TrainerCallback] = []
    remote = config.output_dir if storage.is_s3(config.output_dir) else None
    if remote:
        local = local_output_dir(remote)
        remote_checkpoints = storage.join(remote, CHECKPOINTS_DIR)
        if _local_rank() == 0 and storage.exists(remote_checkpoints):
            storage.copy_tree(remote_checkpoints, str(local / CHECKPOINTS_DIR))
        wait_for_all_ranks()
        updates["output_dir"] = str(local)
        callbacks.append(PushCheckpoints(remote))
    yield config.staged_copy(updates), callbacks
    if remote and is_rank_zero:
        push_outputs(Path(updates["output_dir"]), remote)


def push_outputs(local: Path, remote: str) -> None:
    """Pushes a finished step's local output directory to its s3:// one, ``result.json`` last."""
    storage.copy_tree(str(local), remote, last=DONE_FILES)
