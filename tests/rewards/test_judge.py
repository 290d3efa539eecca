"""The judge client against a real local HTTP server speaking the OpenAI chat API."""

import asyncio
import socket
import time

import pytest

from longrl.rewards import HybridReward, JudgeCache, JudgeConfig, LLMJudge, parse_verdict
from tests.support.openai_server import serve_verifier


@pytest.fixture
def verifier():
    with serve_verifier() as (url, script):
        yield url, script


def make_judge(url: str, **overrides) -> LLMJudge:
    settings = {"base_url": url, "model": "verifier", "timeout_s": 5.0, "max_retries": 0} | overrides
    return LLMJudge(JudgeConfig(**settings))


def run(coro):
    return asyncio.run(coro)


async def ask(judge: LLMJudge, *triples):
    async with judge:
        return await asyncio.gather(*(judge.judge(*t) for t in triples))


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("They match.\n[[YES]]", True),
        ("[[NO]]", False),
        ("[[ yes ]]", True),
        ("First [[YES]] then on reflection [[NO]]", False),
        ("[[YES]]\n\nLet me know if you need more.", None),  # only a verdict at the very end counts
        ("Answer 1 says [[YES]]; they differ.", None),
        ("Equivalent.\n**[[YES]]**.", True),
        ("YES", None),  # only the bracketed verdict counts
        ("", None),
        (None, None),
    ],
)
def test_parse_verdict(text, verdict) -> None:
    assert parse_verdict(text) is verdict


def test_verdicts_and_request_shape(verifier) -> None:
    url, script = verifier
    judge = make_judge(url)
    assert run(ask(judge, ("Capital?", "Paris", "paris"), ("Capital?", "Rome", "Paris"))) == [True, False]
    body = next(b for b in script.requests if "<answer_1>\nParis\n" in b["messages"][1]["content"])
    assert body["temperature"] == 0.0
    assert body["model"] == "verifier"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "[[YES]]" in body["messages"][0]["content"]
    assert body["messages"][1]["content"] == (
        "<problem>\nCapital?\n</problem>\n\n<answer_1>\nParis\n</answer_1>\n\n<answer_2>\nparis\n</answer_2>"
    )
    assert judge.stats.yes == 1 and judge.stats.no == 1 and judge.stats.failures == 0


def test_cache_hits_skip_the_server(verifier) -> None:
    url, script = verifier
    judge = make_judge(url)
    run(ask(judge, ("q", "a", "a")))
    run(ask(judge, ("q", "a", "a"), ("q ", " a", "a")))  # surrounding space does not matter
    assert len(script.requests) == 1
    assert judge.stats.cache_hits == 2
    assert judge.stats.requests == 3


def test_identical_questions_in_flight_share_one_request(verifier) -> None:
    url, script = verifier
    script.delay_s = 0.2
    judge = make_judge(url)
    verdicts = run(ask(judge, *[("q", "42", "42")] * 8))
    assert verdicts == [True] * 8
    assert len(script.requests) == 1


def test_concurrency_is_bounded(verifier) -> None:
    url, script = verifier
    script.delay_s = 0.1
    judge = make_judge(url, max_concurrency=3)
    verdicts = run(ask(judge, *[("q", str(i), str(i)) for i in range(12)]))
    assert verdicts == [True] * 12
    assert script.max_in_flight <= 3
    assert script.max_in_flight >= 2  # and it did run concurrently


def test_cache_is_bounded() -> None:
    cache = JudgeCache(max_size=2)
    cache.put(("q", "1", "1"), True)
    cache.put(("q", "2", "2"), True)
    assert cache.get(("q", "1", "1")) is True  # now the most recently used
    cache.put(("q", "3", "3"), False)
    assert cache.get(("q", "2", "2")) is None
    assert cache.get(("q", "1", "1")) is True
    assert cache.get(("q", "3", "3")) is False
    assert len(cache) == 2
    off = JudgeCache(max_size=0)
    off.put(("q", "1", "1"), True)
    assert off.get(("q", "1", "1")) is None


def test_timeout_is_a_counted_failure(verifier) -> None:
    url, script = verifier
    script.mode, script.slow_s = "slow", 3.0
    judge = make_judge(url, timeout_s=0.3, max_retries=1)
    started = time.monotonic()
    assert run(ask(judge, ("q", "a", "a"))) == [None]
    assert time.monotonic() - started < 2.5
    assert judge.stats.failure_reasons["timeout"] == 1
    assert len(judge.cache) == 0  # failures are not cached


def test_server_errors_are_retried_then_counted(verifier) -> None:
    url, script = verifier
    script.mode = "error500"
    judge = make_judge(url, max_retries=2)
    assert run(ask(judge, ("q", "a", "a"))) == [None]
    assert len(script.requests) == 3  # first try and two retries
    assert judge.stats.failure_reasons["http_500"] == 1


def test_transient_errors_recover_with_retries(verifier) -> None:
    url, script = verifier
    script.mode, script.flaky_failures = "flaky", 2
    judge = make_judge(url, max_retries=3)
    assert run(ask(judge, ("q", "a", "a"))) == [True]
    assert judge.stats.failures == 0


