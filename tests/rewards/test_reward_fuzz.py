"""Property test: for arbitrary text, the reward is a number in [0, 1] and nothing raises.

A seeded fuzz loop (no extra test dependency): thousands of generated strings built from random
unicode, huge numbers and exponents, nested and unbalanced tags, answer markers, verdict tokens
and chat end tokens, used as responses and as ground truths on every route.
"""

import asyncio
import random
import time

import pytest

from longrl.rewards import HybridReward, batch_metrics, rule_reward
from longrl.rewards.judge import MAX_ANSWER_CHARS, as_judged_data, parse_verdict
from longrl.rewards.rule import check_response
from tests.support.fuzz_text import fuzz_string

SOURCES = ("docmath_v1", "long_toc_choices_0_20000", "musique_v1", "")
SEED, CASES = 1234, 3000


@pytest.fixture(scope="module")
def fuzz_cases() -> list[tuple[str, str, str]]:
    rng = random.Random(SEED)
    cases = []
    for _ in range(CASES):
        response = fuzz_string(rng)
        if rng.random() < 0.7:
            response = f"<think>{fuzz_string(rng)}</think>{response}"
        truth = fuzz_string(rng) if rng.random() < 0.5 else rng.choice(["42", "(B)", "Tallinn", "True"])
        cases.append((rng.choice(SOURCES), response, truth))
    return cases


def test_rule_reward_is_in_unit_interval_and_never_errs(fuzz_cases) -> None:
    started = time.monotonic()
    for source, response, truth in fuzz_cases:
        outcome = check_response(source, response, truth)
        assert outcome.error is None, (source, response[:200], truth[:200], outcome.error)
        assert outcome.score in (0.0, 1.0)
        assert 0.0 <= rule_reward(source, truth, response) <= 1.0  # roles swapped: hostile references
    assert time.monotonic() - started < 60  # no input makes scoring crawl


def test_hybrid_reward_scores_every_fuzzed_response(fuzz_cases) -> None:
    reward = HybridReward(judge=None)
    breakdowns = asyncio.run(
        reward.score_batch(*zip(*[(s, r, t, "Q?") for s, r, t in fuzz_cases[:500]], strict=True))
    )
    assert all(0.0 <= b.hybrid <= 1.0 for b in breakdowns)
    assert batch_metrics(breakdowns)["reward/errors"] == 0.0


def test_judged_data_never_escapes_its_tags(fuzz_cases) -> None:
    for _, response, _ in fuzz_cases:
        data = as_judged_data(response, MAX_ANSWER_CHARS)
        assert "<" not in data and ">" not in data
        assert "[[" not in data and "]]" not in data
        assert len(data) <= 5 * MAX_ANSWER_CHARS + 100  # an escape is at most 5 characters
        assert parse_verdict(response) in (True, False, None)
