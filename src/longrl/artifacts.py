"""Pointer artifacts: what pipeline steps hand one another instead of whole output directories.

KFP's launcher downloads every input artifact into a step's pod before the step starts, so an
artifact that *is* a training step's output directory (the model plus ``checkpoints/`` with
optimizer states) costs every downstream step tens to hundreds of GB. Instead a step writes its
real output to a *data location* derived from its output artifact's URI and makes the artifact
itself a small JSON pointer: the location, a checksum manifest of the files downstream steps may
read (``checkpoints/`` is a step's working state and is left out), and the step's metadata. A
downstream step reads the pointer and fetches only what it reads: the final ``model/``, a phase's
curriculum files, an evaluation's ``metrics.json``.

The data location is ``<the artifact's directory>/.longrl-data/<artifact name>``: next to the
pointer but never under the pointer's key (KFP lists an input artifact's objects by key prefix, so
``<uri>.data/`` would be downloaded with it; no artifact name starts with a dot). Under kfp.local
it is a local directory and fetching reads the files where they are; on a cluster it is an s3://
prefix and fetching downloads (verified against the manifest) into ``LONGRL_CACHE_DIR``.

A base model given as an s3:// URI is not a pointer; ``fetch_tokenizer`` takes only its tokenizer
files, and ``localize_on_node`` lets one process per node download an input while the node's
other ranks wait for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from longrl import storage
from longrl.train.checkpoints import CHECKPOINTS_DIR

POINTER_FORMAT = "longrl.pointer/v1"
DATA_DIR = ".longrl-data"
LEFT_OUT = (CHECKPOINTS_DIR,)  # top-level directories no downstream step reads

# A tokenizer is every top-level file of a model directory that is not weights (tokenizer.json,
# vocab/merges, sentencepiece models, chat template, config.json for the tokenizer class).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx")


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str
    size: int = Field(ge=0)


class Pointer(BaseModel):
    """Where a step's output is, what it holds (path -> checksum and size), and the step's metadata."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["longrl.pointer/v1"] = POINTER_FORMAT
    location: str = Field(description="The output directory: a local path or an s3:// prefix")
    files: dict[str, ManifestEntry] = Field(description="Relative path -> checksum, of what may be read")
    metadata: dict[str, Any] = Field(default_factory=dict)

    def uri(self, relative: str = "") -> str:
        """Where a part of the output is (what a step on another machine, a RayJob, is given)."""
        return storage.join(self.location, relative) if relative else self.location

    def has(self, relative: str) -> bool:
        return relative in self.files

    def part(self, relative: str) -> dict[str, ManifestEntry]:
        """The manifest's files that are ``relative`` or lie under it."""
        prefix = relative.rstrip("/") + "/"
        return {
            path: entry for path, entry in self.files.items() if path == relative or path.startswith(prefix)
        }

    def size(self, relative: str = "") -> int:
        return sum(entry.size for entry in (self.part(relative) if relative else self.files).values())


# ``make run ARTIFACTS=s3``: kfp.local's pipeline root stays a local directory (it holds the pointers and
# kfp.local's cache), and what a step outputs goes to a bucket at the same relative key, as on a cluster.
LOCAL_PIPELINE_ROOT_ENV = "LONGRL_LOCAL_PIPELINE_ROOT"
LOCAL_ARTIFACTS_S3_ENV = "LONGRL_LOCAL_ARTIFACTS_S3"


def artifact_location(uri: str, path: str) -> str:
    """Where a KFP artifact lives for the library: its s3:// URI on a cluster, its local path otherwise
    (or, under kfp.local with ``LONGRL_LOCAL_ARTIFACTS_S3`` set, that prefix's counterpart of the path)."""
    if uri.startswith("minio://"):
        return "s3://" + uri[len("minio://") :]
    if uri.startswith("s3://"):
        return uri
    return _in_local_bucket(path) or path


def _in_local_bucket(path: str) -> str | None:
    bucket_root = os.environ.get(LOCAL_ARTIFACTS_S3_ENV, "")
    local_root = os.environ.get(LOCAL_PIPELINE_ROOT_ENV, "")
    if not bucket_root or not local_root:
        return None
    try:
        relative = Path(path).resolve().relative_to(Path(local_root).resolve())
    except ValueError:
        return None
    return storage.join(bucket_root, relative.as_posix())


def data_location(uri: str, path: str) -> str:
    """Where the step that outputs this artifact writes its real output (see the module's docstring)."""
    base = artifact_location(uri, path).rstrip("/")
    if storage.is_s3(base):
        parent, _, name = base.rpartition("/")
        return f"{parent}/{DATA_DIR}/{name}"
    local = Path(base)
    return str(local.parent / DATA_DIR / local.name)


def _left_out(relative: str) -> bool:
    return relative.split("/", 1)[0] in LEFT_OUT


def manifest(location: str) -> dict[str, ManifestEntry]:
    """Checksums and sizes of the files under ``location`` that downstream steps may read.

    For s3:// the checksums are the ones storage recorded on upload (nothing is downloaded).
    """
    files: dict[str, ManifestEntry] = {}
    if storage.is_s3(location):
        for relative, size, _etag in storage.list_objects(location):
            if _left_out(relative):
                continue
            uri = storage.join(location, relative)
            sha = storage.recorded_sha256(uri)
            if sha is None:  # written by something other than longrl.storage: hash it once here
                sha = storage.file_sha256(storage.localize(uri))
            files[relative] = ManifestEntry(sha256=sha, size=size)
    else:
        root = Path(location)
        if not root.is_dir():
            raise storage.StorageError(f"{location} is not a directory")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            if not _left_out(relative):
                files[relative] = ManifestEntry(sha256=storage.file_sha256(path), size=path.stat().st_size)
    if not files:
        raise storage.StorageError(f"{location} holds no output files")
    return files


