"""Faults injected into storage and step outputs: kills mid-upload and mid-write, failing S3 calls,
hostile object keys, stale caches. Uses only the ``s3_endpoint`` fixture and boto3."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import types
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from longrl import storage
from longrl.storage import StorageError


def raw_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint)


def unique_prefix() -> str:
    return f"crash/{uuid.uuid4().hex[:12]}"


def remote_files(uri: str) -> dict[str, bytes]:
    target = storage.parse_s3(uri)
    client = storage.s3_client()
    return {
        relative: client.get_object(Bucket=target.bucket, Key=f"{target.key}/{relative}")["Body"].read()
        for relative in storage.list_files(uri)
    }


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def run_child(code: str, *args: str) -> subprocess.CompletedProcess:
    """A fresh Python process running ``code`` (it kills itself with SIGKILL at the injected point)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


# ----- kill during an upload ---------------------------------------------------------------------


def step_output(version: str) -> dict[str, bytes]:
    """What a finished RL phase leaves in its output directory (the files, not their real contents)."""
    return {
        "model/config.json": f"config {version}".encode(),
        "model/model.safetensors": f"weights {version}".encode() * 1000,
        "train_data.parquet": f"rows {version}".encode(),
        "difficulty.jsonl": f"difficulty {version}".encode(),
        "checkpoints/checkpoint-2/trainer_state.json": f"state {version}".encode(),
        "checkpoints/checkpoint-2/longrl_checkpoint_complete": b"2\n",
        "curriculum.json": f'{{"retrospective_from": ["{version}"]}}'.encode(),
        "result.json": f'{{"version": "{version}"}}'.encode(),
    }


KILLED_PUSH = """
    import json, os, signal, sys
    from longrl import storage

    local, remote, survive, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    original, calls = storage.upload_file, []

    def upload_or_die(path, uri, *args, **kwargs):
        if len(calls) == survive:
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append(uri)
        return original(path, uri, *args, **kwargs)

    storage.upload_file = upload_or_die
    storage.copy_tree(local, remote, last=last)
"""


@pytest.mark.parametrize("survive", [0, 4, 6, 7])
def test_push_killed_midway_never_shows_a_finished_step(s3_endpoint, tmp_path, survive) -> None:
    """A step output replaced on S3 by a push that is SIGKILLed after ``survive`` files: result.json
    is absent (the old one was withdrawn first, the new one goes last); a retry completes it."""
    from longrl.train.staging import DONE_FILES, push_outputs

    remote = f"s3://longrl/{unique_prefix()}/rl-phase1"
    push_outputs(write_tree(tmp_path / "v1", step_output("v1")), remote)
    assert remote_files(remote) == step_output("v1")

    new = write_tree(tmp_path / "v2", step_output("v2"))
    child = run_child(KILLED_PUSH, str(new), remote, str(survive), json.dumps(DONE_FILES))
    assert child.returncode == -signal.SIGKILL, child.stderr
    partial = remote_files(remote)
    assert "result.json" not in partial, sorted(partial)
    if "curriculum.json" in partial:
        assert partial["curriculum.json"] == step_output("v2")["curriculum.json"]
        assert all(partial[name] == data for name, data in step_output("v2").items() if name != "result.json")

    push_outputs(new, remote)  # the retry
    assert remote_files(remote) == step_output("v2")


def test_done_files_are_pushed_after_what_they_vouch_for(s3_endpoint, tmp_path, monkeypatch) -> None:
    from longrl.train.staging import push_outputs

    pushed = []
    original = storage.upload_file
    monkeypatch.setattr(
        storage, "upload_file", lambda path, uri, **kw: pushed.append(uri) or original(path, uri)
    )
    remote = f"s3://longrl/{unique_prefix()}/rl-phase2"
    push_outputs(write_tree(tmp_path, step_output("v1")), remote)
    names = [uri.removeprefix(remote + "/") for uri in pushed]
    assert names[-3:] == [
        "checkpoints/checkpoint-2/longrl_checkpoint_complete",
        "curriculum.json",
        "result.json",
    ]
    assert sorted(names) == sorted(step_output("v1"))


