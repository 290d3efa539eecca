"""longrl's hybrid reward as verl's custom reward function, and the phase's difficulty record.

verl's reward loop workers call ``compute_score`` once per rollout through the DAPO reward manager
(``reward.reward_manager.name=dapo``), which adds the overlong penalty to the returned ``score``.
The function returns a dict: ``score`` (the hybrid reward, max(rule, judge)), ``acc`` (the same
value, the metric of DAPO's group filtering), and the breakdown (``rule_reward``, ``answered``,
``judge_asked``, ``judge_rescued``, ``judge_failed``, ``judge_failure_rate`` over the judge's last
calls), which verl logs as reward metrics. A verifier outage raises ``JudgeOutageError`` out of
``compute_score``, which fails the step.

The difficulty record is kept here too, not read from verl's rollout dumps: the dumps carry
neither the dataset's ``extra_info`` nor the groups that group filtering dropped (an example
every rollout failed is exactly what retrospective sampling looks for). Each training rollout's
reward goes, with the example's longrl ``id``, to a named Ray actor (``DifficultyActor``) that the
engine owns; checkpoints save its state (``verl_checkpoint``), a resumed phase restores it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from longrl.curriculum import DifficultyRecorder
from longrl.rewards import HybridReward, JudgeConfig, LLMJudge

logger = logging.getLogger(__name__)

_REWARDS: dict[str | None, HybridReward] = {}
_RECORDERS: dict[str, Any] = {}


def hybrid_reward(judge: str | None) -> HybridReward:
    """One ``HybridReward`` per judge config and process (its judge's cache and client pool are shared)."""
    reward = _REWARDS.get(judge)
    if reward is None:
        llm_judge = LLMJudge(JudgeConfig.model_validate_json(judge)) if judge else None
        reward = _REWARDS[judge] = HybridReward(llm_judge)
    return reward


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    judge: str | None = None,
    difficulty_recorder: str | None = None,
    **_: Any,
) -> dict[str, float]:
    """verl's custom reward function (``reward.custom_reward_function``); ``judge`` is a ``JudgeConfig``
    as JSON (None: the rule reward alone), ``difficulty_recorder`` the name of the phase's
    ``DifficultyActor`` (None: nothing recorded)."""
    extra_info = extra_info or {}
    question = extra_info.get("question")
    if question is None:
        raise ValueError(
            "extra_info.question is missing: the phase parquet was not written by longrl.train.engines.verl_data"
        )
    reward = hybrid_reward(judge)
    breakdown = await reward.score(data_source, solution_str, ground_truth, question)
    if difficulty_recorder and extra_info.get("split") == "train":
        await record(difficulty_recorder, str(extra_info["id"]), breakdown.hybrid)
    return {
        "score": breakdown.hybrid,
        "acc": breakdown.hybrid,
        "rule_reward": breakdown.rule,
        "answered": float(breakdown.prediction is not None),
        "judge_asked": float(breakdown.judge is not None or breakdown.judge_failed),
        "judge_rescued": float(breakdown.hybrid > breakdown.rule),
        "judge_failed": float(breakdown.judge_failed),
        "judge_failure_rate": reward.judge.recent_failure_rate if reward.judge else 0.0,
        "reward_errors": float(breakdown.error is not None),
    }


async def record(recorder: str, example_id: str, reward: float) -> None:
    """Adds one rollout's reward to the phase's record; waits for it, so no reward is lost at the end."""
    import ray

    for attempt in (1, 2):
        handle = _RECORDERS.get(recorder)
        if handle is None:
            handle = _RECORDERS[recorder] = ray.get_actor(recorder)
        try:
            await handle.add.remote([example_id], [reward])
            return
        except ray.exceptions.RayActorError:
            _RECORDERS.pop(recorder, None)  # an earlier attempt's actor: look the name up again
            if attempt == 2:
                raise


class DifficultyActor:
    """A ``DifficultyRecorder`` behind a Ray actor: every reward worker adds to the same record."""

    def __init__(self, state: dict[str, tuple[float, int]] | None = None) -> None:
        self.recorder = DifficultyRecorder()
        if state:
            self.recorder.merge(state)

    def add(self, ids: list[str], rewards: list[float]) -> None:
        self.recorder.add(ids, rewards)

    def state(self) -> dict[str, tuple[float, int]]:
        return self.recorder.state()


def start_difficulty_actor(
    name: str, state: dict[str, tuple[float, int]] | None, timeout_s: float = 30.0
) -> Any:
    """The phase's ``DifficultyActor`` under ``name`` in this Ray job (no CPU reserved: it only counts).

    An actor left under that name by an earlier attempt in the same job is replaced.
    """
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.kill(ray.get_actor(name))
        except ValueError:
            break  # no such actor (any more)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray actor {name} of an earlier attempt does not go away")
        time.sleep(0.2)
    return ray.remote(num_cpus=0)(DifficultyActor).options(name=name).remote(state)


def difficulty_state(handle: Any, timeout_s: float = 120.0) -> dict[str, tuple[float, int]]:
    import ray

    return {key: (total, n) for key, (total, n) in ray.get(handle.state.remote(), timeout=timeout_s).items()}
