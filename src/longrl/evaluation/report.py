"""Comparison of evaluations: a Markdown table and a bar chart (this model against a baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def comparison_markdown(evaluations: dict[str, dict[str, Any]]) -> str:
    """Benchmarks down, models across (headline score, %), the average last, and the change vs the first."""
    names = list(evaluations)
    benchmarks = sorted({b for summary in evaluations.values() for b in summary["benchmarks"]})
    header = "| benchmark | " + " | ".join(names) + (" | change |" if len(names) > 1 else " |")
    lines = [header, "|" + "---|" * (len(names) + 1 + (len(names) > 1))]
    rows = [(b, [evaluations[n]["benchmarks"].get(b, {}).get("score") for n in names]) for b in benchmarks]
    rows.append(("**average**", [evaluations[n]["average"] for n in names]))
    for label, values in rows:
        cells = ["–" if v is None else f"{100 * v:.1f}" for v in values]
        change = ""
        if len(names) > 1:
            first, last = values[0], values[-1]
            change = " | –" if first is None or last is None else f" | {100 * (last - first):+.1f}"
        lines.append(f"| {label} | " + " | ".join(cells) + change + " |")
    return "\n".join(lines) + "\n"


def comparison_plot(evaluations: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Grouped bars of the headline score per benchmark, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(evaluations)
    benchmarks = sorted({b for summary in evaluations.values() for b in summary["benchmarks"]}) + ["average"]
    width = 0.8 / max(1, len(names))
    figure, axes = plt.subplots(figsize=(max(6, 1.2 * len(benchmarks)), 4))
    for index, name in enumerate(names):
        values = [
            100
            * (
                evaluations[name]["average"]
                if b == "average"
                else (evaluations[name]["benchmarks"].get(b, {}).get("score") or 0.0)
            )
            for b in benchmarks
        ]
        axes.bar([i + index * width for i in range(len(benchmarks))], values, width=width, label=name)
    axes.set_xticks(
        [i + width * (len(names) - 1) / 2 for i in range(len(benchmarks))], benchmarks, rotation=20
    )
    axes.set_ylabel("score = max(EM, judge), %")
    axes.set_ylim(0, 100)
    axes.legend()
    axes.set_title("Long-document QA")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
