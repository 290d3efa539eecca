"""S3 look-ups for the pre-flight checks: HEAD, LIST and a parquet file's footer, never a whole object.

The checks use their own client, with short timeouts and one retry: an unreachable endpoint or
refused credentials must be reported in seconds, where the storage client (long timeouts, five
attempts) is patient on purpose.
"""

from __future__ import annotations

import io
import os
from typing import Any

from longrl import storage

_clients: dict[tuple[str | None, ...], Any] = {}


class S3Refused(Exception):
    """An S3 look-up failed; the message says why in the user's terms."""


def client() -> Any:
    credentials = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    key = (storage.endpoint_url(), *(os.environ.get(name) for name in credentials))
    if key not in _clients:
        import boto3
        from botocore.config import Config

        _clients[key] = boto3.session.Session().client(  # a new session reads the credentials afresh
            "s3",
            endpoint_url=key[0],
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=10,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )
    return _clients[key]


def explain(exc: Exception, uri: str) -> S3Refused:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    endpoint = f"endpoint {storage.endpoint_url() or 'AWS'}"
    bucket = storage.parse_s3(uri).bucket
    if isinstance(exc, NoCredentialsError):
        return S3Refused("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, EndpointConnectionError):
        return S3Refused(f"cannot reach the S3 {endpoint}: check LONGRL_S3_ENDPOINT_URL")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return S3Refused(f"bucket '{bucket}' does not exist ({endpoint}): create it or fix the URI")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return S3Refused(f"the S3 credentials were refused ({code}, {endpoint}): check AWS_ACCESS_KEY_ID")
        return S3Refused(f"S3 error {code or exc} ({endpoint})")
    return S3Refused(f"S3 error ({endpoint}): {exc}")


def _call(uri: str, operation: str, **kwargs: Any) -> Any:
    try:
        return getattr(client(), operation)(**kwargs)
    except Exception as exc:  # noqa: BLE001 - translated into the reason it failed
        raise explain(exc, uri) from exc


def list_names(uri: str, limit: int = 10_000) -> list[str]:
    """Relative names of (at most ``limit``) objects under the prefix ``uri/``."""
    target = storage.parse_s3(uri)
    prefix = f"{target.key}/" if target.key else ""
    names: list[str] = []
    token: dict[str, str] = {}
    while len(names) < limit:
        page = _call(uri, "list_objects_v2", Bucket=target.bucket, Prefix=prefix, **token)
        names += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    return names


def object_size(uri: str) -> int | None:
    """The size of the object at exactly ``uri``, or None when there is none (the bucket must exist)."""
    from botocore.exceptions import ClientError

    target = storage.parse_s3(uri)
    try:
        return int(client().head_object(Bucket=target.bucket, Key=target.key)["ContentLength"])
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            _call(uri, "list_objects_v2", Bucket=target.bucket, MaxKeys=1)  # no bucket: say that instead
            return None
        raise explain(exc, uri) from exc
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, uri) from exc


def check_prefix(uri: str) -> None:
    """Raises S3Refused unless the bucket exists and the credentials may list it."""
    target = storage.parse_s3(uri)
    _call(uri, "list_objects_v2", Bucket=target.bucket, Prefix=target.key, MaxKeys=1)


class RangedObject(io.RawIOBase):
    """A seekable read-only view of an S3 object that fetches only the byte ranges read (a parquet footer)."""

    def __init__(self, uri: str, size: int) -> None:
        super().__init__()
        self.uri, self.size, self.position = uri, size, 0
        self.target = storage.parse_s3(uri)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        end = min(self.size, self.position + len(buffer))
        if end <= self.position:
            return 0
        body = _call(
            self.uri,
            "get_object",
            Bucket=self.target.bucket,
            Key=self.target.key,
            Range=f"bytes={self.position}-{end - 1}",
        )["Body"].read()
        buffer[: len(body)] = body
        self.position += len(body)
        return len(body)
