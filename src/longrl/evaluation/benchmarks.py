"""The paper's long-document QA benchmarks, read from their published files into one record type.

Layouts: LongBench JSONL (2WikiMultihopQA, HotpotQA, Musique, NarrativeQA, Qasper: ``input``,
``context``, ``answers``, ``_id``), DocMath as released with QwenLong-L1's evaluation data
(``question``, ``paragraphs``, ``ground_truth``) and Frames as released there (``Prompt``,
``Answer``, ``wiki_items`` of ``title``/``text``). Files may be JSONL or parquet, local or s3://.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from longrl import storage
from longrl.data.io import DataError, RowError, raw_rows

Layout = Literal["longbench", "docmath", "frames"]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str
    layout: Layout
    data_source: str  # routes rule scoring: "docmath" is numeric, the rest free text


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("docmath", "docmath", "docmath"),
        Benchmark("frames", "frames", "frames"),
        Benchmark("2wikimqa", "longbench", "2wikimqa"),
        Benchmark("hotpotqa", "longbench", "hotpotqa"),
        Benchmark("musique", "longbench", "musique"),
        Benchmark("narrativeqa", "longbench", "narrativeqa"),
        Benchmark("qasper", "longbench", "qasper"),
    )
}


class EvalRecord(BaseModel):
    """One benchmark question, its document and every accepted answer."""

    id: str = Field(min_length=1)
    benchmark: str
    data_source: str
    context: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answers: list[str] = Field(min_length=1)

    @field_validator("answers", mode="before")
    @classmethod
    def _not_nan(cls, answers: Any) -> Any:
        for answer in answers if isinstance(answers, list) else []:
            if isinstance(answer, float) and not math.isfinite(answer):
                raise ValueError(
                    f"holds {answer}, not an answer (a missing value written as NaN or Infinity?)"
                )
        return answers

    @field_validator("answers")
    @classmethod
    def _non_empty_answers(cls, answers: list[str]) -> list[str]:
        if not any(a.strip() for a in answers):
            raise ValueError("has no non-empty answer")
        return answers


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return value  # NaN and infinities stay numbers, which the record refuses: they are no answer
    return str(value) if isinstance(value, (int, float)) else value


def _fields(benchmark: Benchmark, raw: dict[str, Any], row: int) -> dict[str, Any]:
    if benchmark.layout == "longbench":
        answers = raw.get("answers")
        return {
            "id": raw.get("_id", row),
            "context": raw.get("context"),
            "question": raw.get("input"),
            "answers": answers if isinstance(answers, list) else answers,
        }
    if benchmark.layout == "docmath":
        paragraphs = raw.get("paragraphs")
        context = "\n".join(paragraphs) if isinstance(paragraphs, list) else paragraphs
        truth = raw.get("ground_truth")
        return {
            "id": raw.get("question_id", raw.get("id", row)),
            "context": context,
            "question": raw.get("question"),
            "answers": None if truth is None else [_text(truth)],
        }
    items = raw.get("wiki_items")
    context = (
        "\n".join(f"{i.get('title', '')}\n{i.get('text', '')}" for i in items if isinstance(i, dict))
        if isinstance(items, list)
        else items
    )
    answer = raw.get("Answer")
    return {
        "id": raw.get("id", raw.get("_id", row)),
        "context": context,
        "question": raw.get("Prompt"),
        "answers": None if answer is None else [_text(answer)],
    }


def parse_row(benchmark: Benchmark, raw: dict[str, Any], row: int) -> dict[str, Any]:
    fields = {k: v for k, v in _fields(benchmark, raw, row).items() if v is not None}
    if isinstance(fields.get("answers"), list):
        fields["answers"] = [_text(a) for a in fields["answers"]]
    fields["id"] = str(fields.get("id", row))
    return {**fields, "benchmark": benchmark.name, "data_source": benchmark.data_source}


def load_benchmark(name: str, path: str, limit: int | None = None) -> list[EvalRecord]:
    """Every record of a benchmark file; a bad row stops loading with its file, line and field."""
    if name not in BENCHMARKS:
        raise DataError(f"unknown benchmark '{name}'; known: {', '.join(BENCHMARKS)}")
    benchmark = BENCHMARKS[name]
    local = storage.localize(path)
    records: list[EvalRecord] = []
    errors: list[RowError] = []
    for row, raw in raw_rows(Path(local)):
        if isinstance(raw, RowError):
            errors.append(raw)
            continue
        try:
            records.append(EvalRecord.model_validate(parse_row(benchmark, raw, row)))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "<row>"
            errors.append(RowError(str(path), row, field, error["msg"].removeprefix("Value error, ")))
        if limit is not None and len(records) >= limit:
            break
    if errors:
        shown = "\n".join(f"  {e}" for e in errors[:20])
        raise DataError(f"{len(errors)} invalid row(s) in {name} file {path}:\n{shown}")
    if not records:
        raise DataError(f"{name} file {path} holds no records")
    return records


def to_layout(benchmark: str, record: dict[str, Any]) -> dict[str, Any]:
    """A QA record (``longrl.data`` schema) written in a benchmark's published layout."""
    layout = BENCHMARKS[benchmark].layout
    if layout == "longbench":
        return {
            "_id": record["id"],
            "input": record["question"],
            "context": record["context"],
            "answers": [record["answer"]],
            "dataset": benchmark,
            "language": "en",
            "all_classes": None,
            "length": len(record["context"].split()),
        }
    if layout == "docmath":
        return {
            "question_id": record["id"],
            "question": record["question"],
            "paragraphs": record["context"].split("\n\n"),
            "ground_truth": record["answer"],
        }
    return {
        "id": record["id"],
        "Prompt": record["question"],
        "Answer": record["answer"],
        "wiki_items": [
            {"title": f"Section {i}", "text": part}
            for i, part in enumerate(record["context"].split("\n\n"), start=1)
        ],
    }


def write_benchmark_file(benchmark: str, records: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(to_layout(benchmark, record), ensure_ascii=False) + "\n")
    return path
