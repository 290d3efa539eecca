"""Trainer callbacks: metrics to metrics.jsonl/MLflow with throughput, and difficulty state in checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from longrl.curriculum import DifficultyRecorder
from longrl.tracking import MetricsSink

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
    """Saves the difficulty recorder with every checkpoint, so a resumed phase keeps what it saw."""

    def __init__(self, recorder: DifficultyRecorder) -> None:
        self.recorder = recorder

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            path = checkpoint / f"{DIFFICULTY_STATE_FILE}.rank{_rank()}"
            path.write_text(json.dumps(self.recorder.state()))


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def restore_difficulty(recorder: DifficultyRecorder, checkpoint: str | None) -> None:
    """Loads this rank's recorder state saved with ``checkpoint`` (if any)."""
    if checkpoint is None:
        return
    path = Path(checkpoint) / f"{DIFFICULTY_STATE_FILE}.rank{_rank()}"
    if path.is_file():
        recorder.merge({k: tuple(v) for k, v in json.loads(path.read_text()).items()})
