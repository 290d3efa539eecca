"""A verifier outage: each fallback to the rule score is counted, and past the failure rate the step fails."""

import asyncio

import pytest

from longrl.rewards import HybridReward, JudgeConfig, JudgeOutageError, LLMJudge
from longrl.train.engines.verl_reward import compute_score
from tests.support.openai_server import serve_verifier


@pytest.fixture
def verifier():
    with serve_verifier() as (url, script):
        yield url, script


def said(answer: str) -> str:
    return f"<think>reasoning</think>Therefore, the answer is {answer}."


def judge_config(url: str, **overrides) -> JudgeConfig:
    return JudgeConfig(
        **{"base_url": url, "model": "verifier", "max_retries": 0, "timeout_s": 5.0} | overrides
    )


def score_each(reward: HybridReward, answers: list[str]) -> list:
    """Scores wrong answers one after another (each goes to the judge); stops at the first error."""

    async def go():
        results = []
        async with reward.judge:
            for answer in answers:
                results.append(await reward.score("musique", said(answer), "Tallinn", "Where?"))
        return results

    return asyncio.run(go())


def test_the_default_stops_training_when_half_the_calls_fail() -> None:
    config = JudgeConfig(base_url="http://verifier:8000/v1", model="v")
    assert (config.max_failure_rate, config.failure_window) == (0.5, 200)


def test_an_outage_fails_the_step_once_the_window_is_full(verifier) -> None:
    url, script = verifier
    script.mode = "error500"
    reward = HybridReward(LLMJudge(judge_config(url, failure_window=4, max_failure_rate=0.5)))
    fallbacks = score_each(reward, ["Riga", "Oslo", "Bern"])  # too few calls to judge the rate
    assert [(r.judge_failed, r.hybrid) for r in fallbacks] == [(True, 0.0)] * 3
    with pytest.raises(JudgeOutageError, match=r"failed 4 of the last 4 calls .*http_500 4"):
        score_each(reward, ["Rome"])


def test_failures_up_to_the_rate_fall_back_and_one_more_fails(verifier) -> None:
    url, script = verifier
    reward = HybridReward(LLMJudge(judge_config(url, failure_window=4, max_failure_rate=0.5)))
    assert [r.judge for r in score_each(reward, ["Riga", "Oslo"])] == [0.0, 0.0]
    script.mode = "error500"
    assert [r.judge_failed for r in score_each(reward, ["Bern", "Rome"])] == [True, True]  # 2 of 4
    assert reward.judge.recent_failure_rate == 0.5
    with pytest.raises(JudgeOutageError):
        score_each(reward, ["Kyiv"])  # 3 of the last 4


def test_a_recovered_verifier_is_judged_on_its_recent_calls(verifier) -> None:
    url, script = verifier
    script.mode = "error500"
    reward = HybridReward(LLMJudge(judge_config(url, failure_window=4, max_failure_rate=0.5)))
    score_each(reward, ["a", "b"])
    script.mode = "ok"
    score_each(reward, ["c", "d", "e", "f"])
    assert reward.judge.recent_failure_rate == 0.0


def test_the_trl_reward_counts_fallbacks_and_raises_on_an_outage(verifier) -> None:
    url, script = verifier
    script.mode = "error500"
    metrics: dict[str, list[float]] = {}

    def call(reward: HybridReward, answers: list[str]):
        async def go():
            async with reward.judge:
                return await reward(
                    prompts=["p"] * len(answers),
                    completions=[said(a) for a in answers],
                    answer=["Tallinn"] * len(answers),
                    data_source=["musique"] * len(answers),
                    question=["Where?"] * len(answers),
                    log_metric=lambda name, value: metrics.setdefault(name, []).append(value),
                )

        return asyncio.run(go())

    tolerant = HybridReward(LLMJudge(judge_config(url, failure_window=10)))
    assert call(tolerant, ["Riga", "Oslo"]) == [0.0, 0.0]
    assert metrics["reward/judge_failed"] == [1.0]
    assert metrics["judge/failures"] == [2.0]
    assert metrics["judge/failure_rate"] == [1.0]
    strict = HybridReward(LLMJudge(judge_config(url, failure_window=2)))
    with pytest.raises(JudgeOutageError):
        call(strict, ["Riga", "Oslo", "Bern"])


def test_verls_reward_function_reports_the_rate_and_raises_on_an_outage(verifier) -> None:
    url, script = verifier
    script.mode = "error500"
    judge = judge_config(url, failure_window=2).model_dump_json()
    extra_info = {"question": "Where?", "id": "x", "split": "train"}

    first = asyncio.run(compute_score("musique", said("Riga"), "Tallinn", extra_info, judge=judge))
    assert (first["judge_failed"], first["judge_failure_rate"], first["score"]) == (1.0, 1.0, 0.0)
    with pytest.raises(JudgeOutageError, match="verifier at .* failed 2 of the last 2 calls"):
        asyncio.run(compute_score("musique", said("Oslo"), "Tallinn", extra_info, judge=judge))


def test_the_pipelines_rl_step_takes_the_failure_rate_from_its_overrides() -> None:
    from longrl.steps import Placement, judge_config, rl_config
    from longrl.tracking import TrackingConfig

    def judge(overrides):
        served = judge_config("http://verifier:8000/v1", max_tokens=64)
        return rl_config(
            "m",
            "d",
            1,
            [100],
            "o",
            "tiny",
            overrides,
            "dapo",
            "hybrid",
            served,
            Placement(launcher="local"),
            TrackingConfig(),
            [],
        ).judge

    assert judge({}).max_failure_rate == 0.5
    overridden = judge({"judge": {"max_failure_rate": 0.8, "failure_window": 500, "base_url": "http://x"}})
    assert (overridden.max_failure_rate, overridden.failure_window) == (0.8, 500)
    assert (overridden.base_url, overridden.max_tokens) == ("http://verifier:8000/v1", 64)  # the served one
