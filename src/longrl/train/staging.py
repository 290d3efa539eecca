"""Steps read and write local files; this stages s3:// inputs and outputs around them.

Inputs given as ``s3://`` URIs are downloaded (verified) to a local cache, once per node (the
node's ranks share the download, ``artifacts.localize_on_node``); of earlier RL phases only the
difficulty record and the rows they trained on. An ``s3://`` output directory is mirrored by a
local one: the checkpoint a restarted step resumes from is pulled first (only that one), every
new checkpoint is pushed in the background as soon as it is saved and the store is pruned to
``save_total_limit`` (``remote_checkpoints``), and everything else is pushed when the step ends.

With several ranks, one process per node (local rank 0) pulls and pushes while the node's other
ranks wait: every node holds its own ranks' parts of a checkpoint (DeepSpeed shards, RNG states;
rank 0's part holds every rank's difficulty record), and nodes need not share a filesystem. A checkpoint's completion marker goes
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
from longrl.artifacts import localize_on_node
from longrl.curriculum import CURRICULUM_FILE, DIFFICULTY_FILE, TRAIN_DATA_FILE
from longrl.train.checkpoints import (
    CHECKPOINTS_DIR,
    COMPLETE_MARKER,
    RESULT_FILE,
    checkpoint_dir,
    patient_group,
    wait_for_all_ranks,
)
from longrl.train.config import TrainingConfig
from longrl.train.remote_checkpoints import (
    BackgroundUploader,
    discard_unfinished,
    pull_resume_state,
    push_checkpoint,
)

_INPUT_FIELDS = ("model", "train_file", "validation_file")
# The files of a step's output that vouch for others, pushed after them in this order.
DONE_FILES = (COMPLETE_MARKER, CURRICULUM_FILE, RESULT_FILE)


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def _node() -> tuple[int, int]:
    """(this node's index, the number of nodes), as Ray Train and torchrun set them."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return int(os.environ.get("NODE_RANK", "0")), max(1, world // max(1, per_node))


class PushCheckpoints(TrainerCallback):
    """Pushes each checkpoint to the remote output directory in the background while training goes on.

    One process per node uploads that node's files (``remote_checkpoints``); the first node puts
    the completion marker after every node has pushed, then prunes the store to
    ``save_total_limit``. The next save, and the end of training, wait for the upload before.
    """

    def __init__(self, remote_output: str) -> None:
        self.remote = storage.join(remote_output, CHECKPOINTS_DIR)
        self.uploads = BackgroundUploader()
        self.waiting: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.waiting = patient_group()  # uploads of a large checkpoint outlast the job's own timeout

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if control.should_save:  # the save may rotate away the checkpoint being uploaded
            self.uploads.wait()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        local = checkpoint_dir(args.output_dir, state.global_step)
        if _local_rank() == 0 and local.is_dir():
            node, nodes = _node()
            remote = storage.join(self.remote, local.name)
            keep = args.save_total_limit
            self.uploads.start(local.name, lambda: push_checkpoint(local, remote, node, nodes, keep))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.uploads.wait()
        wait_for_all_ranks(self.waiting)


def curriculum_records(phase_output: str) -> str:
    """An earlier phase's output as far as retrospective sampling reads it: its two record files."""
    if not storage.is_s3(phase_output):
        return phase_output
    files = [
        localize_on_node(storage.join(phase_output, name)) for name in (DIFFICULTY_FILE, TRAIN_DATA_FILE)
    ]
    return str(files[0].parent)


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
            updates[field] = str(localize_on_node(value))  # one download per node, not per rank
    earlier = getattr(config, "retrospective_from", None)
    if earlier:
        updates["retrospective_from"] = [curriculum_records(d) for d in earlier]
    callbacks: list[TrainerCallback] = []
    remote = config.output_dir if storage.is_s3(config.output_dir) else None
    if remote:
        local = local_output_dir(remote)
        remote_checkpoints = storage.join(remote, CHECKPOINTS_DIR)
        if is_rank_zero and int(os.environ.get("RANK", "0")) == 0:
            discard_unfinished(remote_checkpoints)  # before any node pulls or pushes
        wait_for_all_ranks()
        if _local_rank() == 0:
            pull_resume_state(remote_checkpoints, local / CHECKPOINTS_DIR)  # only the one resumed from
        wait_for_all_ranks()
        updates["output_dir"] = str(local)
        callbacks.append(PushCheckpoints(remote))
    yield config.staged_copy(updates), callbacks
    if remote and is_rank_zero:
        push_outputs(Path(updates["output_dir"]), remote)


def push_outputs(local: Path, remote: str) -> None:
    """Pushes a finished step's local output directory to its s3:// one, ``result.json`` last."""
    storage.copy_tree(str(local), remote, last=DONE_FILES)