def test_step_killed_while_pushing_its_output_is_redone(s3_endpoint, tmp_path, monkeypatch) -> None:
    """run_step_here on an s3:// output: the push fails after some files; the next attempt does not
    take the step for finished, trains again and completes; the one after that skips it."""
    from longrl.train import runner
    from longrl.train.arguments import config_fingerprint
    from longrl.train.config import TINY_RL, RLStepConfig, with_overrides

    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    remote = f"s3://longrl/{unique_prefix()}/rl-phase2"
    earlier = str(tmp_path / "rl-phase1")
    config = with_overrides(
        RLStepConfig,
        TINY_RL,
        {
            "model": str(tmp_path / "model"),
            "output_dir": remote,
            "phase": 2,
            "train_file": str(tmp_path / "train-phase2.parquet"),
            "retrospective_from": [earlier],
        },
    )
    trained = []

    def fake_run_rl(local, callbacks):  # what run_rl leaves behind, result.json last (train.common.finish)
        trained.append(local.output_dir)
        out = Path(local.output_dir)
        write_tree(
            out, {k: v for k, v in step_output("v1").items() if k not in ("result.json", "curriculum.json")}
        )
        result = {"config_fingerprint": config_fingerprint(local), "global_step": 2}
        storage.write_text(str(out / "result.json"), json.dumps(result))
        return result

    monkeypatch.setitem(sys.modules, "longrl.train.rl", types.SimpleNamespace(run_rl=fake_run_rl))
    original = storage.upload_file

    def failing_upload(path, uri, *args, **kwargs):
        if uri.endswith("/train_data.parquet"):  # what the next phase reads
            raise StorageError("connection reset (injected)")
        return original(path, uri, *args, **kwargs)

    monkeypatch.setattr(storage, "upload_file", failing_upload)
    with pytest.raises(StorageError, match="injected"):
        runner.run_step_here("rl", config)
    assert runner.finished_result(config) is None
    assert not storage.exists(f"{remote}/result.json")

    monkeypatch.setattr(storage, "upload_file", original)
    result = runner.run_step_here("rl", config)
    assert len(trained) == 2 and runner.finished_result(config) == result
    assert json.loads(storage.read_text(f"{remote}/curriculum.json")) == {"retrospective_from": [earlier]}
    assert runner.run_step_here("rl", config) == result and len(trained) == 2


# ----- kill during the final writes --------------------------------------------------------------

KILLED_WRITE = """
    import os, pathlib, signal, sys
    from longrl import storage

    path, point = sys.argv[1], sys.argv[2]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "before-rename":
        os.replace = die
    else:  # half the text written and flushed, then killed
        open_file = pathlib.Path.open

        def half_then_die(self, mode="r", *args, **kwargs):
            handle = open_file(self, mode, *args, **kwargs)
            if "w" in mode:
                write = handle.write
                handle.write = lambda text: (write(text[: len(text) // 2]), handle.flush(), die())
            return handle

        pathlib.Path.open = half_then_die
    if sys.argv[3] == "curriculum":
        from longrl.curriculum import write_sources

        write_sources(os.path.dirname(path), ["s3://new/" + "x" * 5000])
    else:
        storage.write_text(path, '{"version": "new", "pad": "' + "x" * 5000 + '"}')
"""


@pytest.mark.parametrize(
    ("point", "writer"),
    [("mid-write", "write_text"), ("before-rename", "write_text"), ("mid-write", "curriculum")],
)
def test_killed_final_write_leaves_the_old_file(tmp_path, point, writer) -> None:
    name = "curriculum.json" if writer == "curriculum" else "result.json"
    done = tmp_path / name
    old = '{"retrospective_from": []}' if writer == "curriculum" else '{"version": "old"}'
    done.write_text(old)
    child = run_child(KILLED_WRITE, str(done), point, writer)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert done.read_text() == old
    assert [p.name for p in storage._local_files(tmp_path)] == [name]  # a torn temp file is never pushed


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch) -> None:
    done = tmp_path / "stats.json"
    done.write_text('{"old": 1}')

    def failing_replace(*args):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(storage.os, "replace", failing_replace)
    with pytest.raises(OSError, match="injected"):
        storage.write_text(str(done), '{"new": 2}')
    assert done.read_text() == '{"old": 1}' and [p.name for p in tmp_path.iterdir()] == ["stats.json"]


