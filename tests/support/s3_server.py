"""A real S3 server on loopback (SeaweedFS, ``longrl.seaweedfs``), and the environment to reach it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from longrl.seaweedfs import S3Identity, empty_bucket, serve

IDENTITY = S3Identity(access_key="test-access-key", secret_key="test-secret-key")
BUCKET = "longrl"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": IDENTITY.access_key,
    "AWS_SECRET_ACCESS_KEY": IDENTITY.secret_key,
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_s3(data_dir: Path) -> Iterator[str]:
    """Yields the endpoint URL of a SeaweedFS S3 server keeping its data in ``data_dir``."""
    with serve(data_dir, IDENTITY, buckets=(BUCKET,)) as endpoint:
        yield endpoint


def fresh_bucket(endpoint: str) -> None:
    """Bucket 'longrl', empty: what each test starts from."""
    empty_bucket(endpoint, IDENTITY, BUCKET)