def write_pointer(path: str | Path, location: str, metadata: dict[str, Any] | None = None) -> Pointer:
    """Writes the pointer to ``location``'s output into ``path`` (the output artifact's local file)."""
    pointer = Pointer(location=location, files=manifest(location), metadata=dict(metadata or {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pointer.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return pointer


def publish(artifact: Any, location: str, metadata: dict[str, Any] | None = None) -> Pointer:
    """A KFP output artifact becomes the pointer to ``location``; its metadata says where the data is."""
    pointer = write_pointer(artifact.path, location, metadata)
    artifact.metadata.update({**pointer.metadata, "location": location, "bytes": pointer.size()})
    return pointer


def read_pointer(path: str | Path, check: bool = True) -> Pointer:
    """The pointer in an input artifact's file; with ``check``, its data must still be there.

    The check lists the data location (nothing is read): an output deleted since its step ran (a
    bucket's lifecycle rule, a cleaned pipeline root) fails here, naming it, and not deep in a RayJob.
    """
    text = Path(path).read_text(encoding="utf-8") if not storage.is_s3(str(path)) else storage.read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise storage.StorageError(f"{path} is not a longrl pointer artifact: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != POINTER_FORMAT:
        raise storage.StorageError(f"{path} is not a longrl pointer artifact ({POINTER_FORMAT})")
    pointer = Pointer.model_validate(data)
    missing = missing_files(pointer) if check else []
    if missing:
        raise storage.StorageError(
            f"{path} points to {pointer.location}, which lacks {len(missing)} of its {len(pointer.files)} "
            f"files or holds them changed ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): "
            "the step that made it is cached but its output was deleted; run again without the cache"
        )
    return pointer


def missing_files(pointer: Pointer) -> list[str]:
    """The manifest's files that are not at the location with their recorded size (a listing, no reads)."""
    if storage.is_s3(pointer.location):
        sizes = {relative: size for relative, size, _etag in storage.list_objects(pointer.location)}
    else:
        root = Path(pointer.location)
        sizes = {path: (root / path).stat().st_size for path in pointer.files if (root / path).is_file()}
    return sorted(path for path, entry in pointer.files.items() if sizes.get(path) != entry.size)


def _fetch_dir(location: str) -> Path:
    return storage.cache_dir() / "fetched" / hashlib.sha256(location.encode()).hexdigest()[:16]


def fetch(pointer: Pointer, relative: str) -> Path:
    """A local path holding the output's ``relative`` file or directory, and nothing else of it.

    A local output is read where it is (checked against the manifest's sizes); an s3:// one is
    downloaded, each file verified against the manifest's checksum.
    """
    wanted = pointer.part(relative)
    if not wanted:
        raise storage.StorageError(f"{pointer.location} has no {relative} (its pointer lists none)")
    if not storage.is_s3(pointer.location):
        root = Path(pointer.location)
        for path, entry in wanted.items():
            found = root / path
            if not found.is_file() or found.stat().st_size != entry.size:
                raise storage.StorageError(f"{found} is missing or differs from its pointer's manifest")
        return root / relative
    local = _fetch_dir(pointer.location)
    with node_lock(f"fetch-{pointer.location}/{relative}"):
        for path, entry in sorted(wanted.items()):
            storage.download_expected(pointer.uri(path), local / path, entry.sha256)
    return local / relative


def is_tokenizer_file(name: str) -> bool:
    return not name.endswith(WEIGHT_SUFFIXES) and not name.endswith(".index.json")


def fetch_tokenizer(model: str) -> str:
    """What ``AutoTokenizer.from_pretrained`` needs of ``model``: an s3:// model's tokenizer files only.

    Local directories and hub names are returned as they are.
    """
    if not storage.is_s3(model):
        return model
    target = storage.parse_s3(model)
    local = storage.cache_dir() / "tokenizers" / target.bucket / target.key
    names = [name for name, _size, _etag in storage.list_objects(model) if "/" not in name]
    chosen = [name for name in names if is_tokenizer_file(name)]
    if not chosen:
        raise storage.StorageError(f"{model} holds no tokenizer files (top-level files: {names})")
    with node_lock(f"tokenizer-{model}"):
        for name in chosen:
            storage.download_file(storage.join(model, name), local / name)
    return str(local)


# ----- one download per node ------------------------------------------------------------------


@contextlib.contextmanager
def node_lock(key: str) -> Iterator[None]:
    """An exclusive lock of this node's processes on ``key`` (a file lock in ``LONGRL_CACHE_DIR``).

    Ranks on one node share the cache; the first to take the lock downloads, the others then find
    the files in place. On a shared volume, flock also orders the nodes that mount it.
    """
    locks = storage.cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock_file = locks / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def localize_on_node(uri: str) -> Path:
    """``storage.localize`` done once per node: concurrent ranks wait for the one that downloads.

    A directory once downloaded is recorded with the listing it was made from (keys, sizes, ETags);
    later calls compare the listing, not the bytes, so 8 ranks do not hash 8 copies.
    """
    if not storage.is_s3(uri):
        return storage.localize(uri)
    key = f"localize-{uri}"
    record = storage.cache_dir() / "locks" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.localized.json"
    with node_lock(key):
        listing = [list(item) for item in sorted(storage.list_objects(uri))]
        if listing and record.is_file():
            done = json.loads(record.read_text())
            if done["listing"] == listing and Path(done["path"]).is_dir():
                return Path(done["path"])
        localized = storage.localize(uri)
        if listing and localized.is_dir():
            record.write_text(json.dumps({"path": str(localized), "listing": listing}))
        return localized
