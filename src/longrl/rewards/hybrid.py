"""The hybrid reward: max(rule, judge), the judge asked only when the rule check says < 1.

Scoring never raises for one response: an internal error (in the rule check or around the judge)
scores 0 for that response, is logged, and is counted in ``reward/errors``; the rest of the batch
is scored. A verifier that gives no verdict leaves the rule score (counted: ``reward/judge_failed``,
``judge/failures``, ``judge/failure_rate``), until it fails too often: then scoring raises
``JudgeOutageError`` and the step fails (``JudgeConfig.max_failure_rate``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from longrl.rewards.extraction import reference_answer
from longrl.rewards.judge import LLMJudge
from longrl.rewards.rule import answer_kind, check_response, judge_can_help, log_scoring_error


@dataclasses.dataclass(frozen=True)
class RewardBreakdown:
    """How one response was scored."""

    prediction: str | None
    rule: float
    judge: float | None  # None: the judge was not asked, or could not answer
    judge_failed: bool = False
    error: str | None = None  # an internal error that scored this response 0 (or lost its judge verdict)

    @property
    def hybrid(self) -> float:
        return max(self.rule, self.judge or 0.0)


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """A completion as text, whether TRL hands it over as a string or as chat messages (never raises)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)):
        return "".join(_message_text(message) for message in completion)
    return "" if completion is None else str(completion)


def _message_text(message: Any) -> str:
    if isinstance(message, dict):
        content = message.get("content")
        return content if isinstance(content, str) else ""
    return message if isinstance(message, str) else ""


class HybridReward:
    """Scores responses with the rule check and, where it fails, the LLM judge.

    An instance is a TRL reward function (``async``, batched: it receives the dataset's
    ``answer``, ``data_source`` and ``question`` columns) and is what evaluation calls too.
    Without a judge it is the rule reward alone.
    """

    __name__ = "hybrid_reward"

    def __init__(self, judge: LLMJudge | None = None) -> None:
        self.judge = judge

    async def score(
        self, data_source: str, response: str, ground_truth: str, question: str
    ) -> RewardBreakdown:
        """Scores one response; never raises (an error scores 0 and is recorded in ``error``)."""
        outcome = check_response(data_source, response, ground_truth)
        prediction, rule = outcome.prediction, outcome.score
        if outcome.error is not None or prediction is None:
            return RewardBreakdown(prediction=prediction, rule=rule, judge=None, error=outcome.error)
        if rule >= 1.0 or self.judge is None:
            return RewardBreakdown(prediction=prediction, rule=rule, judge=None)
        try:
            if not judge_can_help(answer_kind(data_source), ground_truth):
                return RewardBreakdown(prediction=prediction, rule=rule, judge=None)
            verdict = await self.judge.judge(question, prediction, reference_answer(ground_truth))
        except Exception as exc:  # noqa: BLE001 - the judge client already catches its own failures
            error = log_scoring_error(exc, data_source)
            return RewardBreakdown(
                prediction=prediction, rule=rule, judge=None, judge_failed=True, error=error
            )
        self.judge.check_available()
        if verdict is None:
            return RewardBreakdown(prediction=prediction, rule=rule, judge=None, judge_failed=True)
        return RewardBreakdown(prediction=prediction, rule=rule, judge=float(verdict))

    async def score_batch(
        self,
        data_sources: Sequence[str],
        responses: Sequence[str],
        ground_truths: Sequence[str],
        questions: Sequence[str],
    ) -> list[RewardBreakdown]:
        return list(
            await asyncio.gather(
                *(
                    self.score(source, response, truth, question)
                    for source, response, truth, question in zip(
                        data_sources, responses, ground_truths, questions, strict=True
                    )
                )
            )
        )

    async def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        answer: Sequence[str],
        data_source: Sequence[str],
        question: Sequence[str],
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list[Any]], None] | None = None,
        **_: Any,
    ) -> list[float]:
        before = self.judge.stats.snapshot() if self.judge else {}
        breakdowns = await self.score_batch(
            data_source, [completion_text(c) for c in completions], answer, question
        )
        if log_metric is not None:
            for name, value in batch_metrics(breakdowns).items():
                log_metric(name, value)
            if self.judge is not None:
                after = self.judge.stats.snapshot()
                for name, value in after.items():
                    log_metric(f"judge/{name}", value - before.get(name, 0.0))
                log_metric("judge/failure_rate", self.judge.recent_failure_rate)
        if log_extra is not None:
            log_extra("rule_reward", [b.rule for b in breakdowns])
            log_extra("judge_reward", [b.judge for b in breakdowns])
            log_extra("prediction", [b.prediction for b in breakdowns])
        return [b.hybrid for b in breakdowns]


def batch_metrics(breakdowns: Sequence[RewardBreakdown]) -> dict[str, float]:
    """Means over a batch: rule, hybrid, accuracy (hybrid = 1), how often the judge was asked, rescued
    an answer, or failed; and ``reward/errors``, the number (not share) of responses an internal error
    scored 0, so that a single one stands out."""
    n = max(len(breakdowns), 1)
    return {
        "reward/rule": sum(b.rule for b in breakdowns) / n,
        "reward/hybrid": sum(b.hybrid for b in breakdowns) / n,
        "reward/accuracy": sum(b.hybrid >= 1.0 for b in breakdowns) / n,
        "reward/answered": sum(b.prediction is not None for b in breakdowns) / n,
        "reward/judge_asked": sum(b.judge is not None or b.judge_failed for b in breakdowns) / n,
        "reward/judge_rescued": sum(b.hybrid > b.rule for b in breakdowns) / n,
        "reward/judge_failed": sum(b.judge_failed for b in breakdowns) / n,
        "reward/errors": float(sum(b.error is not None for b in breakdowns)),
    }
