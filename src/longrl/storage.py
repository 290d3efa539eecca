"""Artifact storage over local paths and ``s3://`` URIs (MinIO on the cluster).

Every object longrl writes to S3 carries its SHA-256 in the object's metadata; downloads are
verified against it and uploads of unchanged files are skipped. Large files go up in parts and
an interrupted upload resumes where it stopped: the multipart upload's id is kept next to the
file and the parts already on the server are not sent again; any other unfinished upload of the
same key is aborted. The S3 endpoint comes from ``LONGRL_S3_ENDPOINT_URL`` (or
``AWS_ENDPOINT_URL``), credentials from the usual AWS variables, which on the cluster come from a
Kubernetes Secret.

Crash consistency: local files are written to a temporary file next to them and renamed into
place (``write_text``, downloads), so a reader or a crash sees the old file or the new one, never
part of one. Directory copies take the names of the files that say "the rest is complete"
(``result.json``, ``stats.json``, ...): those are copied after everything else, and a marker at the
destination that would change is removed first. Object keys that would land outside the local
destination (``..``, empty segments, backslashes) are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PART_SIZE = 64 * 1024 * 1024
SHA_METADATA = "sha256"
_UPLOAD_STATE_SUFFIX = ".longrl-upload.json"
_PARTIAL_MARK = ".longrl-partial"  # in the name of a file being written: never copied, never read
LIST_PARTS_ATTEMPTS = 3  # listing a resumed upload's parts; then it is aborted and a new one started
RETRY_BACKOFF_S = 0.5  # doubled after each failed attempt


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


_clients: dict[tuple[str | None, str | None], Any] = {}


def s3_client() -> Any:
    """A boto3 S3 client for the configured endpoint (path-style addressing, as MinIO wants).

    Each client has its own boto3 session: the default session keeps the first credentials it
    resolved for the life of the process, so keys set later (a run's own S3 server) were ignored.
    """
    endpoint = endpoint_url()
    key = (endpoint, os.environ.get("AWS_ACCESS_KEY_ID"))
    if key not in _clients:
        import boto3
        from botocore.config import Config

        _clients[key] = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
        )
    return _clients[key]


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


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed onto it when the block succeeds (removed when not).

    The rename is atomic, so readers and a crash at any point see the old file or the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{_PARTIAL_MARK}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _is_partial(path: Path) -> bool:
    return _PARTIAL_MARK in path.name


def local_path_for_key(destination: str | Path, source: str, relative: str) -> Path:
    """Where the object ``relative`` (listed under the prefix ``source``) goes below ``destination``.

    S3 keys are strings, not paths: a key with a ``..``, ``.`` or empty segment (``m/../../x``,
    ``m//tmp/x``), a backslash or a NUL byte would be written elsewhere, so it is refused.
    """
    root = Path(destination)
    segments = relative.split("/")
    safe = not any(s in ("", ".", "..") or "\\" in s or "\x00" in s for s in segments)
    if safe:
        path = root.joinpath(*segments)
        if path.resolve().is_relative_to(root.resolve()):
            return path
    raise StorageError(
        f"refusing the object {relative!r} under {source}: its key would be written outside {root} "
        "(keys with empty, '.' or '..' segments, backslashes or NUL bytes are not copied)"
    )


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
    """Uploads in parts; an interrupted upload of the same bytes resumes from the parts already sent.

    Every other unfinished upload of the key is aborted first (left behind by a crash, they cost
    storage until they are). A resumed upload that turns out to be gone, or whose parts cannot be
    listed (a server that keeps failing), is aborted and one new upload started in its place.
    """
    uri = str(target)
    state_file = local.with_name(local.name + _UPLOAD_STATE_SUFFIX)
    state = _upload_state(state_file)
    resumable = state.get("uri") == uri and state.get("sha256") == sha and state.get("part_size") == part_size
    upload_id = (
        state["upload_id"] if resumable else _start_multipart_upload(target, sha, part_size, state_file)
    )
    _abort_other_uploads(target, keep=upload_id)
    sent = _sent_parts(target, upload_id) if resumable else {}
    if sent is not None:
        try:
            return _send_parts(local, target, upload_id, part_size, sent, state_file)
        except StorageError as exc:
            if not (resumable and _upload_vanished(exc.__cause__)):
                raise
            logger.warning("%s: the upload being resumed is gone; starting afresh", target)
    _abort_upload(target, upload_id)
    upload_id = _start_multipart_upload(target, sha, part_size, state_file)
    _send_parts(local, target, upload_id, part_size, {}, state_file)


def _send_parts(
    local: Path, target: S3Path, upload_id: str, part_size: int, sent: dict[int, str], state_file: Path
) -> None:
    """Sends the parts the server does not hold yet (``sent``: their ETags) and completes the upload."""
    uri = str(target)
    parts = []
    with local.open("rb") as handle:
        number = 0
        while True:
            block = handle.read(part_size)
            if not block:
                break
            number += 1
            etag = f'"{hashlib.md5(block).hexdigest()}"'  # noqa: S324 - S3's ETag of a part is its MD5
            if sent.get(number) != etag:
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


def _upload_vanished(exc: BaseException | None) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "NoSuchUpload"


def _upload_state(state_file: Path) -> dict[str, Any]:
    try:
        return json.loads(state_file.read_text())
    except (OSError, ValueError):  # none, or torn by a crash before these were written atomically
        return {}


def _start_multipart_upload(target: S3Path, sha: str, part_size: int, state_file: Path) -> str:
    uri = str(target)
    created = _call(
        uri, "create_multipart_upload", Bucket=target.bucket, Key=target.key, Metadata={SHA_METADATA: sha}
    )
    state = {"uri": uri, "sha256": sha, "part_size": part_size, "upload_id": created["UploadId"]}
    write_text(str(state_file), json.dumps(state))
    return created["UploadId"]


def _sent_parts(target: S3Path, upload_id: str) -> dict[int, str] | None:
    """Part number -> ETag of the parts the server holds; None when they cannot be listed.

    A vanished upload (``NoSuchUpload``) answers at once; other failures are retried
    ``LIST_PARTS_ATTEMPTS`` times with growing pauses.
    """
    for attempt in range(1, LIST_PARTS_ATTEMPTS + 1):
        try:
            sent: dict[int, str] = {}
            marker = 0
            while True:
                listed = s3_client().list_parts(
                    Bucket=target.bucket, Key=target.key, UploadId=upload_id, PartNumberMarker=marker
                )
                sent.update({p["PartNumber"]: p["ETag"] for p in listed.get("Parts", [])})
                if not listed.get("IsTruncated"):
                    return sent
                marker = listed["NextPartNumberMarker"]
        except Exception as exc:  # noqa: BLE001 - the caller starts a new upload
            if _upload_vanished(exc) or attempt == LIST_PARTS_ATTEMPTS:
                logger.warning("%s: starting the upload afresh (its parts cannot be listed: %s)", target, exc)
                return None
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
    return None


def _abort_upload(target: S3Path, upload_id: str) -> None:
    try:
        s3_client().abort_multipart_upload(Bucket=target.bucket, Key=target.key, UploadId=upload_id)
    except Exception as exc:  # noqa: BLE001 - an upload already gone; anything else is only reported
        logger.warning("%s: could not abort the multipart upload %s: %s", target, upload_id, exc)


def _abort_other_uploads(target: S3Path, keep: str) -> None:
    """Aborts the unfinished multipart uploads of ``target``'s key other than ``keep``."""
    try:
        listed = s3_client().list_multipart_uploads(Bucket=target.bucket, Prefix=target.key)
    except Exception as exc:  # noqa: BLE001 - not fatal to this upload; reported
        logger.warning("%s: could not list unfinished uploads to abort them: %s", target, exc)
        return
    for upload in listed.get("Uploads", []):
        if upload["Key"] == target.key and upload["UploadId"] != keep:
            _abort_upload(target, upload["UploadId"])


def download_file(uri: str, local: str | Path) -> Path:
    """Downloads an object, verifying its SHA-256 when it carries one; skips a local file that matches."""
    source = parse_s3(uri)
    local = Path(local)
    expected = _remote_sha(source)
    if expected and local.is_file() and file_sha256(local) == expected:
        return local
    with _replacing(local) as partial:
        _call(uri, "download_file", Bucket=source.bucket, Key=source.key, Filename=str(partial))
        if expected and file_sha256(partial) != expected:
            raise StorageError(f"{uri}: checksum mismatch after download (expected sha256 {expected})")
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
        if path.is_file() and not path.name.endswith(_UPLOAD_STATE_SUFFIX) and not _is_partial(path):
            yield path


def _in_order(relatives: list[str], last: Sequence[str]) -> list[str]:
    """Sorted, except that files named in ``last`` (at any depth) come after the rest, in that order."""
    rank = {name: i for i, name in enumerate(last)}
    return sorted(relatives, key=lambda r: (rank.get(r.rpartition("/")[2], -1), r))


def copy_tree(source: str, destination: str, last: Sequence[str] = ()) -> None:
    """Copies a directory between any two of: local path, ``s3://`` prefix (only changed files move).

    ``last``: names of the files that say the rest is complete (``result.json``): they are copied
    after everything else, in this order, and any of them at the destination that would change is
    removed before anything is copied, so the destination never shows one over a partial copy.
    """
    if is_s3(source) and is_s3(destination):
        with tempfile.TemporaryDirectory() as staging:
            copy_tree(source, staging)
            copy_tree(staging, destination, last)
    elif is_s3(source):
        _download_tree(source, Path(destination), last)
    else:
        root = Path(source)
        if not root.is_dir():
            raise StorageError(f"{source} is not a directory")
        relatives = _in_order([p.relative_to(root).as_posix() for p in _local_files(root)], last)
        for relative in relatives:
            if relative.rpartition("/")[2] in last:
                _retract(root / relative, join(destination, relative))
        for relative in relatives:
            copy_file(str(root / relative), join(destination, relative))


def _retract(marker: Path, destination: str) -> None:
    """Removes the copy of ``marker`` at ``destination`` unless it already holds the same bytes."""
    if is_s3(destination):
        target = parse_s3(destination)
        if _remote_sha(target) not in (None, file_sha256(marker)):
            _call(destination, "delete_object", Bucket=target.bucket, Key=target.key)
    elif Path(destination).is_file() and file_sha256(destination) != file_sha256(marker):
        Path(destination).unlink()


def _download_tree(source: str, destination: Path, last: Sequence[str] = ()) -> list[Path]:
    """Downloads every object under ``source``; returns the local files. Every key is checked first."""
    relatives = [r for r in list_files(source) if r and not r.endswith("/")]  # "dir/": a folder marker
    if not relatives:
        raise StorageError(f"{source} holds no files")
    targets = {relative: local_path_for_key(destination, source, relative) for relative in relatives}
    for relative in _in_order(relatives, last):
        download_file(join(source, relative), targets[relative])
    return list(targets.values())


def copy_file(source: str, destination: str) -> None:
    if not is_s3(source) and not is_s3(destination):
        with _replacing(Path(destination)) as partial:
            shutil.copyfile(source, partial)
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
    """The file's text; from S3 verified against the SHA-256 the object carries, as downloads are."""
    if not is_s3(uri):
        return Path(uri).read_text(encoding="utf-8")
    target = parse_s3(uri)
    response = _call(uri, "get_object", Bucket=target.bucket, Key=target.key)
    data = response["Body"].read()
    expected = (response.get("Metadata") or {}).get(SHA_METADATA)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise StorageError(f"{uri}: checksum mismatch on read (expected sha256 {expected})")
    return data.decode("utf-8")


def write_text(uri: str, text: str) -> None:
    """Writes a text file, local or ``s3://``; a local one atomically (the old text or the new, never part)."""
    if not is_s3(uri):
        with _replacing(Path(uri)) as partial:
            with partial.open("w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())  # the new name must not point at unwritten blocks after a power cut
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
    local = local_path_for_key(
        cache_dir(), uri, f"{target.bucket}/{target.key}" if target.key else target.bucket
    )
    if _head(target) is not None:
        return download_file(uri, local)
    _remove_other_files(local, keep=_download_tree(uri, local))
    return local


def _remove_other_files(directory: Path, keep: list[Path]) -> None:
    """Removes what a refreshed cache folder holds beyond ``keep`` (a re-saved model's old shards).

    Files being written (another process localizing the same folder) are left alone.
    """
    kept = set(keep)
    for path in sorted(directory.rglob("*"), reverse=True):  # children before their folder
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        elif path not in kept and not _is_partial(path):
            path.unlink()


def copy(source: str, destination: str) -> None:
    """Copies a file or a directory, whichever ``source`` is, local or ``s3://``."""
    is_file = Path(source).is_file() if not is_s3(source) else _head(parse_s3(source)) is not None
    (copy_file if is_file else copy_tree)(source, destination)


# ----- listings, expected downloads, deletes (pointer artifacts, checkpoint pruning) ------------


def list_objects(uri: str) -> Iterator[tuple[str, int, str]]:
    """(relative path, size, ETag) of each object under an ``s3://`` prefix: the listing alone, no reads."""
    prefix = parse_s3(uri)
    key_prefix = f"{prefix.key}/" if prefix.key else ""
    paginator = s3_client().get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=prefix.bucket, Prefix=key_prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(key_prefix) :], int(item["Size"]), item.get("ETag", "")
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, uri) from exc


def recorded_sha256(uri: str) -> str | None:
    """The SHA-256 an ``s3://`` object carries in its metadata (everything longrl writes has one)."""
    return _remote_sha(parse_s3(uri))


def download_expected(uri: str, local: str | Path, sha256: str) -> Path:
    """Downloads an object that must hash to ``sha256`` (a manifest's); a local file that does is kept."""
    source = parse_s3(uri)
    local = Path(local)
    if local.is_file() and file_sha256(local) == sha256:
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=local.parent, prefix=f".{local.name}.", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        _call(uri, "download_file", Bucket=source.bucket, Key=source.key, Filename=str(partial))
        if file_sha256(partial) != sha256:
            raise StorageError(f"{uri} changed since it was recorded: its sha256 is not {sha256}")
        os.replace(partial, local)
    finally:
        partial.unlink(missing_ok=True)
    return local


def delete_tree(uri: str) -> int:
    """Deletes a directory (local) or every object under an ``s3://`` prefix; returns the files deleted."""
    if not is_s3(uri):
        root = Path(uri)
        if not root.exists():
            return 0
        count = sum(1 for path in root.rglob("*") if path.is_file())
        shutil.rmtree(root)
        return count
    prefix = parse_s3(uri)
    keys = [f"{prefix.key}/{relative}" for relative in list_files(uri)]
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        _call(uri, "delete_objects", Bucket=prefix.bucket, Delete={"Objects": batch, "Quiet": True})
    return len(keys)


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