# ----- hostile keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative", ["../../x", "/tmp/x", "a/../../x", "a//b", "./a", "a\\..\\..\\x", "a/\x00b", "", "a/.."]
)
def test_keys_that_leave_the_destination_are_refused(tmp_path, relative) -> None:
    with pytest.raises(StorageError, match="refusing the object"):
        storage.local_path_for_key(tmp_path / "dest", "s3://longrl/m", relative)


def test_ordinary_keys_map_below_the_destination(tmp_path) -> None:
    assert storage.local_path_for_key(tmp_path, "s3://b/m", "a/b..c/.d") == tmp_path / "a" / "b..c" / ".d"


@pytest.mark.parametrize("hostile", ["../../escaped", "a/../../../escaped", "/{outside}/escaped"])
def test_hostile_keys_in_a_listing_are_refused_before_anything_is_written(
    s3_endpoint, tmp_path, monkeypatch, hostile
) -> None:
    """The listing AWS S3 (and moto) give once such keys were put; the test server (SeaweedFS)
    refuses or normalises such keys itself, so its listing is extended with one here."""
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "deep" / "cache"))
    hostile = hostile.format(outside=str(tmp_path / "outside").lstrip("/"))
    uri = f"s3://longrl/{unique_prefix()}/m"
    storage.write_text(f"{uri}/ok.txt", "fine")
    listed = storage.list_files
    monkeypatch.setattr(storage, "list_files", lambda prefix: iter([*listed(prefix), hostile]))
    destination = tmp_path / "deep" / "dest"
    with pytest.raises(StorageError, match=f"refusing the object .* under {uri}"):
        storage.copy_tree(uri, str(destination))
    with pytest.raises(StorageError, match="refusing the object"):
        storage.localize(uri)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_localize_refuses_a_uri_that_leaves_the_cache(s3_endpoint, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    with contextlib.suppress(ClientError):  # the URI is refused before anything is asked of the server
        raw_client(s3_endpoint).put_object(Bucket="longrl", Key="a/../../../escaped", Body=b"planted")
    with pytest.raises(StorageError, match="refusing the object"):
        storage.localize("s3://longrl/a/../../../escaped")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ----- multipart uploads: bounded retries, no orphans ----------------------------------------------

PART = 5 * 1024 * 1024  # S3's smallest part


def unfinished_uploads(endpoint: str, key: str) -> list[str]:
    listed = raw_client(endpoint).list_multipart_uploads(Bucket="longrl", Prefix=key)
    return [u["UploadId"] for u in listed.get("Uploads", []) if u["Key"] == key]


def interrupted_upload(source: Path, uri: str, monkeypatch) -> None:
    """Starts a multipart upload of ``source`` that fails on its second part (state kept to resume)."""
    client = storage.s3_client()
    original = client.upload_part

    def fail_second(**kwargs):
        if kwargs["PartNumber"] == 2:
            raise ConnectionError("network dropped (injected)")
        return original(**kwargs)

    monkeypatch.setattr(client, "upload_part", fail_second)
    with pytest.raises(StorageError, match="injected"):
        storage.upload_file(source, uri, part_size=PART)
    monkeypatch.setattr(client, "upload_part", original)


def test_failing_list_parts_is_retried_a_bounded_number_of_times(s3_endpoint, tmp_path, monkeypatch) -> None:
    key = f"{unique_prefix()}/big.bin"
    data = os.urandom(2 * PART + 1000)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    interrupted_upload(source, f"s3://longrl/{key}", monkeypatch)
    assert len(unfinished_uploads(s3_endpoint, key)) == 1

    client = storage.s3_client()
    listings, pauses = [], []

    def failing_list_parts(**kwargs):
        listings.append(kwargs["UploadId"])
        if len(listings) > 10:
            pytest.fail("list_parts retried without bound")
        raise ConnectionError("list_parts unavailable (injected)")

    monkeypatch.setattr(client, "list_parts", failing_list_parts)
    monkeypatch.setattr(storage.time, "sleep", pauses.append)
    storage.upload_file(source, f"s3://longrl/{key}", part_size=PART)

    assert len(listings) == storage.LIST_PARTS_ATTEMPTS and len(set(listings)) == 1
    assert pauses == [storage.RETRY_BACKOFF_S * 2**i for i in range(storage.LIST_PARTS_ATTEMPTS - 1)]
    assert raw_client(s3_endpoint).get_object(Bucket="longrl", Key=key)["Body"].read() == data
    assert unfinished_uploads(s3_endpoint, key) == []
    assert not list(tmp_path.glob("*.longrl-upload.json"))


def test_stale_uploads_of_the_key_are_aborted(s3_endpoint, tmp_path, monkeypatch) -> None:
    key = f"{unique_prefix()}/big.bin"
    client = raw_client(s3_endpoint)
    for _ in range(2):  # left by processes killed mid-upload
        client.create_multipart_upload(Bucket="longrl", Key=key)
    other = client.create_multipart_upload(Bucket="longrl", Key=key + ".other")["UploadId"]
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(PART + 1000))
    interrupted_upload(source, f"s3://longrl/{key}", monkeypatch)  # aborts the two; its own stays
    assert len(unfinished_uploads(s3_endpoint, key)) == 1

    client.abort_multipart_upload(Bucket="longrl", Key=key, UploadId=unfinished_uploads(s3_endpoint, key)[0])
    storage.upload_file(source, f"s3://longrl/{key}", part_size=PART)  # its upload vanished: a new one
    assert client.get_object(Bucket="longrl", Key=key)["Body"].read() == source.read_bytes()
    assert unfinished_uploads(s3_endpoint, key) == []
    assert unfinished_uploads(s3_endpoint, key + ".other") == [other]  # another key's upload is not ours


