import collections
import json
import random

import pytest

from longrl.curriculum import (
    DIFFICULTY_FILE,
    TRAIN_DATA_FILE,
    DifficultyRecorder,
    difficulty,
    draw_retrospective,
    phase_dataset,
    read_difficulty,
    weighted_sample_without_replacement,
    write_rows,
)


def test_recorder_means_per_prompt_and_merges_workers(tmp_path) -> None:
    first, second = DifficultyRecorder(), DifficultyRecorder()
    first.add(["a", "a", "b"], [1.0, 0.0, 1.0])
    second.add(["a", "b", "c"], [1.0, 1.0, float("nan")])  # NaN: unscored, ignored
    first.merge(second.state())
    rows = {r["id"]: r for r in first.records(phase=2)}
    assert rows["a"] == {
        "id": "a",
        "phase": 2,
        "mean_reward": 2 / 3,
        "samples": 3,
        "difficulty": pytest.approx(1 / 3),
    }
    assert rows["b"]["difficulty"] == 0.0
    assert "c" not in rows
    path = first.write(tmp_path / DIFFICULTY_FILE, phase=2)
    assert read_difficulty(path)["a"]["samples"] == 3


def test_difficulty_is_clipped() -> None:
    assert difficulty(1.0) == 0.0
    assert difficulty(0.25) == 0.75
    assert difficulty(-0.4) == 1.0  # the overlong penalty can push a mean reward below zero
    assert difficulty(1.2) == 0.0


def test_weighted_sampling_without_replacement_follows_weights() -> None:
    rng = random.Random(0)
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(4000):
        (pick,) = weighted_sample_without_replacement(["easy", "hard", "never"], [1.0, 3.0, 0.0], 1, rng)
        counts[pick] += 1
    assert counts["never"] == 0
    assert counts["hard"] / counts["easy"] == pytest.approx(3.0, rel=0.15)
    picks = weighted_sample_without_replacement(list("abcde"), [1, 1, 1, 1, 1], 5, rng)
    assert sorted(picks) == list("abcde")  # without replacement


def test_draw_skips_always_solved_and_unseen() -> None:
    candidates = [{"id": i} for i in ("solved", "hard", "unseen", "medium")]
    drawn = draw_retrospective(candidates, {"solved": 0.0, "hard": 1.0, "medium": 0.5}, count=10, seed=0)
    assert sorted(r["id"] for r in drawn) == ["hard", "medium"]
    assert draw_retrospective(candidates, {"hard": 1.0}, count=0, seed=0) == []
    assert draw_retrospective(
        candidates, {"hard": 1.0, "medium": 0.5}, count=1, seed=3
    ) == draw_retrospective(candidates, {"hard": 1.0, "medium": 0.5}, count=1, seed=3)


def _phase_dir(tmp_path, name, rows, rewards):
    directory = tmp_path / name
    write_rows(rows, directory / TRAIN_DATA_FILE)
    recorder = DifficultyRecorder()
    for prompt_id, values in rewards.items():
        recorder.add([prompt_id] * len(values), values)
    recorder.write(directory / DIFFICULTY_FILE, phase=1)
    return directory


def row(prompt_id: str) -> dict:
    return {
        "id": prompt_id,
        "prompt": f"p-{prompt_id}",
        "answer": "a",
        "data_source": "musique",
        "question": "q",
    }


def test_phase_dataset_adds_hard_examples_of_earlier_phases(tmp_path) -> None:
    phase1 = _phase_dir(
        tmp_path,
        "phase1",
        [row(f"e{i}") for i in range(10)],
        {**{f"e{i}": [1.0] * 8 for i in range(6)}, **{f"e{i}": [0.0] * 8 for i in range(6, 10)}},
    )
    own = write_rows([row(f"n{i}") for i in range(8)], tmp_path / "train-phase2.parquet")
    rows, summary = phase_dataset(own, [phase1], share=0.25, seed=1)
    drawn = [r for r in rows if r["retrospective"]]
    assert len(rows) == 10 and len(drawn) == 2  # 25 % of the phase's own 8
    assert {r["id"] for r in drawn} <= {"e6", "e7", "e8", "e9"}  # only the unsolved ones
    assert summary == {
        "own_rows": 8,
        "retrospective_candidates": 10,
        "retrospective_eligible": 4,
        "retrospective_drawn": 2,
        "retrospective_mean_difficulty": 1.0,
    }
    rows_again, _ = phase_dataset(own, [phase1], share=0.25, seed=1)
    assert rows_again == rows


def test_phase_dataset_without_earlier_phases(tmp_path) -> None:
    own = write_rows([row("x")], tmp_path / "train.parquet")
    rows, summary = phase_dataset(own, [], share=0.5, seed=0)
    assert [r["id"] for r in rows] == ["x"] and summary["retrospective_drawn"] == 0


def test_unfinished_earlier_phase_is_an_error(tmp_path) -> None:
    own = write_rows([row("x")], tmp_path / "train.parquet")
    (tmp_path / "phase1").mkdir()
    with pytest.raises(FileNotFoundError, match="not a finished RL phase"):
        phase_dataset(own, [tmp_path / "phase1"], share=0.5, seed=0)


def test_later_records_override_earlier_ones(tmp_path) -> None:
    phase1 = _phase_dir(tmp_path, "p1", [row("e")], {"e": [0.0, 0.0]})
    phase2 = _phase_dir(tmp_path, "p2", [row("e")], {"e": [1.0, 1.0]})  # solved later on
    own = write_rows([row(f"n{i}") for i in range(4)], tmp_path / "train.parquet")
    rows, _ = phase_dataset(own, [phase1, phase2], share=1.0, seed=0)
    assert not [r for r in rows if r["retrospective"]]
    assert json.loads((phase2 / DIFFICULTY_FILE).read_text().splitlines()[0])["difficulty"] == 0.0


def test_a_phase_records_the_earlier_phases_it_drew_from(tmp_path) -> None:
    from longrl.curriculum import CURRICULUM_FILE, read_sources, write_sources

    write_sources(str(tmp_path), ["s3://longrl/runs/1/rl1", str(tmp_path / "rl2")])
    assert (tmp_path / CURRICULUM_FILE).is_file()
    assert read_sources(str(tmp_path)) == ["s3://longrl/runs/1/rl1", str(tmp_path / "rl2")]
