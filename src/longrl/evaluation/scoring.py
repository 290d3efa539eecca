"""Scores of benchmark answers: EM, sub-EM, F1, the LLM judge's verdict and the paper's headline.

The headline score of an answer is max(exact match, judge): the judge is asked only when the
answer is not already an exact match, as in training. DocMath answers are numbers, so their
"exact match" is the numeric rule (tolerance and unit slips as in the reward).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from longrl.evaluation.benchmarks import EvalRecord
from longrl.rewards import LLMJudge, exact_match, extract_final_answer, sub_exact_match, token_f1
from longrl.rewards.rule import AnswerKind, answer_kind, score_answer

METRICS = ("em", "sub_em", "f1", "judge", "score")


def match_scores(record: EvalRecord, prediction: str | None) -> dict[str, float]:
    if not prediction:
        return {"em": 0.0, "sub_em": 0.0, "f1": 0.0}
    if answer_kind(record.data_source) is AnswerKind.NUMERIC:
        numeric = max(score_answer(AnswerKind.NUMERIC, prediction, answer) for answer in record.answers)
        return {"em": numeric, "sub_em": numeric, "f1": numeric}
    return {
        "em": max(exact_match(prediction, a) for a in record.answers),
        "sub_em": max(sub_exact_match(prediction, a) for a in record.answers),
        "f1": max(token_f1(prediction, a) for a in record.answers),
    }


async def _judge(
    judge: LLMJudge | None, record: EvalRecord, prediction: str | None, em: float
) -> float | None:
    if em >= 1.0:
        return 1.0
    if judge is None or not prediction:
        return 0.0 if not prediction else None
    verdicts = [await judge.judge(record.question, prediction, answer) for answer in record.answers[:3]]
    if any(v is True for v in verdicts):
        return 1.0
    return None if all(v is None for v in verdicts) else 0.0


async def score_all(
    records: list[EvalRecord], completions: list[list[str]], judge: LLMJudge | None
) -> list[dict[str, Any]]:
    """One row per (record, sample): the answer, its scores, and the judge's verdict (None: unavailable)."""
    rows: list[dict[str, Any]] = []
    pending = []
    for record, samples in zip(records, completions, strict=True):
        for index, completion in enumerate(samples):
            prediction = extract_final_answer(completion)
            scores = match_scores(record, prediction)
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
                }
            )
            pending.append(_judge(judge, record, prediction, scores["em"]))
    for row, verdict in zip(rows, await asyncio.gather(*pending), strict=True):
        row["judge"] = verdict
        row["score"] = max(row["em"], verdict or 0.0)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means per benchmark and their unweighted average across benchmarks."""
    by_benchmark: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        by_benchmark[row["benchmark"]].append(row)
    summary: dict[str, Any] = {"benchmarks": {}}
    for name, items in sorted(by_benchmark.items()):
        judged = [r["judge"] for r in items if r["judge"] is not None]
        summary["benchmarks"][name] = {
            "n": len(items),
            "em": sum(r["em"] for r in items) / len(items),
            "sub_em": sum(r["sub_em"] for r in items) / len(items),
            "f1": sum(r["f1"] for r in items) / len(items),
            "judge": sum(judged) / len(judged) if judged else None,
            "judge_unavailable": sum(r["judge"] is None for r in items),
            "score": sum(r["score"] for r in items) / len(items),
        }
    scores = [b["score"] for b in summary["benchmarks"].values()]
    summary["average"] = sum(scores) / len(scores) if scores else 0.0
    return summary
