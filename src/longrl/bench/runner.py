"""Runs the selected benchmarks one after another and assembles the report."""

from __future__ import annotations

import importlib
import shutil
import time
import traceback

from longrl.bench.config import BenchConfig
from longrl.bench.core import BenchContext, Skip, logger
from longrl.bench.report import BenchmarkResult, Report, machine_info, now_utc, write_report


def run_one(name: str, context: BenchContext) -> BenchmarkResult:
    """One benchmark (module ``longrl.bench.<name>``); a skip or a failure becomes its result."""
    shutil.rmtree(context.root / "work" / name, ignore_errors=True)
    started = time.perf_counter()
    try:
        result = importlib.import_module(f"longrl.bench.{name}").run(context)
    except Skip as exc:
        result = BenchmarkResult(status="skipped", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others' figures
        logger.error("benchmark %s failed:\n%s", name, traceback.format_exc())
        result = BenchmarkResult(status="failed", reason=f"{type(exc).__name__}: {exc}"[:2000])
    result.seconds = round(time.perf_counter() - started, 1)
    logger.info("benchmark %s: %s in %.0f s", name, result.status, result.seconds)
    return result


def run_benchmarks(config: BenchConfig) -> Report:
    """Runs ``config.selected()`` and writes bench.json and bench.md into ``config.output_dir``."""
    context = BenchContext(config)
    results = {}
    for name in config.selected():
        logger.info("benchmark %s (size %s, %d repeats)", name, config.size, config.repeats)
        results[name] = run_one(name, context)
    report = Report(
        created=now_utc(),
        machine=machine_info(),
        config=config.model_dump(mode="json"),
        benchmarks=results,
    )
    write_report(report, config.output_dir)
    return report
