"""The difficulty record in checkpoints on several nodes: two gloo ranks, each with its own output
directory (nodes that share no filesystem), save a checkpoint and resume from rank 0's copy."""

import json
from pathlib import Path
from types import SimpleNamespace

from longrl.curriculum import DifficultyRecorder
from longrl.train.callbacks import (
    DIFFICULTY_STATE_FILE,
    DifficultyCheckpointCallback,
    gather_difficulty,
    restore_difficulty,
)

STEP = 2


def rollouts(rank: int) -> tuple[list[str], list[float]]:
    """What rank ``rank`` rolled out before the checkpoint: its own prompts and one both ranks drew."""
    return [f"rank{rank}-q", f"rank{rank}-q", "shared"], [1.0, 0.0, float(rank)]


def two_ranks(rank: int, root: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{root / 'rendezvous'}", rank=rank, world_size=2)
    try:
        recorder = DifficultyRecorder()
        recorder.add(*rollouts(rank))
        callback = DifficultyCheckpointCallback(recorder)
        args, state = SimpleNamespace(output_dir=str(root / f"node{rank}")), SimpleNamespace(global_step=STEP)
        callback.on_train_begin(args, state, None)
        callback.on_save(args, state, None)
        dist.barrier()

        # a restart: each node pulled the checkpoint the store holds, which is rank 0's
        resumed = DifficultyRecorder()
        restore_difficulty(resumed, str(root / "node0" / f"checkpoint-{STEP}"))
        resumed.add([f"rank{rank}-after"], [0.5])
        merged = gather_difficulty(resumed)
        if merged is not None:
            (root / "resumed.json").write_text(json.dumps(merged.state()))
    finally:
        dist.destroy_process_group()


def expected(*ranks: int) -> dict[str, list[float | int]]:
    recorder = DifficultyRecorder()
    for rank in ranks:
        recorder.add(*rollouts(rank))
    return {key: list(value) for key, value in recorder.state().items()}


def test_rank_0_saves_and_restores_every_ranks_difficulty_record(tmp_path) -> None:
    import torch.multiprocessing as mp

    # forked: the ranks start with this process's imports (transformers takes seconds to import)
    mp.start_processes(two_ranks, args=(tmp_path,), nprocs=2, join=True, start_method="fork")

    saved = tmp_path / "node0" / f"checkpoint-{STEP}" / DIFFICULTY_STATE_FILE
    assert json.loads(saved.read_text()) == expected(0, 1)  # rank 1's records are in rank 0's checkpoint
    assert expected(0, 1)["shared"] == [1.0, 2]
    assert not list((tmp_path / "node1").rglob(f"{DIFFICULTY_STATE_FILE}*"))  # one writer
    # resumed on two ranks: every saved record came back once (not once per rank), plus the new ones
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert resumed == expected(0, 1) | {"rank0-after": [0.5, 1], "rank1-after": [0.5, 1]}
    # and in a lone process
    alone = DifficultyRecorder()
    restore_difficulty(alone, str(saved.parent))
    assert {key: list(value) for key, value in alone.state().items()} == expected(0, 1)
