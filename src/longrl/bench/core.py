"""What every benchmark uses: the run's context (config, work directories, the tiny model) and timers."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from longrl.bench.config import BenchConfig

logger = logging.getLogger("longrl.bench")


class Skip(Exception):  # noqa: N818 - it is a signal, not an error
    """Raised by a benchmark that cannot run here (no GPU, say); the message is the reason."""


@dataclasses.dataclass
class BenchContext:
    """A benchmark's view of the run: its settings and where it may write."""

    config: BenchConfig

    @property
    def root(self) -> Path:
        return Path(self.config.output_dir).resolve()

    @property
    def cache(self) -> Path:
        """Inputs that do not change between runs (the tiny model, generated data): kept."""
        return self.root / "cache"

    def work(self, benchmark: str) -> Path:
        """A benchmark's scratch directory (emptied by the runner before it starts)."""
        path = self.root / "work" / benchmark
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def small(self) -> bool:
        return self.config.size == "small"

    @functools.cached_property
    def tiny_model(self) -> Path:
        """The tiny Qwen2 model and tokenizer, built once into the cache."""
        from longrl.tiny_model import TinyModelConfig, build_tiny_model

        path = self.cache / "tiny-model"
        if not (path / "config.json").is_file():
            logger.info("building the tiny model into %s", path)
            build_tiny_model(TinyModelConfig(output_dir=str(path), seed=self.config.seed))
        return path


def seconds(function: Callable[[], Any]) -> float:
    """Wall time of one call, in seconds."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def timed_pairs(
    value: Callable[[int], Any], baseline: Callable[[int], Any], repeats: int, label: str
) -> tuple[list[float], list[float]]:
    """Wall times of ``repeats`` calls of each, interleaved (baseline, value, ...) so drift hits both.

    Each callable gets the repeat's index (for fresh output directories).
    """
    value_times, baseline_times = [], []
    for index in tqdm(range(repeats), desc=label, unit="repeat", leave=False):
        baseline_times.append(seconds(functools.partial(baseline, index)))
        value_times.append(seconds(functools.partial(value, index)))
    return value_times, baseline_times


def rates(count: float, times: list[float]) -> list[float]:
    """Items per second for each timing."""
    return [count / t if t > 0 else float("inf") for t in times]
