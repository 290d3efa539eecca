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
from longrl.train.checkpoints import checkpoint_dir

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
    """Saves each rank's difficulty recorder with every checkpoint, so a resumed phase keeps what it saw.

    Every rank writes its own file, also where it saved nothing else (DDP ranks other than 0, a node
    without a shared filesystem): its records exist nowhere else.
    """

    def __init__(self, recorder: DifficultyRecorder) -> None:
        self.recorder = recorder

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        checkpoint = checkpoint_dir(args.output_dir, state.global_step)
        checkpoint.mkdir(parents=True, exist_ok=True)
        rank, _ = _rank_and_world()
        storage.write_text(
            str(checkpoint / f"{DIFFICULTY_STATE_FILE}.rank{rank}"), json.dumps(self.recorder.state())
        )


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def restore_difficulty(recorder: DifficultyRecorder, checkpoint: str | None) -> None:
    """Loads the recorder states saved with ``checkpoint`` that belong to this rank.

    Rank r takes the files of every saved rank k with k % world_size == r, so no rank's records are
    lost when a phase resumes with fewer workers than it was saved with.
    """
    if checkpoint is None:
        return
    rank, world = _rank_and_world()
    prefix = f"{DIFFICULTY_STATE_FILE}.rank"
    for path in sorted(Path(checkpoint).glob(f"{prefix}*")):
        saved_rank = path.name.removeprefix(prefix)
        if saved_rank.isdigit() and int(saved_rank) % world == rank:
            recorder.merge({k: tuple(v) for k, v in json.loads(path.read_text()).items()})
