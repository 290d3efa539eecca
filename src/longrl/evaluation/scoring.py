"""Scores of benchmark answers: EM, sub-EM, F1, the LLM judge's verdict and the paper's headline.

The headline score of an answer is max(exact match, judge): the judge is asked only when the
answer is not already an exact match, as in training. DocMath answers are numbers, so their
"exact match" is the numeric rule (tolerance and unit slips as in the reward). References given
as answer sentences ("Therefore, the answer is X.") are reduced to X first.

Scoring never raises: a sample whose scoring fails scores 0, keeps the error in its row
(``error``) and is counted per benchmark (``errors``); the rest of the evaluation goes on.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
from typing import Any

from longrl.evaluation.benchmarks import EvalRecord
from longrl.rewards import LLMJudge, exact_match, sub_exact_match, token_f1
from longrl.rewards.extraction import reference_answer
from longrl.rewards.rule import (
    AnswerKind,
    answer_kind,
    final_answer,
    judge_can_help,
    log_scoring_error,
    score_answer,
)

METRICS = ("em", "sub_em", "f1", "judge", "score")


_NO_MATCH = {"em": 0.0, "sub_em": 0.0, "f1": 0.0}


def match_scores(record: EvalRecord, prediction: str | None) -> dict[str, float]:
    if not prediction:
        return dict(_NO_MATCH)
    kind = answer_kind(record.data_source)
    answers = [reference_answer(answer) for answer in record.answers]
    if kind is not AnswerKind.TEXT:  # numbers and option letters: the reward's rule is the match
        rule = max(score_answer(kind, prediction, answer) for answer in answers)
        return {"em": rule, "sub_em": rule, "f1": rule}
    return {
        "em": max(exact_match(prediction, a) for a in answers),
        "sub_em": max(sub_exact_match(prediction, a) for a in answers),
        "f1": max(token_f1(prediction, a) for a in answers),
    }


def _extract_and_match(
    record: EvalRecord, completion: str
) -> tuple[str | None, dict[str, float], str | None]:
    """(prediction, match scores, error): never raises; an error scores 0."""
    try:
        prediction = final_answer(answer_kind(record.data_source), completion)
        return prediction, match_scores(record, prediction), None
    except Exception as exc:  # noqa: BLE001 - one bad sample must not end an evaluation
        return None, dict(_NO_MATCH), log_scoring_error(exc, record.benchmark)


async def _judge(
    judge: LLMJudge | None, record: EvalRecord, prediction: str | None, em: float
) -> float | None:
    if em >= 1.0:
        return 1.0
    if judge is None or not prediction:
        return 0.0 if not prediction else None
    kind = answer_kind(record.data_source)
    answers = [reference_answer(a) for a in record.answers[:3] if judge_can_help(kind, a)]
    if not answers:
        return 0.0
    verdicts = [await judge.judge(record.question, prediction, answer) for answer in answers]
    if any(v is True for v in verdicts):
        return 1.0
    return None if all(v is None for v in verdicts) else 0.0


async def _safe_judge(
    judge: LLMJudge | None, record: EvalRecord, prediction: str | None, em: float
) -> tuple[float | None, str | None]:
    try:
        return await _judge(judge, record, prediction, em), None
    except Exception as exc:  # noqa: BLE001 - the verdict is lost, not the evaluation
        return None, log_scoring_error(exc, record.benchmark)


async def score_all(
    records: list[EvalRecord], completions: list[list[str]], judge: LLMJudge | None
) -> list[dict[str, Any]]:
    """One row per (record, sample): the answer, its scores, the judge's verdict (None: unavailable) and
    the error that zeroed it (None: none)."""
    rows: list[dict[str, Any]] = []
    pending = []
    for record, samples in zip(records, completions, strict=True):
        for index, completion in enumerate(samples):
            prediction, scores, error = _extract_and_match(record, completion)
            rows.append(
                {
                    "benchmark": record.benchmark,
                    "id": record.id,
                    "sample": index,
                    "question": record.question,
                    "answers": list(record.answers),
                    "completion": completion,
                    "prediction": prediction,
                    **scores,
                    "error": error,
                }
            )
            pending.append(_safe_judge(judge, record, prediction, scores["em"]))
    for row, (verdict, error) in zip(rows, await asyncio.gather(*pending), strict=True):
        row["judge"] = verdict
        row["error"] = row["error"] or error
        row["score"] = max(row["em"], verdict or 0.0)
    return rows


def questions_fingerprint(rows: list[dict[str, Any]]) -> str:
    """A digest of which questions (id, question, answers) were asked: equal only for the same set."""
    asked = sorted({json.dumps([r["id"], r["question"], list(r["answers"])]) for r in rows})
    return hashlib.sha256("\n".join(asked).encode()).hexdigest()[:16]


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means per benchmark and their unweighted average across benchmarks; per benchmark also the number
    of answers (``n``) and which questions they answer (``questions``), for comparing evaluations."""
    by_benchmark: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        by_benchmark[row["benchmark"]].append(row)
    summary: dict[str, Any] = {"benchmarks": {}}
    for name, items in sorted(by_benchmark.items()):
        judged = [r["judge"] for r in items if r["judge"] is not None]
        summary["benchmarks"][name] = {
            "n": len(items),
            "questions": questions_fingerprint(items),
            "em": sum(r["em"] for r in items) / len(items),
            "sub_em": sum(r["sub_em"] for r in items) / len(items),
            "f1": sum(r["f1"] for r in items) / len(items),
            "judge": sum(judged) / len(judged) if judged else None,
            "judge_unavailable": sum(r["judge"] is None for r in items),
            "errors": sum(r.get("error") is not None for r in items),
            "score": sum(r["score"] for r in items) / len(items),
        }
    scores = [b["score"] for b in summary["benchmarks"].values()]
    summary["average"] = sum(scores) / len(scores) if scores else 0.0
    return summary
