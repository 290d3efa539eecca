"""A step's checkpoints in the store: uploaded in the background, pruned, and pulled one at a time.

Uploading a checkpoint of a 7B model takes minutes; ``BackgroundUploader`` sends it from a thread
while training goes on, at most one checkpoint at a time (the next save first waits for the one
before, so the Trainer's own rotation never deletes a directory being read). An upload's error
is raised in the training process at the next wait, never lost.

With several nodes each node uploads its own ranks' parts and then leaves a per-node mark in the
checkpoint's directory; the first node's uploader waits for every node's mark before it puts the
completion marker, so the store never shows a half checkpoint as complete. It then prunes the
store to ``save_total_limit`` complete checkpoints, as the Trainer prunes the local directory.

A restarted step pulls only the checkpoint it resumes from (the newest complete one; for verl, the
one its tracker names) and whatever lies outside checkpoint directories.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from longrl import storage
from longrl.train.checkpoints import COMPLETE_MARKER, PATIENT_TIMEOUT

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = re.compile(r"^(?:checkpoint-|global_step_)(\d+)$")  # the Trainer's and verl's
VERL_TRACKER = "latest_checkpointed_iteration.txt"  # verl's checkpoint tracker (verl_checkpoint.TRACKER_FILE)
NODE_MARK = ".longrl-pushed-node-{node}"


class UploadFailed(RuntimeError):
    """A checkpoint could not be pushed to the store."""


def _top(relative: str) -> str:
    return relative.split("/", 1)[0]


def complete_checkpoints(relatives: Iterable[str]) -> list[str]:
    """Names of the complete ``checkpoint-N`` directories among relative paths, oldest first."""
    relatives = set(relatives)
    names = {_top(r) for r in relatives if "/" in r and CHECKPOINT_DIR.match(_top(r))}
    complete = [name for name in names if f"{name}/{COMPLETE_MARKER}" in relatives]
    return sorted(complete, key=lambda name: int(CHECKPOINT_DIR.match(name).group(1)))  # type: ignore[union-attr]


def resume_files(relatives: list[str], read: Callable[[str], str]) -> list[str]:
    """What a restarted step needs of its checkpoints directory (relative paths in it).

    The newest complete checkpoint (verl: the one its tracker names, read with ``read``) and every
    file outside checkpoint directories; older checkpoints stay in the store.
    """
    if VERL_TRACKER in relatives:
        chosen = f"global_step_{int(read(VERL_TRACKER).strip())}"
    else:
        complete = [
            name for name in complete_checkpoints(relatives) if f"{name}/trainer_state.json" in relatives
        ]
        chosen = complete[-1] if complete else None
    return [
        relative
        for relative in relatives
        if not CHECKPOINT_DIR.match(_top(relative)) or ("/" in relative and _top(relative) == chosen)
    ]


def discard_unfinished(remote_checkpoints: str) -> list[str]:
    """Deletes checkpoint directories newer than the one a restart resumes from (a killed attempt's).

    Run once, before any node uploads: a new attempt that saves the same step again must not find
    an earlier attempt's per-node marks there.
    """
    if not storage.exists(remote_checkpoints):
        return []
    relatives = sorted(storage.list_files(remote_checkpoints))
    kept = {_top(r) for r in resume_files(relatives, _reader(remote_checkpoints)) if "/" in r}
    resumed = max(
        (int(CHECKPOINT_DIR.match(name).group(1)) for name in kept if CHECKPOINT_DIR.match(name)), default=-1
    )
    names = {_top(r) for r in relatives if "/" in r and CHECKPOINT_DIR.match(_top(r))}
    doomed = sorted(n for n in names if int(CHECKPOINT_DIR.match(n).group(1)) > resumed)  # type: ignore[union-attr]
    for name in doomed:
        storage.delete_tree(storage.join(remote_checkpoints, name))
    return doomed


def _reader(remote_checkpoints: str) -> Callable[[str], str]:
    return lambda name: storage.read_text(storage.join(remote_checkpoints, name))


def pull_resume_state(remote_checkpoints: str, local_checkpoints: Path) -> list[str]:
    """Downloads ``resume_files`` of the store's checkpoints; returns what it downloaded."""
    if not storage.exists(remote_checkpoints):
        return []
    relatives = sorted(storage.list_files(remote_checkpoints))
    wanted = resume_files(relatives, _reader(remote_checkpoints))
    for relative in wanted:
        storage.download_file(storage.join(remote_checkpoints, relative), local_checkpoints / relative)
    skipped = len(relatives) - len(wanted)
    if skipped:
        logger.info(
            "resuming from %s: left %d files of older checkpoints in the store", remote_checkpoints, skipped
        )
    return wanted


def prune(remote_checkpoints: str, keep: int) -> list[str]:
    """Deletes the store's checkpoints older than its ``keep`` newest complete ones; returns their names.

    Complete: marked (the Trainer's ``checkpoint-N``), or for verl at most the step its tracker names.
    Incomplete checkpoints newer than those kept are left alone: other nodes may be uploading them.
    """
    relatives = list(storage.list_files(remote_checkpoints))
    if VERL_TRACKER in relatives:
        tracked = int(_reader(remote_checkpoints)(VERL_TRACKER).strip())
        names = {_top(r) for r in relatives if "/" in r and CHECKPOINT_DIR.match(_top(r))}
        complete = sorted(
            (n for n in names if int(CHECKPOINT_DIR.match(n).group(1)) <= tracked),  # type: ignore[union-attr]
            key=lambda n: int(CHECKPOINT_DIR.match(n).group(1)),  # type: ignore[union-attr]
        )
    else:
        complete = complete_checkpoints(relatives)
    if len(complete) <= keep:
        return []
    oldest_kept = int(CHECKPOINT_DIR.match(complete[-keep]).group(1))  # type: ignore[union-attr]
    names = {_top(r) for r in relatives if "/" in r and CHECKPOINT_DIR.match(_top(r))}
    doomed = sorted(n for n in names if int(CHECKPOINT_DIR.match(n).group(1)) < oldest_kept)  # type: ignore[union-attr]
    for name in doomed:
        storage.delete_tree(storage.join(remote_checkpoints, name))
    if doomed:
        logger.info("pruned %s from %s (save_total_limit %d)", ", ".join(doomed), remote_checkpoints, keep)
    return doomed


def push_checkpoint(
    local: Path,
    remote: str,
    node: int,
    nodes: int,
    keep: int | None,
    poll_s: float = 2.0,
    timeout_s: float = PATIENT_TIMEOUT.total_seconds(),
) -> None:
    """Uploads this node's files of a checkpoint, marks them pushed; node 0 then completes and prunes."""
    for path in sorted(p for p in local.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER):
        storage.upload_file(path, storage.join(remote, path.relative_to(local).as_posix()))
    storage.write_text(storage.join(remote, NODE_MARK.format(node=node)), "pushed\n")
    if node != 0:
        return
    marks = [storage.join(remote, NODE_MARK.format(node=n)) for n in range(nodes)]
    deadline = time.monotonic() + timeout_s
    while not all(storage.exists(mark) for mark in marks):
        if time.monotonic() > deadline:
            raise UploadFailed(f"not every node pushed its part of {remote} within {timeout_s:.0f} s")
        time.sleep(poll_s)
    marker = local / COMPLETE_MARKER
    if marker.is_file():
        storage.upload_file(marker, storage.join(remote, COMPLETE_MARKER))
        if keep:
            prune(remote.rsplit("/", 1)[0], keep)


class BackgroundUploader:
    """Runs one upload at a time in a thread; ``wait`` joins it and raises what it raised."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._what = ""

    def start(self, what: str, upload: Callable[[], None]) -> None:
        self.wait()

        def run() -> None:
            try:
                upload()
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread by wait()
                self._error = exc

        self._what = what
        self._thread = threading.Thread(target=run, name=f"upload-{what}", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        if self._thread is not None:
            if self._thread.is_alive():
                logger.info("waiting for the upload of %s", self._what)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise UploadFailed(f"uploading {self._what} failed: {error}") from error
