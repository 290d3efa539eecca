"""Where a step keeps its checkpoints, and which one a restarted step resumes from.

A checkpoint is written by every rank (each rank's DeepSpeed shards and RNG state; rank 0's model,
optimizer, trainer state and the difficulty record gathered from every rank).
``longrl.train.callbacks.MarkCheckpointComplete`` waits until every rank has finished its part and
then drops ``COMPLETE_MARKER`` into the directory: only marked checkpoints are resumed from, so a
kill in the middle of a save never leaves a half checkpoint that looks whole. This module imports
no ML library: every pipeline step reads its names.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
RESULT_FILE = "result.json"
COMPLETE_MARKER = "longrl_checkpoint_complete"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(output_dir: str | Path, global_step: int) -> Path:
    """The Trainer's directory for the checkpoint of ``global_step`` (``args.output_dir``)."""
    return Path(output_dir) / f"checkpoint-{global_step}"


def latest_checkpoint(directory: str | Path) -> str | None:
    """The newest complete ``checkpoint-N`` in a Trainer output directory, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = []
    for child in directory.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and (child / COMPLETE_MARKER).is_file() and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return str(max(found)[1]) if found else None


# How long ranks wait for one another around slow single-rank work (a checkpoint upload, validation):
# the job's own process group gives up after 10-30 minutes.
PATIENT_TIMEOUT = timedelta(hours=6)


def patient_group() -> Any:
    """A gloo group of every rank whose barrier waits ``PATIENT_TIMEOUT`` (collective: all ranks call it)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    return dist.new_group(backend="gloo", timeout=PATIENT_TIMEOUT)


def wait_for_all_ranks(group: Any = None) -> None:
    """A barrier of every rank (of ``group``); nothing in a lone process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier(group=group)
