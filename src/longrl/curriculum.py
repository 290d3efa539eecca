"""Curriculum across RL phases: difficulty records and difficulty-aware retrospective sampling.

Every phase records, per prompt id, the mean reward its rollout groups earned. A later phase
re-draws hard examples from earlier phases: difficulty = 1 - mean reward; examples that were
always solved (difficulty 0) are never re-drawn; the rest are drawn without replacement with
probability proportional to difficulty, up to a share of the phase's own dataset. The record
(``difficulty.jsonl``) and the dataset a phase trained on (``train_data.parquet``) are written
to the phase's output directory, so any phase can be re-run from its predecessors' artifacts.
"""

from __future__ import annotations

import collections
import json
import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DIFFICULTY_FILE = "difficulty.jsonl"
TRAIN_DATA_FILE = "train_data.parquet"
CURRICULUM_FILE = "curriculum.json"  # the earlier phases a phase drew from, as given (URIs kept)


class DifficultyRecorder:
    """Accumulates the rewards each prompt id earned during a phase."""

    def __init__(self) -> None:
        self.reward_sums: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.samples: collections.Counter[str] = collections.Counter()

    def add(self, ids: Sequence[str], rewards: Sequence[float]) -> None:
        for prompt_id, reward in zip(ids, rewards, strict=True):
            if reward is None or math.isnan(reward):
                continue
            self.reward_sums[prompt_id] += float(reward)
            self.samples[prompt_id] += 1

    def state(self) -> dict[str, tuple[float, int]]:
        return {prompt_id: (self.reward_sums[prompt_id], n) for prompt_id, n in self.samples.items()}

    def merge(self, state: dict[str, tuple[float, int]]) -> None:
        """Adds another recorder's state (another worker's rollouts)."""
        for prompt_id, (total, n) in state.items():
            self.reward_sums[prompt_id] += total
            self.samples[prompt_id] += n

    def records(self, phase: int) -> list[dict[str, Any]]:
        rows = []
        for prompt_id in sorted(self.samples):
            mean = self.reward_sums[prompt_id] / self.samples[prompt_id]
            rows.append(
                {
                    "id": prompt_id,
                    "phase": phase,
                    "mean_reward": mean,
                    "samples": self.samples[prompt_id],
                    "difficulty": difficulty(mean),
                }
            )
        return rows

    def write(self, path: str | Path, phase: int) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            for row in self.records(phase):
                handle.write(json.dumps(row) + "\n")
        return path


def write_sources(output_dir: str, retrospective_from: Sequence[str]) -> None:
    """Records next to a finished phase (local or s3://) the earlier phases it drew from, as given."""
    from longrl import storage

    sources = {"retrospective_from": list(retrospective_from)}
    storage.write_text(storage.join(output_dir, CURRICULUM_FILE), json.dumps(sources))


def read_sources(output_dir: str) -> list[str]:
    """The earlier phases a finished phase drew from (``write_sources``)."""
    from longrl import storage

    return list(
        json.loads(storage.read_text(storage.join(output_dir, CURRICULUM_FILE)))["retrospective_from"]
    )


def difficulty(mean_reward: float) -> float:
    """1 - mean reward, clipped to [0, 1] (rewards may carry a small overlong penalty)."""
    return min(1.0, max(0.0, 1.0 - mean_reward))


def read_difficulty(path: str | Path) -> dict[str, dict[str, Any]]:
    rows = (json.loads(line) for line in Path(path).read_text().splitlines() if line.strip())
    return {row["id"]: row for row in rows}


def weighted_sample_without_replacement(
    items: Sequence[Any], weights: Sequence[float], count: int, rng: random.Random
) -> list[Any]:
    """``count`` items, each drawn with probability proportional to its weight among those left.

    Efraimidis & Spirakis: give each item the key u^(1/w), u uniform in (0, 1); keep the largest.
    Items of weight 0 are never drawn.
    """
    keyed = [(rng.random() ** (1.0 / w), i) for i, w in enumerate(weights) if w > 0]
    keyed.sort(reverse=True)
    return [items[i] for _, i in keyed[:count]]


def draw_retrospective(
    candidates: Sequence[dict[str, Any]],
    difficulties: dict[str, float],
    count: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Up to ``count`` candidate rows, drawn by difficulty; rows never seen or always solved are left."""
    eligible = [row for row in candidates if difficulties.get(row["id"], 0.0) > 0.0]
    weights = [difficulties[row["id"]] for row in eligible]
    return weighted_sample_without_replacement(eligible, weights, count, random.Random(seed))


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def write_rows(rows: Sequence[dict[str, Any]], path: str | Path, schema: pa.Schema | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(rows), schema=schema), path)
    return path


def phase_dataset(
    train_file: str | Path,
    earlier_phase_dirs: Iterable[str | Path],
    share: float,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows a phase trains on: its own band plus retrospective draws; and a summary of the draw."""
    own = read_rows(train_file)
    own_ids = {row["id"] for row in own}
    candidates: dict[str, dict[str, Any]] = {}
    difficulties: dict[str, float] = {}
    for directory in earlier_phase_dirs:  # later phases override earlier records of the same id
        directory = Path(directory)
        record_file, data_file = directory / DIFFICULTY_FILE, directory / TRAIN_DATA_FILE
        if not record_file.is_file() or not data_file.is_file():
            raise FileNotFoundError(
                f"{directory} is not a finished RL phase: it needs {DIFFICULTY_FILE} and {TRAIN_DATA_FILE}"
            )
        for prompt_id, row in read_difficulty(record_file).items():
            difficulties[prompt_id] = row["difficulty"]
        for row in read_rows(data_file):
            if row["id"] not in own_ids:
                candidates[row["id"]] = {**row, "retrospective": True}
    count = round(share * len(own))
    drawn = draw_retrospective(sorted(candidates.values(), key=lambda r: r["id"]), difficulties, count, seed)
    summary = {
        "own_rows": len(own),
        "retrospective_candidates": len(candidates),
        "retrospective_eligible": sum(difficulties.get(i, 0.0) > 0 for i in candidates),
        "retrospective_drawn": len(drawn),
        "retrospective_mean_difficulty": (sum(difficulties[r["id"]] for r in drawn) / len(drawn))
        if drawn
        else 0.0,
    }
    rows = [{**row, "retrospective": False} for row in own] + drawn
    return rows, summary
