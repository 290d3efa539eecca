"""Reading QA/SFT rows from JSONL and parquet, validating each and saying exactly where a bad one is."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import ValidationError

from longrl.data.schema import QARecord, SFTRecord, canonical_fields

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")


class DataError(ValueError):
    """Input data that cannot be used as given; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class RowError:
    """Why one input row was refused, with everything needed to find and fix it."""

    path: str
    row: int  # 1-based: the line of a JSONL file, the row of a parquet file
    field: str
    reason: str
    raw: Any = None

    @property
    def where(self) -> str:
        unit = "line" if self.path.endswith(JSONL_SUFFIXES) else "row"
        return f"{self.path}:{unit} {self.row}"

    def __str__(self) -> str:
        return f"{self.where}: field '{self.field}': {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "row": self.row,
            "field": self.field,
            "reason": self.reason,
            "record": self.raw,
        }


@dataclasses.dataclass(frozen=True)
class Row:
    """A validated record and where it came from."""

    path: str
    row: int
    record: QARecord

    @property
    def where(self) -> str:
        unit = "line" if self.path.endswith(JSONL_SUFFIXES) else "row"
        return f"{self.path}:{unit} {self.row}"


def raw_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(row number, parsed row or why it could not be parsed) for each row of a JSONL or parquet file."""
    name = str(path)
    if name.endswith(JSONL_SUFFIXES):
        with path.open(encoding="utf-8", errors="strict") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield (
                        number,
                        RowError(name, number, "<row>", f"not valid JSON ({exc.msg})", line.rstrip("\n")),
                    )
                    continue
                if not isinstance(value, dict):
                    yield number, RowError(name, number, "<row>", "not a JSON object", value)
                    continue
                yield number, value
    elif name.endswith(PARQUET_SUFFIXES):
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for value in batch.to_pylist():
                number += 1
                yield number, value
    else:
        raise DataError(f"{path}: unknown file type; expected one of {JSONL_SUFFIXES + PARQUET_SUFFIXES}")


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    field = ".".join(str(part) for part in error["loc"]) or "<row>"
    message = error["msg"]
    if error["type"] == "missing":
        message = "is missing"
    return field, message.removeprefix("Value error, ")


def read_rows(path: str | Path, sft: bool = False) -> Iterator[Row | RowError]:
    """Each row of a file, validated, in file order: a ``Row`` or the ``RowError`` that refused it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    record_type = SFTRecord if sft else QARecord
    try:
        for number, raw in raw_rows(path):
            if isinstance(raw, RowError):
                yield raw
                continue
            try:
                yield Row(str(path), number, record_type.model_validate(canonical_fields(raw)))
            except ValidationError as exc:
                problems = [_describe(error) for error in exc.errors()]
                field, reason = problems[0]
                if len(problems) > 1:
                    reason += " (also: " + "; ".join(f"'{f}' {r}" for f, r in problems[1:]) + ")"
                yield RowError(str(path), number, field, reason, raw)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot be read as {path.suffix.lstrip('.')}: {exc}") from exc