def test_a_resumed_upload_that_is_gone_is_started_afresh(s3_endpoint, tmp_path, monkeypatch) -> None:
    """The upload expired on the server, which still lists (no) parts for it: the parts sent to it
    are refused, so a new upload replaces it."""
    key = f"{unique_prefix()}/big.bin"
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(PART + 1000))
    interrupted_upload(source, f"s3://longrl/{key}", monkeypatch)
    (gone,) = unfinished_uploads(s3_endpoint, key)
    raw_client(s3_endpoint).abort_multipart_upload(Bucket="longrl", Key=key, UploadId=gone)
    monkeypatch.setattr(
        storage.s3_client(), "list_parts", lambda **kwargs: {"Parts": [], "IsTruncated": False}
    )
    storage.upload_file(source, f"s3://longrl/{key}", part_size=PART)
    assert raw_client(s3_endpoint).get_object(Bucket="longrl", Key=key)["Body"].read() == source.read_bytes()
    assert unfinished_uploads(s3_endpoint, key) == []


# ----- caches and reads ------------------------------------------------------------------------------


def test_refreshed_cache_folder_holds_only_the_new_files(s3_endpoint, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"s3://longrl/{unique_prefix()}/model"
    old = {
        "config.json": b"{}",
        "model-00001-of-00002.safetensors": b"a",
        "model-00002-of-00002.safetensors": b"b",
    }
    storage.copy_tree(str(write_tree(tmp_path / "old", old)), uri)
    local = storage.localize(uri)
    assert sorted(p.name for p in local.rglob("*")) == sorted(old)

    target = storage.parse_s3(uri)
    for name in old:
        storage.s3_client().delete_object(Bucket=target.bucket, Key=f"{target.key}/{name}")
    new = {"config.json": b'{"v": 2}', "model.safetensors": b"ab", "sub/tokenizer.json": b"t"}
    storage.copy_tree(str(write_tree(tmp_path / "new", new)), uri)
    assert storage.localize(uri) == local
    assert {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()} == new


def test_text_reads_are_verified(s3_endpoint) -> None:
    key = f"{unique_prefix()}/result.json"
    raw_client(s3_endpoint).put_object(
        Bucket="longrl", Key=key, Body=b'{"a": 2}', Metadata={"sha256": "0" * 64}
    )
    with pytest.raises(StorageError, match="checksum mismatch"):
        storage.read_text(f"s3://longrl/{key}")
    storage.write_text(f"s3://longrl/{key}", '{"a": 1}')
    assert storage.read_text(f"s3://longrl/{key}") == '{"a": 1}'
