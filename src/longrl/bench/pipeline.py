"""Pipeline wall time: ``make run`` end to end, then again with nothing changed.

Runs ``python -m pipelines.cli run-local --work-dir <work>`` twice in the same work directory
(fresh the first time). The re-run shows what is skipped when nothing changed: tasks kfp.local
serves from its cache ("Task <name> cache hit") are not executed at all; the steps that act for
one run (its MLflow run, the verifier, registration, the exit handler) always execute. longrl's
own skips (data preparation's fingerprint, a finished training step's ``result.json``) are
counted too. One run pair per benchmark run (``--repeats`` does not apply: a run takes minutes).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from longrl.bench.core import BenchContext, Skip, logger
from longrl.bench.report import BenchmarkResult, Target, figure

_EXECUTED = re.compile(r"Executing task ")
_CACHE_HIT = re.compile(r"Task \S+ cache hit")
_LONGRL_SKIP = re.compile(r"already holds")


def repository_root() -> Path | None:
    """The checkout holding ``pipelines/`` (the working directory, or above this package)."""
    for start in (Path.cwd(), Path(__file__).resolve()):
        for directory in (start, *start.parents):
            if (directory / "pipelines" / "cli.py").is_file():
                return directory
    return None


def count_log(text: str) -> dict[str, int]:
    return {
        "executed": len(_EXECUTED.findall(text)),
        "cache_hits": len(_CACHE_HIT.findall(text)),
        "longrl_skips": len(_LONGRL_SKIP.findall(text)),
    }


def run_local(root: Path, work: Path, log: Path) -> tuple[float, dict[str, int]]:
    """Wall seconds of one local pipeline run and what its log says it executed and skipped."""
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "run-local", "--work-dir", str(work)],
            cwd=root,
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=4 * 3_600,
        )
    elapsed = time.perf_counter() - started
    text = log.read_text(encoding="utf-8", errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"run-local failed (exit {done.returncode}); see {log}:\n{text[-2000:]}")
    return elapsed, count_log(text)


def run(context: BenchContext) -> BenchmarkResult:
    root = repository_root()
    if root is None:
        raise Skip("pipelines/ not found: run from the repository root")
    work = context.work("pipeline")
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    logger.info("pipeline: first run (many minutes; log in %s)", work / "first.log")
    first, first_counts = run_local(root, run_dir, work / "first.log")
    logger.info("pipeline: re-run with nothing changed (log in %s)", work / "rerun.log")
    again, again_counts = run_local(root, run_dir, work / "rerun.log")
    note = f"{again_counts['cache_hits']} tasks reused from kfp.local's cache"
    details: dict[str, Any] = {
        "first_run": first_counts,
        "rerun": again_counts,
        "logs": [str(work / "first.log"), str(work / "rerun.log")],
    }
    return BenchmarkResult(
        figures=[
            figure(
                "rerun_wall_time",
                "s",
                [again],
                [first],
                baseline_name="first run",
                better="lower",
                target=Target(op="<", bound=0.5),
                note=note,
            ),
            figure(
                "tasks_executed_again",
                "tasks",
                [again_counts["executed"]],
                [first_counts["executed"]] if first_counts["executed"] else None,
                baseline_name="tasks executed in the first run",
                better="lower",
                target=Target(op="<", bound=0.5),
                note=f"{again_counts['cache_hits']} kfp cache hits, {again_counts['longrl_skips']} longrl skips",
            ),
        ],
        details=details,
    )
