"""``make bench``: reproducible micro and macro benchmarks, each figure a ratio against a baseline.

Benchmarks (one module each): ``rewards``, ``data_prep``, ``rollout``, ``overhead``, ``pipeline``
and ``gpu_memory``. ``python -m longrl.bench`` runs them and writes ``bench.json`` (stable keys,
machine info) and ``bench.md``; ``python -m longrl.bench compare old.json new.json`` shows how
each figure's ratio moved.
"""

from longrl.bench.config import ALL_BENCHMARKS, BenchConfig
from longrl.bench.report import Figure, Report, compare_reports, figure, summarize

__all__ = ["ALL_BENCHMARKS", "BenchConfig", "Figure", "Report", "compare_reports", "figure", "summarize"]
