"""Artifact storage over local paths and ``s3://`` URIs (MinIO on the cluster).

Every object longrl writes to S3 carries its SHA-256 in the object's metadata; downloads are
verified against it and uploads of unchanged files are skipped. Large files go up in parts and
an interrupted upload resumes where it stopped: the multipart upload's id is kept next to the
file and the parts already on the server are not sent again. The S3 endpoint comes from
``LONGRL_S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL``), credentials from the usual AWS variables,
which on the cluster come from a Kubernetes Secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PART_SIZE = 64 * 1024 * 1024
SHA_METADATA = "sha256"
_UPLOAD_STATE_SUFFIX = ".longrl-upload.json"


class StorageError(RuntimeError):
    """An artifact could not be read or written; the message says which and why."""


@dataclass(frozen=True)
class S3Path:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, relative: str) -> S3Path:
        return S3Path(self.bucket, f"{self.key.rstrip('/')}/{relative}" if self.key else relative)


def is_s3(uri: str | os.PathLike[str]) -> bool:
    return str(uri).startswith("s3://")


def parse_s3(uri: str) -> S3Path:
    if not is_s3(uri):
        raise StorageError(f"{uri} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StorageError(f"{uri} names no bucket")
    return S3Path(bucket, key.rstrip("/"))


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for local paths and URIs alike."""
    if is_s3(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base, *parts))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def endpoint_url() -> str | None:
    return os.environ.get("LONGRL_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None


_clients: dict[str | None, Any] = {}


def s3_client() -> Any:
    """A boto3 S3 client for the configured endpoint (path-style addressing, as MinIO wants)."""
    endpoint = endpoint_url()
    if endpoint not in _clients:
        import boto3
        from botocore.config import Config

        _clients[endpoint] = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
        )
    return _clients[endpoint]


def _explain(exc: Exception, uri: str) -> StorageError:
    """A StorageError that says what went wrong in the user's terms."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = f" (endpoint {endpoint_url() or 'AWS'})"
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(on the cluster they come from the longrl-s3 Secret)"
        )
    if isinstance(exc, EndpointConnectionError):
        return StorageError(f"cannot reach the S3 endpoint for {uri}{where}: {exc}")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return StorageError(f"bucket '{parse_s3(uri).bucket}' does not exist{where}; create it first")
        if code in ("NoSuchKey", "404", "NotFound"):
            return StorageError(f"{uri} does not exist")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return StorageError(f"access to {uri} denied{where}: check the S3 credentials ({code})")
        return StorageError(f"S3 error on {uri}{where}: {code or exc}")
    return StorageError(f"S3 error on {uri}{where}: {exc}")


def _call(uri: str, operation: str, **kwargs: Any) -> Any:
    try:
        return getattr(s3_client(), operation)(**kwargs)
    except Exception as exc:  # noqa: BLE001 - translated into a StorageError with the reason
        raise _explain(exc, uri) from exc


def _head(target: S3Path) -> dict[str, Any] | None:
    """The object's metadata, or None when there is no object at exactly that key."""
    from botocore.exceptions import ClientError

    if not target.key:
        return None
    try:
        return s3_client().head_object(Bucket=target.bucket, Key=target.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise _explain(exc, str(target)) from exc
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, str(target)) from exc


def _remote_sha(target: S3Path) -> str | None:
    return ((_head(target) or {}).get("Metadata") or {}).get(SHA_METADATA)


# ----- files -----------------------------------------------------------------------------------


def upload_file(local: str | Path, uri: str, part_size: int = PART_SIZE) -> str:
    """Uploads a file (skipped when the same bytes are already there); returns its SHA-256."""
    local = Path(local)
    target = parse_s3(uri)
    sha = file_sha256(local)
    if _remote_sha(target) == sha:
        return sha
    if local.stat().st_size <= part_size:
        with local.open("rb") as body:
            _call(
                uri,
                "put_object",
                Bucket=target.bucket,
                Key=target.key,
                Body=body,
                Metadata={SHA_METADATA: sha},
            )
    else:
        _multipart_upload(local, target, sha, part_size)
    return sha


def _multipart_upload(local: Path, target: S3Path, sha: str, part_size: int) -> None:
    """Uploads in parts; an interrupted upload of the same bytes resumes from the parts already sent."""
    uri = str(target)
    state_file = local.with_name(local.name + _UPLOAD_STATE_SUFFIX)
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if state.get("uri") != uri or state.get("sha256") != sha or state.get("part_size") != part_size:
        created = _call(
            uri, "create_multipart_upload", Bucket=target.bucket, Key=target.key, Metadata={SHA_METADATA: sha}
        )
        state = {"uri": uri, "sha256": sha, "part_size": part_size, "upload_id": created["UploadId"]}
        state_file.write_text(json.dumps(state))
    upload_id = state["upload_id"]
    done = {}
    try:
        listed = s3_client().list_parts(Bucket=target.bucket, Key=target.key, UploadId=upload_id)
        done = {p["PartNumber"]: p["ETag"] for p in listed.get("Parts", [])}
    except Exception:  # noqa: BLE001 - the upload expired or was aborted: start a new one
        state_file.unlink(missing_ok=True)
        return _multipart_upload(local, target, sha, part_size)
    parts = []
    with local.open("rb") as handle:
        number = 0
        while True:
            block = handle.read(part_size)
            if not block:
                break
            number += 1
            etag = f'"{hashlib.md5(block).hexdigest()}"'  # noqa: S324 - S3's ETag of a part is its MD5
            if done.get(number) != etag:
                etag = _call(
                    uri,
                    "upload_part",
                    Bucket=target.bucket,
                    Key=target.key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=block,
                )["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
    _call(
        uri,
        "complete_multipart_upload",
        Bucket=target.bucket,
        Key=target.key,
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},
    )
    state_file.unlink(missing_ok=True)


