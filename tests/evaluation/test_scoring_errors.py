"""Evaluation scoring never raises: a failing sample scores 0, keeps its error and is counted."""

import asyncio
import random

import longrl.evaluation.scoring as scoring
from longrl.evaluation import EvalRecord, score_all, summarize
from longrl.rewards import JudgeStats
from tests.support.fuzz_text import fuzz_string


def record(
    answer: str, benchmark: str = "musique", data_source: str = "musique", rid: str = "1"
) -> EvalRecord:
    return EvalRecord(
        id=rid, benchmark=benchmark, data_source=data_source, context="c", question="Who?", answers=[answer]
    )


def said(answer: str) -> str:
    return f"<think>Paragraph 3 names her.</think>\n\nTherefore, the answer is {answer}."


def test_a_failing_sample_scores_zero_and_is_counted(monkeypatch) -> None:
    real = scoring.match_scores

    def flaky(rec, prediction):
        if prediction == "poison":
            raise RuntimeError("metric bug")
        return real(rec, prediction)

    monkeypatch.setattr(scoring, "match_scores", flaky)
    rows = asyncio.run(score_all([record("Ann")], [[said("Ann"), said("poison"), said("Bob")]], None))
    assert [(r["em"], r["score"], r["error"]) for r in rows] == [
        (1.0, 1.0, None),
        (0.0, 0.0, "RuntimeError: metric bug"),
        (0.0, 0.0, None),
    ]
    summary = summarize(rows)["benchmarks"]["musique"]
    assert (summary["n"], summary["errors"]) == (3, 1)


class BrokenJudge:
    stats = JudgeStats()

    async def judge(self, question: str, prediction: str, ground_truth: str) -> bool | None:
        raise ValueError("judge client bug")


def test_a_judge_that_raises_loses_the_verdict_not_the_evaluation() -> None:
    rows = asyncio.run(score_all([record("Ann")], [[said("Ann"), said("Bob")]], BrokenJudge()))  # type: ignore[arg-type]
    assert [(r["judge"], r["score"], r["error"]) for r in rows] == [
        (1.0, 1.0, None),  # an exact match needs no judge
        (None, 0.0, "ValueError: judge client bug"),
    ]
    assert summarize(rows)["benchmarks"]["musique"]["errors"] == 1


def test_answer_sentence_references_are_reduced() -> None:
    records = [
        record("Therefore, the answer is Ann Lee.", rid="1"),
        record("Therefore, the answer is 12.5.", benchmark="docmath", data_source="docmath", rid="2"),
    ]
    rows = asyncio.run(score_all(records, [[said("Ann Lee")], [said("12.5%")]], None))
    assert [(r["em"], r["f1"]) for r in rows] == [(1.0, 1.0), (1.0, 1.0)]


def test_fuzzed_completions_never_raise() -> None:
    rng = random.Random(7)
    records = [record("Ann"), record("42", benchmark="docmath", data_source="docmath", rid="2")]
    completions = [[fuzz_string(rng) for _ in range(150)] for _ in records]
    rows = asyncio.run(score_all(records, completions, None))
    assert len(rows) == 300
    assert all(r["error"] is None and 0.0 <= r["score"] <= 1.0 for r in rows)