def test_garbage_and_missing_verdicts_are_failures(verifier) -> None:
    url, script = verifier
    script.mode = "garbage"
    judge = make_judge(url)
    assert run(ask(judge, ("q", "a", "a"))) == [None]
    assert judge.stats.failure_reasons["bad_response"] == 1
    script.mode = "no_verdict"
    assert run(ask(judge, ("q", "b", "b"))) == [None]
    assert judge.stats.failure_reasons["unparseable"] == 1


def test_unreachable_verifier_is_a_failure_not_a_crash() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    judge = make_judge(f"http://127.0.0.1:{port}/v1")
    assert run(ask(judge, ("q", "a", "a"))) == [None]
    assert judge.stats.failure_reasons["connection"] == 1


def test_api_key_comes_from_the_environment(verifier, monkeypatch) -> None:
    url, script = verifier
    monkeypatch.setenv("MY_VERIFIER_KEY", "s3cret")
    run(ask(make_judge(url, api_key_env="MY_VERIFIER_KEY"), ("q", "a", "a")))
    assert script.auth_headers[-1] == "Bearer s3cret"


def test_one_judge_serves_several_event_loops(verifier) -> None:
    url, script = verifier
    judge = make_judge(url)
    assert run(ask(judge, ("q", "a", "a"))) == [True]
    assert run(ask(judge, ("q", "b", "c"))) == [False]


# ----- hybrid reward -------------------------------------------------------------------------


def said(answer: str) -> str:
    return f"<think>reasoning</think>Therefore, the answer is {answer}."


def test_hybrid_asks_the_judge_only_below_one(verifier) -> None:
    url, script = verifier
    reward = HybridReward(make_judge(url))

    async def go():
        async with reward.judge:
            return await reward.score_batch(
                ["musique", "musique", "musique", "docmath"],
                [said("Tallinn"), said("tallinn, estonia's capital"), "no reasoning end", said("12")],
                ["Tallinn", "Tallinn's old town", "Tallinn", "12"],
                ["Where?"] * 4,
            )

    exact, rescued, unanswered, numeric = run(go())
    assert (exact.rule, exact.judge, exact.hybrid) == (1.0, None, 1.0)
    assert (rescued.rule, rescued.judge, rescued.hybrid) == (0.0, 0.0, 0.0)  # the judge said NO
    assert (unanswered.prediction, unanswered.judge, unanswered.hybrid) == (None, None, 0.0)
    assert numeric.hybrid == 1.0
    assert len(script.requests) == 1  # only the one below one, with an answer


async def scored(reward: HybridReward, *args):
    async with reward.judge:
        return await reward.score(*args)


def test_hybrid_takes_the_judges_yes(verifier) -> None:
    url, script = verifier
    script.synonyms.add(("twelve", "12"))
    reward = HybridReward(make_judge(url))
    result = run(scored(reward, "docmath_v1", said("twelve"), "12", "How many?"))
    assert (result.prediction, result.rule, result.judge, result.hybrid) == ("twelve", 0.0, 1.0, 1.0)
    assert script.requests[0]["messages"][1]["content"] == (
        "<problem>\nHow many?\n</problem>\n\n<answer_1>\ntwelve\n</answer_1>\n\n<answer_2>\n12\n</answer_2>"
    )


def test_hybrid_falls_back_to_rule_when_the_judge_is_down(verifier) -> None:
    url, script = verifier
    script.mode = "error500"
    reward = HybridReward(make_judge(url))
    result = run(scored(reward, "musique", said("Riga"), "Tallinn", "Where?"))
    assert (result.rule, result.judge, result.judge_failed, result.hybrid) == (0.0, None, True, 0.0)
    assert reward.judge.stats.failures == 1


def test_hybrid_is_a_trl_reward_function(verifier) -> None:
    url, script = verifier
    script.synonyms.add(("paris city", "12"))
    reward = HybridReward(make_judge(url))
    metrics: dict[str, list[float]] = {}
    extras: dict[str, list] = {}

    async def go():
        async with reward.judge:
            return await reward(
                prompts=["p1", "p2", "p3"],
                completions=[
                    [{"role": "assistant", "content": said("Paris")}],
                    said("paris city"),
                    said("Rome"),
                ],
                completion_ids=[[1], [2], [3]],
                answer=["Paris", "12", "Paris"],
                data_source=["musique", "docmath_v1", "musique"],
                question=["Capital?"] * 3,
                id=["a", "b", "c"],
                trainer_state=None,
                log_metric=lambda name, value: metrics.setdefault(name, []).append(value),
                log_extra=lambda column, values: extras.setdefault(column, []).extend(values),
            )

    rewards = run(go())
    assert rewards == [1.0, 1.0, 0.0]
    assert metrics["reward/rule"] == [pytest.approx(1 / 3)]
    assert metrics["reward/hybrid"] == [pytest.approx(2 / 3)]
    assert metrics["reward/judge_rescued"] == [pytest.approx(1 / 3)]
    assert metrics["judge/api_calls"] == [2.0]
    assert extras["rule_reward"] == [1.0, 0.0, 0.0]
    assert extras["judge_reward"] == [None, 1.0, 0.0]


def test_hybrid_without_judge_is_the_rule_reward() -> None:
    reward = HybridReward(judge=None)
    result = run(reward.score("musique", said("Riga"), "Tallinn", "Where?"))
    assert (result.rule, result.judge, result.judge_failed, result.hybrid) == (0.0, None, False, 0.0)