def download_file(uri: str, local: str | Path) -> Path:
    """Downloads an object, verifying its SHA-256 when it carries one; skips a local file that matches."""
    source = parse_s3(uri)
    local = Path(local)
    expected = _remote_sha(source)
    if expected and local.is_file() and file_sha256(local) == expected:
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=local.parent, prefix=f".{local.name}.", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        _call(uri, "download_file", Bucket=source.bucket, Key=source.key, Filename=str(partial))
        if expected and file_sha256(partial) != expected:
            raise StorageError(f"{uri}: checksum mismatch after download (expected sha256 {expected})")
        os.replace(partial, local)
    finally:
        partial.unlink(missing_ok=True)
    return local


def list_files(uri: str) -> Iterator[str]:
    """Relative paths of the objects under an ``s3://`` prefix."""
    prefix = parse_s3(uri)
    key_prefix = f"{prefix.key}/" if prefix.key else ""
    paginator = s3_client().get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=prefix.bucket, Prefix=key_prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(key_prefix) :]
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, uri) from exc


# ----- trees and text ------------------------------------------------------------------------


def _local_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.endswith(_UPLOAD_STATE_SUFFIX):
            yield path


def copy_tree(source: str, destination: str) -> None:
    """Copies a directory between any two of: local path, ``s3://`` prefix (only changed files move)."""
    if not is_s3(source) and not is_s3(destination):
        shutil.copytree(source, destination, dirs_exist_ok=True)
    elif not is_s3(source):
        root = Path(source)
        if not root.is_dir():
            raise StorageError(f"{source} is not a directory")
        for path in _local_files(root):
            upload_file(path, join(destination, path.relative_to(root).as_posix()))
    elif not is_s3(destination):
        relatives = list(list_files(source))
        if not relatives:
            raise StorageError(f"{source} holds no files")
        for relative in relatives:
            download_file(join(source, relative), Path(destination, relative))
    else:
        with tempfile.TemporaryDirectory() as staging:
            copy_tree(source, staging)
            copy_tree(staging, destination)


def copy_file(source: str, destination: str) -> None:
    if not is_s3(source) and not is_s3(destination):
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    elif not is_s3(source):
        upload_file(source, destination)
    elif not is_s3(destination):
        download_file(source, destination)
    else:
        with tempfile.TemporaryDirectory() as staging:
            local = Path(staging, "file")
            download_file(source, local)
            upload_file(local, destination)


def exists(uri: str) -> bool:
    """Whether a file or a non-empty directory (prefix) is there."""
    if not is_s3(uri):
        return Path(uri).exists()
    if _head(parse_s3(uri)) is not None:
        return True
    return next(iter(list_files(uri)), None) is not None


def read_text(uri: str) -> str:
    if not is_s3(uri):
        return Path(uri).read_text(encoding="utf-8")
    target = parse_s3(uri)
    body = _call(uri, "get_object", Bucket=target.bucket, Key=target.key)["Body"]
    return body.read().decode("utf-8")


def write_text(uri: str, text: str) -> None:
    if not is_s3(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_text(text, encoding="utf-8")
        return
    data = text.encode("utf-8")
    target = parse_s3(uri)
    _call(
        uri,
        "put_object",
        Bucket=target.bucket,
        Key=target.key,
        Body=data,
        Metadata={SHA_METADATA: hashlib.sha256(data).hexdigest()},
    )


def cache_dir() -> Path:
    return Path(os.environ.get("LONGRL_CACHE_DIR", Path(tempfile.gettempdir()) / "longrl-cache"))


def localize(uri: str) -> Path:
    """A local path holding ``uri``: itself when local, else a verified download (file or directory)."""
    if not is_s3(uri):
        path = Path(uri)
        if not path.exists():
            raise StorageError(f"{uri} does not exist")
        return path
    target = parse_s3(uri)
    local = cache_dir() / target.bucket / target.key
    if _head(target) is not None:
        return download_file(uri, local)
    copy_tree(uri, str(local))
    return local


def copy(source: str, destination: str) -> None:
    """Copies a file or a directory, whichever ``source`` is, local or ``s3://``."""
    is_file = Path(source).is_file() if not is_s3(source) else _head(parse_s3(source)) is not None
    (copy_file if is_file else copy_tree)(source, destination)


def main(argv: list[str] | None = None) -> int:
    """``python -m longrl.storage copy SRC DST`` / ``ls URI``: what init containers and people use."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m longrl.storage", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    copy_parser = commands.add_parser("copy", help="copy a file or directory (local paths and s3:// URIs)")
    copy_parser.add_argument("source")
    copy_parser.add_argument("destination")
    list_parser = commands.add_parser("ls", help="list the files under a directory or s3:// prefix")
    list_parser.add_argument("uri")
    args = parser.parse_args(argv)
    try:
        if args.command == "copy":
            copy(args.source, args.destination)
        else:
            names = (
                list_files(args.uri)
                if is_s3(args.uri)
                else (str(p.relative_to(args.uri)) for p in _local_files(Path(args.uri)))
            )
            for name in names:
                print(name)
    except (StorageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
