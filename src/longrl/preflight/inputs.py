"""Checks of what a step reads and writes: model directories, prepared tables, output locations.

Each check returns problems, one line each, naming the option, the location and what to do. Local
files are opened and their headers read; ``s3://`` locations are listed (and a parquet file's
footer fetched by range), never downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from longrl import storage
from longrl.preflight import s3

MODEL_HINT = "give a Hugging Face model directory (config.json, tokenizer files, weights) or an s3:// URI"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def flag(option: str) -> str:
    """How the option is spelled on the command line (config keys use the same words)."""
    return "--" + option.replace("_", "-")


def problem(option: str, location: str, what: str) -> str:
    return f"{flag(option)} {location}: {what}"


# ----- models -----------------------------------------------------------------------------------


def _is_weight_file(name: str) -> bool:
    return name.endswith(".safetensors") or (name.startswith("pytorch_model") and name.endswith(".bin"))


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be loaded (unreadable, not safetensors, cut short), from its header."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            if header_size > min(size, 100 << 20):
                return f"{path.name} is not a safetensors file"
            header = json.loads(handle.read(header_size))
    except OSError as exc:
        return f"cannot read {path.name} ({exc.strerror or exc})"
    except (struct.error, ValueError):
        return f"{path.name} is not a safetensors file"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + header_size + max(ends, default=0)
    if size < expected:
        return f"{path.name} is cut short ({size} of {expected} bytes): copy the weights again"
    return None


def _weight_problems(names: set[str], read: Any) -> list[str]:
    """What is missing from a model's weights; ``read(name)`` gives the text of a small file."""
    for index in WEIGHT_INDEXES:
        if index in names:
            try:
                shards = set(json.loads(read(index))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, s3.S3Refused) as exc:
                return [f"cannot read {index} ({exc})"]
            missing = sorted(shards - names)
            return [f"weight shards missing: {', '.join(missing)}"] if missing else []
    if not any(_is_weight_file(name) for name in names):
        return ["no weights (*.safetensors or pytorch_model*.bin)"]
    return []


def _model_file_problems(names: set[str], read: Any) -> list[str]:
    missing = []
    if "config.json" not in names:
        missing.append("no config.json")
    else:
        try:
            json.loads(read("config.json"))
        except (OSError, ValueError, s3.S3Refused) as exc:
            missing.append(f"config.json is not readable JSON ({exc})")
    if not names.intersection(TOKENIZER_FILES):
        missing.append(
            f"no tokenizer files ({', '.join(TOKENIZER_FILES)}): save the tokenizer with the model"
        )
    return missing + _weight_problems(names, read)


def _local_model_problems(directory: Path) -> list[str]:
    try:
        names = {p.name for p in directory.iterdir() if p.is_file()}
    except OSError as exc:
        return [f"cannot list the directory ({exc.strerror or exc})"]
    found = _model_file_problems(names, lambda name: (directory / name).read_text(encoding="utf-8"))
    for name in sorted(names):
        if name.endswith(".safetensors"):
            reason = _safetensors_problem(directory / name)
            if reason:
                found.append(reason)
        elif _is_weight_file(name) and not os.access(directory / name, os.R_OK):
            found.append(f"cannot read {name}")
    return found


