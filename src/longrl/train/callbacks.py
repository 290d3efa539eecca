"""Trainer callbacks: metrics to metrics.jsonl/MLflow with throughput, and difficulty state in checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from longrl import storage
from longrl.curriculum import DifficultyRecorder
from longrl.tracking import MetricsSink
from longrl.train.checkpoints import COMPLETE_MARKER, checkpoint_dir, patient_group, wait_for_all_ranks

DIFFICULTY_STATE_FILE = "difficulty_state.json"


class MetricsCallback(TrainerCallback):
    """Sends every log line to the step's metrics sink, adding tokens per second (rank 0 only)."""

    def __init__(self, sink: MetricsSink, prefix: str = "train/") -> None:
        self.sink = sink
        self.prefix = prefix
        self._last: tuple[float, float] | None = None

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        metrics = {f"{self.prefix}{key}": value for key, value in logs.items()}
        tokens = logs.get("num_tokens")
        now = time.monotonic()
        if tokens is not None:
            tokens = float(tokens)
            if self._last is not None and now > self._last[0] and tokens >= self._last[1]:
                metrics[f"{self.prefix}tokens_per_second"] = (tokens - self._last[1]) / (now - self._last[0])
            self._last = (now, tokens)
        self.sink.log(metrics, step=state.global_step)


class DifficultyCheckpointCallback(TrainerCallback):
    """Saves the phase's difficulty record with every checkpoint, so a resumed phase keeps what it saw.

    Each rank records the groups it rolled out; at every save the records are gathered to rank 0,
    which writes them merged into its checkpoint (``DIFFICULTY_STATE_FILE``). Rank 0's part of a
    checkpoint is the one that is pushed and resumed from whatever node the other ranks ran on.
    """

    def __init__(self, recorder: DifficultyRecorder) -> None:
        self.recorder = recorder
        self.group: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.group = patient_group()  # gloo: the records are Python objects, and rank 0 may save long

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        merged = gather_difficulty(self.recorder, self.group)
        if merged is not None:
            checkpoint = checkpoint_dir(args.output_dir, state.global_step)
            checkpoint.mkdir(parents=True, exist_ok=True)
            storage.write_text(str(checkpoint / DIFFICULTY_STATE_FILE), json.dumps(merged.state()))


def gather_difficulty(recorder: DifficultyRecorder, group: Any = None) -> DifficultyRecorder | None:
    """Every rank's records merged, on rank 0; None on the other ranks (collective: all ranks call it)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return recorder
    states: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(recorder.state(), states, dst=0, group=group)
    if states is None:
        return None
    merged = DifficultyRecorder()
    for rank_state in states:
        merged.merge(rank_state)
    return merged


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def restore_difficulty(recorder: DifficultyRecorder, checkpoint: str | None) -> None:
    """Loads the difficulty record saved with ``checkpoint`` into rank 0's recorder.

    The other ranks start empty: their new records are added to rank 0's at the next gather. Older
    checkpoints hold one ``.rank{k}`` file per rank; rank 0 takes them all, whatever the world size.
    """
    if checkpoint is None or _rank_and_world()[0] != 0:
        return
    for path in sorted(Path(checkpoint).glob(f"{DIFFICULTY_STATE_FILE}*")):
        saved_rank = path.name.removeprefix(f"{DIFFICULTY_STATE_FILE}.rank")
        if path.name == DIFFICULTY_STATE_FILE or saved_rank.isdigit():
            recorder.merge({k: tuple(v) for k, v in json.loads(path.read_text()).items()})


class MarkCheckpointComplete(TrainerCallback):
    """After every rank has saved its part of a checkpoint, marks it complete (rank 0)."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        wait_for_all_ranks()
        checkpoint = checkpoint_dir(args.output_dir, state.global_step)
        if state.is_world_process_zero and checkpoint.is_dir():
            storage.write_text(str(checkpoint / COMPLETE_MARKER), f"{state.global_step}\n")
        wait_for_all_ranks()
