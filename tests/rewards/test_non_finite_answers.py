"""NaN and infinities are no answers: not from the model, not as a reference, not from a data file."""

import asyncio
import json

import pytest

from longrl.data.io import DataError
from longrl.data.schema import QARecord, canonical_fields
from longrl.evaluation import EvalRecord, score_all
from longrl.evaluation.benchmarks import load_benchmark
from longrl.rewards import HybridReward, JudgeStats, rule_reward
from longrl.rewards.rule import check_response


def said(answer: str) -> str:
    return f"<think>The filing gives no figure.</think>\n\nTherefore, the answer is {answer}."


class YesJudge:
    """A judge that says yes to everything, and counts how often it was asked."""

    def __init__(self) -> None:
        self.stats = JudgeStats()
        self.calls = 0

    async def judge(self, question: str, prediction: str, ground_truth: str) -> bool | None:
        self.calls += 1
        return True

    def check_available(self) -> None:
        pass


NON_FINITE = [
    "NaN",
    "nan",
    "Infinity",
    "-inf",
    "+Infinity",
    "∞",
    "$NaN",
    "approximately inf",
    "1e999",
    "x = NaN",
]


@pytest.mark.parametrize("answer", NON_FINITE)
@pytest.mark.parametrize("truth", ["nan", "NaN", "inf", "Infinity", "1e999"])
def test_a_non_finite_numeric_answer_is_no_answer(answer, truth) -> None:
    outcome = check_response("docmath_v1", said(answer), truth)
    assert (outcome.prediction, outcome.score) == (None, 0.0)


@pytest.mark.parametrize("truth", ["nan", "Infinity", "-inf", "Therefore, the answer is NaN."])
def test_a_non_finite_reference_matches_nothing_and_is_not_judged(truth) -> None:
    judge = YesJudge()
    result = asyncio.run(HybridReward(judge).score("docmath_v1", said("42"), truth, "How much?"))  # type: ignore[arg-type]
    assert (result.rule, result.judge, result.hybrid, judge.calls) == (0.0, None, 0.0, 0)


def test_finite_numbers_and_text_answers_are_unaffected() -> None:
    assert rule_reward("docmath_v1", said("12.5"), "12.5") == 1.0
    assert rule_reward("docmath_v1", said("1e3"), "1000") == 1.0
    assert rule_reward("musique_v1", said("Nan"), "Nan") == 1.0  # a name (the Nan river), not a number


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            '{"question": "q", "context": "c", "answer": NaN, "data_source": "musique"}',
            "is nan, not an answer",
        ),
        (
            '{"question": "q", "context": "c", "answer": Infinity, "data_source": "docmath"}',
            "is inf, not an answer",
        ),
        (
            '{"question": "q", "context": "c", "answer": [NaN], "data_source": "musique"}',
            "is nan, not an answer",
        ),
        (
            '{"question": "q", "context": "c", "answer": "-Infinity", "data_source": "docmath"}',
            "finite number",
        ),
    ],
)
def test_training_data_refuses_non_finite_answers(line, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        QARecord.model_validate(canonical_fields(json.loads(line)))


def test_a_text_answer_that_reads_nan_is_still_text() -> None:
    raw = {"question": "Which river?", "context": "c", "answer": "Nan", "data_source": "musique"}
    assert QARecord.model_validate(canonical_fields(raw)).answer == "Nan"


def test_benchmark_files_refuse_non_finite_answers(tmp_path) -> None:
    path = tmp_path / "hotpotqa.jsonl"
    path.write_text('{"_id": "1", "context": "c", "input": "q", "answers": [NaN]}\n')
    with pytest.raises(DataError, match="field 'answers': holds nan, not an answer"):
        load_benchmark("hotpotqa", str(path))


def test_evaluation_scores_a_non_finite_prediction_as_unanswered() -> None:
    record = EvalRecord(
        id="1", benchmark="docmath", data_source="docmath", context="c", question="How much?", answers=["nan"]
    )
    rows = asyncio.run(score_all([record], [[said("NaN")]], None))
    assert (rows[0]["prediction"], rows[0]["em"], rows[0]["score"]) == (None, 0.0, 0.0)