def _hub_problems(option: str, name: str) -> list[str]:
    """A hub name is downloaded by the step; offline, it must already be in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return []
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return [
            problem(
                option,
                name,
                "no such directory, and not in the Hugging Face cache while HF_HUB_OFFLINE is set: "
                + MODEL_HINT,
            )
        ]
    return []


def model_problems(option: str, location: str, hub_names: bool = True) -> list[str]:
    """A model directory (local or s3://) with config.json, tokenizer files and readable weights.

    A name of the hub's form (``org/name``) that is no local path is the hub's to check when the step
    downloads it; only an offline machine without it in the cache is refused here.
    """
    if storage.is_s3(location):
        try:
            names = set(s3.list_names(location))
        except s3.S3Refused as exc:
            return [problem(option, location, str(exc))]
        if not names:
            return [problem(option, location, f"no objects under this prefix: {MODEL_HINT}")]
        found = _model_file_problems(names, lambda name: _s3_text(storage.join(location, name)))
        return [problem(option, location, f"{what}: {MODEL_HINT}") for what in found]
    path = Path(location)
    if not path.exists():
        if hub_names and _HUB_NAME.match(location) and not location.startswith("."):
            return _hub_problems(option, location)
        return [problem(option, location, f"no such directory: {MODEL_HINT}")]
    if not path.is_dir():
        return [problem(option, location, f"is a file, not a model directory: {MODEL_HINT}")]
    return [problem(option, location, f"{what}: {MODEL_HINT}") for what in _local_model_problems(path)]


def _s3_text(uri: str, limit: int = 16 << 20) -> str:
    size = s3.object_size(uri)
    if size is None:
        raise s3.S3Refused(f"{uri} does not exist")
    if size > limit:
        raise s3.S3Refused(f"{uri} is {size} bytes, too large for a small JSON file")
    reader = s3.RangedObject(uri, size)
    return reader.read(size).decode("utf-8") if size else ""


# ----- prepared tables --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Table:
    """What a parquet file's footer says: its columns, rows and each column's value range."""

    location: str
    columns: list[str]
    rows: int
    metadata: pq.FileMetaData

    def value_range(self, column: str) -> tuple[Any, Any] | None:
        """(min, max) of a column from the row groups' statistics; None without the column or statistics."""
        if column not in self.columns or self.rows == 0:
            return None
        leaves = [self.metadata.schema.column(i).path for i in range(self.metadata.num_columns)]
        if column not in leaves:  # a nested column: no statistics of its own
            return None
        index = leaves.index(column)
        lows, highs = [], []
        for group in range(self.metadata.num_row_groups):
            chunk = self.metadata.row_group(group)
            if chunk.num_rows == 0:
                continue
            stats = chunk.column(index).statistics
            if stats is None or not stats.has_min_max:
                return None
            lows.append(stats.min)
            highs.append(stats.max)
        return (min(lows), max(highs)) if lows else None


def read_table_footer(location: str) -> Table:
    """The footer of a local or s3:// parquet file; raises OSError / S3Refused / pa.ArrowInvalid."""
    if storage.is_s3(location):
        size = s3.object_size(location)
        if size is None:
            raise FileNotFoundError("no such object")
        metadata = pq.ParquetFile(s3.RangedObject(location, size)).metadata
    else:
        metadata = pq.ParquetFile(location).metadata
    return Table(location, list(metadata.schema.to_arrow_schema().names), metadata.num_rows, metadata)


def table_problems(
    option: str, location: str, columns: tuple[str, ...], remedy: str
) -> tuple[list[str], Table | None]:
    """A parquet file that exists, opens, has ``columns`` and rows; ``remedy`` says how to make one."""
    if not storage.is_s3(location):
        path = Path(location)
        if not path.exists():
            return [problem(option, location, f"no such file: {remedy}")], None
        if path.is_dir():
            return [problem(option, location, f"is a directory, not a parquet file: {remedy}")], None
    try:
        table = read_table_footer(location)
    except FileNotFoundError:
        return [problem(option, location, f"no such file: {remedy}")], None
    except s3.S3Refused as exc:
        return [problem(option, location, str(exc))], None
    except OSError as exc:
        return [problem(option, location, f"cannot read it ({exc.strerror or exc})")], None
    except (pa.ArrowException, ValueError) as exc:
        return [problem(option, location, f"not a parquet file ({exc}): {remedy}")], None
    missing = [name for name in columns if name not in table.columns]
    if missing:
        return [
            problem(
                option,
                location,
                f"no {', '.join(missing)} column{'s' if len(missing) > 1 else ''} "
                f"(it has {', '.join(table.columns) or 'none'}): {remedy}",
            )
        ], None
    if table.rows == 0:
        return [problem(option, location, f"holds no rows: {remedy}")], table
    return [], table


# ----- other files and directories ---------------------------------------------------------------


def file_problems(option: str, location: str, what: str) -> list[str]:
    """A file (local or s3://) that exists and is not empty."""
    if storage.is_s3(location):
        try:
            size = s3.object_size(location)
        except s3.S3Refused as exc:
            return [problem(option, location, str(exc))]
    else:
        path = Path(location)
        if path.is_dir():
            return [problem(option, location, f"is a directory, not {what}")]
        size = path.stat().st_size if path.is_file() else None
        if size is not None and not os.access(path, os.R_OK):
            return [problem(option, location, "cannot read it: check its permissions")]
    if size is None:
        return [problem(option, location, f"no such file: give {what}")]
    if size == 0:
        return [problem(option, location, f"is empty: give {what}")]
    return []


def directory_files_problems(option: str, location: str, names: tuple[str, ...], what: str) -> list[str]:
    """A directory (local or s3://) that holds ``names``."""
    if storage.is_s3(location):
        try:
            present = set(s3.list_names(location))
        except s3.S3Refused as exc:
            return [problem(option, location, str(exc))]
    else:
        path = Path(location)
        if not path.is_dir():
            return [problem(option, location, f"no such directory: give {what}")]
        present = {p.name for p in path.iterdir()}
    missing = [name for name in names if name not in present]
    if missing:
        return [problem(option, location, f"has no {', '.join(missing)}: give {what}")]
    return []


def output_problems(option: str, location: str, directory: str | None = None) -> list[str]:
    """An output location the step can write: a writable local directory (or one it can create), or an
    s3:// prefix whose bucket exists and accepts the credentials. Nothing is created here.

    ``directory``: the directory to check when it is not ``location`` itself (a log file's).
    """
    if storage.is_s3(location):
        try:
            s3.check_prefix(location)
        except s3.S3Refused as exc:
            return [problem(option, location, str(exc))]
        return []
    path = Path(directory or location).absolute()
    what = "" if directory is None else f"its directory {path} "
    if path.exists():
        if not path.is_dir():
            return [problem(option, location, f"{what}is a file: give a directory")]
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".longrl-preflight-"):
                pass
        except OSError as exc:
            return [problem(option, location, f"cannot write into {what or 'it '}({exc.strerror or exc})")]
        return []
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return [problem(option, location, f"{what}cannot be created: {parent} is a file")]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [problem(option, location, f"{what}cannot be created: {parent} is not writable")]
    return []
