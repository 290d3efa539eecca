"""Statistics of QA files and prepared datasets, and their plain-text rendering."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from longrl.data.io import RowError, read_rows
from longrl.data.prepare import length_summary

_PREPARED_COLUMNS = {"prompt", "prompt_tokens", "phase"}


def _prepared_stats(path: Path) -> dict[str, Any]:
    table = pq.read_table(path, columns=["data_source", "prompt_tokens", "phase"])
    sources = table.column("data_source").to_pylist()
    tokens = table.column("prompt_tokens").to_pylist()
    return {
        "file": str(path),
        "rows": table.num_rows,
        "by_data_source": dict(sorted(collections.Counter(sources).items())),
        "by_phase": dict(sorted(collections.Counter(table.column("phase").to_pylist()).items())),
        "prompt_tokens": length_summary(tokens),
    }


def file_stats(path: str | Path) -> dict[str, Any]:
    """Counts, sources, sizes and problems of one QA file, or of one prepared dataset file."""
    path = Path(path)
    if path.suffix in (".parquet", ".pq") and _PREPARED_COLUMNS <= set(pq.read_schema(path).names):
        return _prepared_stats(path)
    sources: collections.Counter[str] = collections.Counter()
    context_chars: list[int] = []
    invalid: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    for item in read_rows(path):
        if isinstance(item, RowError):
            invalid.append(str(item))
            continue
        sources[item.record.data_source] += 1
        context_chars.append(len(item.record.context))
        duplicates += item.record.content_hash in seen
        seen.add(item.record.content_hash)
    return {
        "file": str(path),
        "rows": len(context_chars) + len(invalid),
        "valid_rows": len(context_chars),
        "invalid_rows": len(invalid),
        "invalid_examples": invalid[:10],
        "duplicates": duplicates,
        "by_data_source": dict(sorted(sources.items())),
        "context_chars": length_summary(context_chars),
    }


def _lengths(summary: dict[str, Any]) -> str:
    if not summary.get("count"):
        return "-"
    return f"p50 {summary['p50']:.0f}  p90 {summary['p90']:.0f}  max {summary['max']}"


def format_stats(stats: dict[str, Any]) -> str:
    """A short human-readable report of ``prepare``'s stats or of ``file_stats``."""
    lines: list[str] = []
    if "phases" in stats:
        lines.append(
            f"{stats['kind'].upper()} data: {stats['rows_used']} examples used of {stats['rows_read']} rows read"
        )
        lines.append(f"{'phase':<7}{'prompt tokens':<22}{'train':>7}{'valid':>7}   lengths")
        for phase in stats["phases"]:
            band = f"({phase['min_tokens_exclusive']}, {phase['max_tokens']}]"
            lines.append(
                f"{phase['phase']:<7}{band:<22}{phase['train_rows']:>7}{phase['validation_rows']:>7}   "
                f"{_lengths(phase['prompt_tokens'])}"
            )
        by_source: collections.Counter[str] = collections.Counter()
        for phase in stats["phases"]:
            by_source.update(phase["train_by_data_source"])
        lines.append("train by data source: " + ", ".join(f"{k} {v}" for k, v in sorted(by_source.items())))
        rejected = stats["rejected"]
        lines.append(
            f"rejected: {rejected['invalid']} invalid, {rejected['duplicate']} duplicate, "
            f"{rejected['too_long']} too long (see rejected.jsonl)"
        )
        lines.extend(f"warning: {warning}" for warning in stats.get("warnings", []))
        return "\n".join(lines)
    lines.append(f"{stats['file']}: {stats['rows']} rows")
    if "valid_rows" in stats:
        lines.append(
            f"valid {stats['valid_rows']}, invalid {stats['invalid_rows']}, duplicates {stats['duplicates']}"
        )
        lines.append(f"context characters: {_lengths(stats['context_chars'])}")
        lines.extend(f"  {example}" for example in stats["invalid_examples"])
    else:
        lines.append(f"by phase: {stats['by_phase']}")
        lines.append(f"prompt tokens: {_lengths(stats['prompt_tokens'])}")
    lines.append("by data source: " + ", ".join(f"{k} {v}" for k, v in stats["by_data_source"].items()))
    return "\n".join(lines)
