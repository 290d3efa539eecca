"""Checkpoints in the store: background pushes, pruning to save_total_limit, pulling only the resumed one."""

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from longrl import storage
from longrl.train.checkpoints import COMPLETE_MARKER
from longrl.train.remote_checkpoints import (
    BackgroundUploader,
    UploadFailed,
    discard_unfinished,
    prune,
    pull_resume_state,
    push_checkpoint,
    resume_files,
)
from longrl.train.staging import PushCheckpoints

REMOTE = "s3://longrl/runs/1/sft/checkpoints"


def write_checkpoint(root: Path, step: int, complete: bool = True, size: int = 1000) -> Path:
    checkpoint = root / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True, exist_ok=True)
    (checkpoint / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    (checkpoint / "optimizer.pt").write_bytes(bytes([step]) * size)
    if complete:
        (checkpoint / COMPLETE_MARKER).write_text(f"{step}\n")
    return checkpoint


def test_a_restart_needs_the_newest_complete_checkpoint_and_what_lies_outside_checkpoints() -> None:
    relatives = [
        "checkpoint-2/trainer_state.json",
        "checkpoint-2/optimizer.pt",
        f"checkpoint-2/{COMPLETE_MARKER}",
        "checkpoint-4/trainer_state.json",
        "checkpoint-4/optimizer.pt",
        f"checkpoint-4/{COMPLETE_MARKER}",
        "checkpoint-6/optimizer.pt",  # a killed save: no marker
        "metric_logs/log.jsonl",
    ]
    assert resume_files(relatives, lambda name: "") == [
        "checkpoint-4/trainer_state.json",
        "checkpoint-4/optimizer.pt",
        f"checkpoint-4/{COMPLETE_MARKER}",
        "metric_logs/log.jsonl",
    ]
    verl = [
        "global_step_3/actor/model.pt",
        "global_step_5/actor/model.pt",
        "latest_checkpointed_iteration.txt",
    ]
    assert resume_files(verl, lambda name: "3\n") == [
        "global_step_3/actor/model.pt",
        "latest_checkpointed_iteration.txt",
    ]
    assert resume_files(["checkpoint-6/optimizer.pt"], lambda name: "") == []


def test_a_restart_downloads_only_the_checkpoint_it_resumes_from(s3_endpoint, tmp_path) -> None:
    for step in (2, 4):
        write_checkpoint(tmp_path / "old", step, size=50_000)
    write_checkpoint(tmp_path / "old", 6, complete=False, size=50_000)
    storage.copy_tree(str(tmp_path / "old"), REMOTE)
    served = []
    storage.s3_client().meta.events.register(
        "after-call.s3.GetObject", lambda parsed, **_: served.append(int(parsed["ContentLength"]))
    )

    pulled = pull_resume_state(REMOTE, tmp_path / "new")
    assert sorted(pulled) == sorted(
        ["checkpoint-4/trainer_state.json", "checkpoint-4/optimizer.pt", f"checkpoint-4/{COMPLETE_MARKER}"]
    )
    assert sum(served) < 51_000  # one checkpoint's bytes, not three
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["checkpoint-4"]

    assert discard_unfinished(REMOTE) == ["checkpoint-6"]  # a killed attempt's save, before anyone pushes
    assert {r.split("/")[0] for r in storage.list_files(REMOTE)} == {"checkpoint-2", "checkpoint-4"}


def test_the_store_keeps_save_total_limit_complete_checkpoints(s3_endpoint, tmp_path) -> None:
    for step in (1, 2, 3, 4):
        write_checkpoint(tmp_path / "ck", step)
    write_checkpoint(tmp_path / "ck", 5, complete=False)  # another node may still be pushing it
    storage.copy_tree(str(tmp_path / "ck"), REMOTE)
    assert prune(REMOTE, keep=2) == ["checkpoint-1", "checkpoint-2"]
    assert {r.split("/")[0] for r in storage.list_files(REMOTE)} == {
        "checkpoint-3",
        "checkpoint-4",
        "checkpoint-5",
    }
    assert prune(REMOTE, keep=2) == []


def test_verl_checkpoints_are_pruned_up_to_the_one_its_tracker_names(s3_endpoint, tmp_path) -> None:
    for step in (1, 2, 3, 4):
        (tmp_path / "verl" / f"global_step_{step}" / "actor").mkdir(parents=True)
        (tmp_path / "verl" / f"global_step_{step}" / "actor" / "model.pt").write_bytes(b"w")
    (tmp_path / "verl" / "latest_checkpointed_iteration.txt").write_text("3")  # 4 is still being pushed
    storage.copy_tree(str(tmp_path / "verl"), REMOTE)
    assert prune(REMOTE, keep=2) == ["global_step_1"]
    left = {r.split("/")[0] for r in storage.list_files(REMOTE)}
    assert left == {"global_step_2", "global_step_3", "global_step_4", "latest_checkpointed_iteration.txt"}


def test_the_marker_goes_up_after_every_node_pushed_its_part(s3_endpoint, tmp_path) -> None:
    node0 = write_checkpoint(tmp_path / "node0", 2)
    node1 = tmp_path / "node1" / "checkpoint-2"
    node1.mkdir(parents=True)
    (node1 / "rank1-shard.pt").write_bytes(b"shard")
    remote = f"{REMOTE}/checkpoint-2"
    first = threading.Thread(target=push_checkpoint, args=(node0, remote, 0, 2, None, 0.05))
    first.start()
    first.join(timeout=1.0)
    assert first.is_alive()  # waiting for node 1
    assert not storage.exists(f"{remote}/{COMPLETE_MARKER}")
    push_checkpoint(node1, remote, 1, 2, None)
    first.join(timeout=30)
    assert storage.exists(f"{remote}/{COMPLETE_MARKER}") and storage.exists(f"{remote}/rank1-shard.pt")


def test_an_upload_error_is_raised_at_the_next_wait() -> None:
    uploads = BackgroundUploader()

    def broken() -> None:
        raise storage.StorageError("access denied")

    uploads.start("checkpoint-2", broken)
    with pytest.raises(UploadFailed, match="checkpoint-2 failed: access denied"):
        uploads.wait()
    uploads.wait()  # raised once


def test_training_goes_on_while_a_checkpoint_uploads(s3_endpoint, tmp_path, monkeypatch) -> None:
    release = threading.Event()
    real_upload = storage.upload_file

    def slow_upload(local, uri, *args, **kwargs):
        release.wait(timeout=30)
        return real_upload(local, uri, *args, **kwargs)

    monkeypatch.setattr(storage, "upload_file", slow_upload)
    callback = PushCheckpoints("s3://longrl/runs/1/sft")
    args = SimpleNamespace(output_dir=str(tmp_path), save_total_limit=2)
    control = SimpleNamespace(should_save=False)
    callback.on_train_begin(args, None, control)
    for step in (1, 2, 3):
        write_checkpoint(tmp_path, step)
        callback.on_step_end(args, None, SimpleNamespace(should_save=True))  # the upload before is done
        release.clear()
        callback.on_save(args, SimpleNamespace(global_step=step), control)
        assert callback.uploads.busy  # on_save returned; the upload runs on
        release.set()
    callback.on_train_end(args, None, control)
    assert not callback.uploads.busy
    names = {r.split("/")[0] for r in storage.list_files(REMOTE)}
    assert names == {"checkpoint-2", "checkpoint-3"}  # pruned to save_total_limit in the store too
    assert storage.exists(f"{REMOTE}/checkpoint-3/{COMPLETE_MARKER}")
