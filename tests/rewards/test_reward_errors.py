"""An internal error while scoring one response costs that response (0, counted), never the batch."""

import asyncio

import pytest

import longrl.rewards.rule as rule
from longrl.rewards import HybridReward, JudgeStats, rule_reward
from longrl.rewards.hybrid import completion_text


def said(answer: str) -> str:
    return f"<think>Checked the filing.</think>\n\nTherefore, the answer is {answer}."


@pytest.fixture
def scorer_breaks_on_poison(monkeypatch):
    real = rule.score_answer

    def flaky(kind, prediction, ground_truth):
        if "poison" in prediction:
            raise RuntimeError("scorer bug")
        return real(kind, prediction, ground_truth)

    monkeypatch.setattr(rule, "score_answer", flaky)


def test_rule_reward_scores_zero_on_an_internal_error(scorer_breaks_on_poison) -> None:
    assert rule_reward("musique_v1", said("poison"), "poison") == 0.0
    outcome = rule.check_response("musique_v1", said("poison"), "poison")
    assert (outcome.score, outcome.error) == (0.0, "RuntimeError: scorer bug")
    assert rule_reward("musique_v1", said("Tallinn"), "Tallinn") == 1.0


def test_non_text_inputs_score_zero_with_an_error() -> None:
    outcome = rule.check_response(None, said("42"), "42")  # type: ignore[arg-type]
    assert outcome.score == 0.0 and outcome.error.startswith("AttributeError")


def test_errors_are_counted_in_the_batch_metrics(scorer_breaks_on_poison) -> None:
    metrics: dict[str, list[float]] = {}
    rewards = asyncio.run(
        HybridReward(judge=None)(
            prompts=["p"] * 3,
            completions=[said("Tallinn"), said("poison pill"), said("Riga")],
            answer=["Tallinn", "poison pill", "Tallinn"],
            data_source=["musique_v1"] * 3,
            question=["Where?"] * 3,
            log_metric=lambda name, value: metrics.setdefault(name, []).append(value),
        )
    )
    assert rewards == [1.0, 0.0, 0.0]
    assert metrics["reward/errors"] == [1.0]
    assert metrics["reward/rule"] == [pytest.approx(1 / 3)]


class BrokenJudge:
    """A judge whose client has a bug: it raises instead of returning None."""

    def __init__(self) -> None:
        self.stats = JudgeStats()
        self.calls = 0

    async def judge(self, question: str, prediction: str, ground_truth: str) -> bool | None:
        self.calls += 1
        raise KeyError("bug in the judge client")


def test_a_judge_that_raises_keeps_the_rule_score() -> None:
    judge = BrokenJudge()
    reward = HybridReward(judge)  # type: ignore[arg-type]
    result = asyncio.run(reward.score("musique_v1", said("Riga"), "Tallinn", "Where?"))
    assert judge.calls == 1
    assert (result.rule, result.judge, result.judge_failed, result.hybrid) == (0.0, None, True, 0.0)
    assert result.error.startswith("KeyError")


def test_choice_answers_are_not_sent_to_the_judge() -> None:
    judge = BrokenJudge()
    reward = HybridReward(judge)  # type: ignore[arg-type]
    result = asyncio.run(
        reward.score("long_toc_choices_0_20000", said("(A)"), "The correct answer is (B).", "Which?")
    )
    assert judge.calls == 0 and (result.rule, result.judge, result.error) == (0.0, None, None)


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "ab"),
        ([{"role": "assistant", "content": None}], ""),
        ([{"role": "assistant", "content": [{"type": "text", "text": "x"}]}], ""),
        (["a", 3, None], "a"),
        (None, ""),
        (42, "42"),
    ],
)
def test_completion_text_never_raises(completion, text) -> None:
    assert completion_text(completion) == text
