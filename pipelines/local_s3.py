"""``make run ARTIFACTS=s3``: the local run with every artifact in a local S3 bucket, as on a cluster.

A SeaweedFS server (``longrl.seaweedfs``) keeps its data under the run directory and lives as long
as the run. The run's inputs (base model, data, benchmarks) are uploaded to the bucket and given to
the pipeline as s3:// URIs, and each step writes its outputs under ``s3://longrl/pipelines/``, at
the key its kfp.local path has under the pipeline root (``longrl.artifacts.artifact_location``).
kfp.local itself stays local: its pipeline root holds the pointer artifacts, its cache and the
small UI artifacts (metrics, Markdown, HTML) a cluster's KFP would upload for it. MLflow stays a
local SQLite store.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from longrl import storage
from longrl.artifacts import LOCAL_ARTIFACTS_S3_ENV, LOCAL_PIPELINE_ROOT_ENV
from longrl.seaweedfs import S3Identity, serve

BUCKET = "longrl"
ARTIFACTS_PREFIX = f"s3://{BUCKET}/pipelines"


def run_identity(server_dir: Path) -> S3Identity:
    """The run directory's S3 keys: made once (random), kept beside the server's data."""
    keys = server_dir / "credentials.json"
    if not keys.is_file():
        server_dir.mkdir(parents=True, exist_ok=True)
        keys.write_text(json.dumps({"access_key": "longrl-local", "secret_key": secrets.token_urlsafe(24)}))
        keys.chmod(0o600)
    return S3Identity(**json.loads(keys.read_text()))


@contextmanager
def local_bucket(work: Path, pipeline_root: Path) -> Iterator[str]:
    """A SeaweedFS server for this run, this process's environment (inherited by every step) set to use
    it and to keep the steps' outputs in it; yields the endpoint. Everything is as it was afterwards."""
    server_dir = work / "seaweedfs"
    identity = run_identity(server_dir)
    with serve(server_dir / "data", identity, buckets=(BUCKET,)) as endpoint:
        environment = {
            **identity.environment(endpoint),
            LOCAL_PIPELINE_ROOT_ENV: str(pipeline_root.resolve()),
            LOCAL_ARTIFACTS_S3_ENV: ARTIFACTS_PREFIX,
        }
        saved = {key: os.environ.get(key) for key in environment}
        os.environ.update(environment)
        storage._clients.clear()
        try:
            yield endpoint
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            storage._clients.clear()


def upload_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The pipeline arguments naming the run's inputs (base model, data, benchmarks), as s3:// URIs of
    copies in the bucket (unchanged files are not sent again)."""
    base = f"s3://{BUCKET}"
    uploaded: dict[str, Any] = {"base_model": f"{base}/models/base"}
    storage.copy_tree(inputs["base_model"], uploaded["base_model"])
    for key in ("sft_data", "rl_data"):
        uploaded[key] = [f"{base}/data/{Path(path).name}" for path in inputs[key]]
        for local, uri in zip(inputs[key], uploaded[key], strict=True):
            storage.copy_file(local, uri)
    uploaded["eval_benchmarks"] = {}
    for name, path in inputs["eval_benchmarks"].items():
        uploaded["eval_benchmarks"][name] = f"{base}/data/eval/{Path(path).name}"
        storage.copy_file(path, uploaded["eval_benchmarks"][name])
    return uploaded


class BucketFile:
    """A file in the bucket, read like a local one (``read_text``), named by its URI."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def read_text(self) -> str:
        return storage.read_text(self.uri)

    def __str__(self) -> str:
        return self.uri


def bucket_outputs(work: Path, output: str, names: tuple[str, ...]) -> list[BucketFile]:
    """The files ``names`` (those there are, in that order) of the newest step output called ``output``
    whose data is in the bucket (found through its pointer in kfp.local's pipeline root)."""
    from longrl.artifacts import read_pointer

    pointers = sorted(
        (path for path in work.glob(f"kfp/*/*/{output}") if path.is_file()), key=lambda p: p.stat().st_mtime
    )
    for path in reversed(pointers):
        try:
            pointer = read_pointer(path)
        except storage.StorageError:
            continue
        if storage.is_s3(pointer.location):
            return [BucketFile(pointer.uri(name)) for name in names if pointer.has(name)]
    return []
