"""The storage layer against a real S3 server (SeaweedFS, which checks credentials) on loopback."""

import hashlib
import os
import subprocess
import sys

import boto3
import pytest

from longrl import storage
from longrl.storage import StorageError


def raw_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint)


def test_file_round_trip_with_checksum(s3_endpoint, tmp_path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"x" * 1000)
    sha = storage.upload_file(source, "s3://longrl/models/weights.bin")
    assert sha == hashlib.sha256(b"x" * 1000).hexdigest()
    head = raw_client(s3_endpoint).head_object(Bucket="longrl", Key="models/weights.bin")
    assert head["Metadata"]["sha256"] == sha
    target = storage.download_file("s3://longrl/models/weights.bin", tmp_path / "out" / "weights.bin")
    assert target.read_bytes() == b"x" * 1000


def test_corrupted_object_is_refused(s3_endpoint, tmp_path) -> None:
    raw_client(s3_endpoint).put_object(
        Bucket="longrl", Key="bad.bin", Body=b"tampered", Metadata={"sha256": "0" * 64}
    )
    with pytest.raises(StorageError, match="checksum mismatch"):
        storage.download_file("s3://longrl/bad.bin", tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()


def test_unchanged_files_are_not_uploaded_again(s3_endpoint, tmp_path, monkeypatch) -> None:
    source = tmp_path / "a.txt"
    source.write_text("same")
    storage.upload_file(source, "s3://longrl/a.txt")
    calls = []
    client = storage.s3_client()
    original = client.put_object
    monkeypatch.setattr(client, "put_object", lambda **kw: calls.append(kw) or original(**kw))
    storage.upload_file(source, "s3://longrl/a.txt")
    assert calls == []
    source.write_text("changed")
    storage.upload_file(source, "s3://longrl/a.txt")
    assert len(calls) == 1


def test_large_upload_resumes_after_interruption(s3_endpoint, tmp_path, monkeypatch) -> None:
    part = 5 * 1024 * 1024  # S3's smallest part
    data = bytes(range(256)) * (3 * part // 256 + 100)  # 3 full parts and a bit
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    client = storage.s3_client()
    original = client.upload_part
    sent = []

    def failing_third_part(**kwargs):
        if kwargs["PartNumber"] == 3 and not sent.count(3):
            sent.append(3)
            raise ConnectionError("network dropped")
        sent.append(kwargs["PartNumber"])
        return original(**kwargs)

    monkeypatch.setattr(client, "upload_part", failing_third_part)
    with pytest.raises(StorageError, match="network dropped"):
        storage.upload_file(source, "s3://longrl/big.bin", part_size=part)
    assert sent == [1, 2, 3]
    storage.upload_file(source, "s3://longrl/big.bin", part_size=part)
    assert sent == [1, 2, 3, 3, 4]  # parts 1 and 2 were not sent again
    body = raw_client(s3_endpoint).get_object(Bucket="longrl", Key="big.bin")["Body"].read()
    assert body == data
    assert not list(tmp_path.glob("*.longrl-upload.json"))


def test_directory_trees_both_ways(s3_endpoint, tmp_path) -> None:
    tree = tmp_path / "model"
    (tree / "sub").mkdir(parents=True)
    (tree / "config.json").write_text("{}")
    (tree / "sub" / "w.bin").write_bytes(b"123")
    storage.copy_tree(str(tree), "s3://longrl/runs/1/model")
    assert sorted(storage.list_files("s3://longrl/runs/1/model")) == ["config.json", "sub/w.bin"]
    assert storage.exists("s3://longrl/runs/1/model")
    assert storage.exists("s3://longrl/runs/1/model/config.json")
    assert not storage.exists("s3://longrl/runs/2")
    back = tmp_path / "back"
    storage.copy_tree("s3://longrl/runs/1/model", str(back))
    assert (back / "sub" / "w.bin").read_bytes() == b"123"
    storage.copy_tree("s3://longrl/runs/1/model", "s3://longrl/runs/copy")
    assert sorted(storage.list_files("s3://longrl/runs/copy")) == ["config.json", "sub/w.bin"]


def test_text_and_localize(s3_endpoint, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    storage.write_text("s3://longrl/notes/result.json", '{"ok": true}')
    assert storage.read_text("s3://longrl/notes/result.json") == '{"ok": true}'
    local = storage.localize("s3://longrl/notes/result.json")
    assert local.read_text() == '{"ok": true}' and str(local).startswith(str(tmp_path / "cache"))
    assert storage.localize("s3://longrl/notes").joinpath("result.json").is_file()
    assert storage.localize(str(local)) == local


def test_clear_errors(s3_endpoint, tmp_path, monkeypatch) -> None:
    with pytest.raises(StorageError, match="bucket 'nope' does not exist"):
        storage.write_text("s3://nope/x.txt", "x")
    with pytest.raises(StorageError, match="s3://longrl/missing.txt does not exist"):
        storage.read_text("s3://longrl/missing.txt")
    with pytest.raises(StorageError, match="holds no files"):
        storage.copy_tree("s3://longrl/empty", str(tmp_path / "x"))
    with pytest.raises(StorageError, match="not an s3:// URI"):
        storage.parse_s3("/local/path")


def _read_in_fresh_process(env: dict[str, str]) -> str:
    """The error a user's process gets: a clean environment, no credentials but those given."""
    code = (
        "from longrl import storage\n"
        "try:\n    storage.read_text('s3://longrl/x')\n"
        "except storage.StorageError as exc:\n    print(exc)\n"
    )
    base = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, timeout=120
    )
    return result.stdout.strip()


def test_missing_credentials_and_unreachable_endpoint() -> None:
    from tests.support.s3_server import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    message = _read_in_fresh_process({"LONGRL_S3_ENDPOINT_URL": endpoint})
    assert message.startswith("no S3 credentials for s3://longrl/x: set AWS_ACCESS_KEY_ID"), message
    message = _read_in_fresh_process(
        {"LONGRL_S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    )
    assert message.startswith(f"cannot reach the S3 endpoint for s3://longrl/x (endpoint {endpoint})"), (
        message
    )


def test_wrong_credentials_are_refused(s3_endpoint) -> None:
    storage.write_text("s3://longrl/x", "x")
    for key_id, secret in (("test-access-key", "not-the-secret"), ("someone-else", "test-secret-key")):
        message = _read_in_fresh_process(
            {
                "LONGRL_S3_ENDPOINT_URL": s3_endpoint,
                "AWS_ACCESS_KEY_ID": key_id,
                "AWS_SECRET_ACCESS_KEY": secret,
            }
        )
        assert message.startswith(f"access to s3://longrl/x denied (endpoint {s3_endpoint})"), message
