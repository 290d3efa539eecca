"""The rule half of the hybrid reward: a deterministic check of the final answer.

Routing follows DocQA-RL-1.6K's ``data_source`` names: "docmath" sources are numeric, the
"long_toc_choices" source is multiple choice, everything else ("multihoprag", "musique", ...) is
free text scored by sub-exact match after SQuAD normalisation. Ground truths may be bare answers
or, as the dataset publishes them, answer sentences ("Therefore, the answer is 42."); both are
reduced to the answer before comparison.

No input makes ``check_response`` or ``rule_reward`` raise: one model output must never stop an
RL step or an evaluation. An internal error scores 0 and is reported in ``RuleOutcome.error``.

NaN and infinities are not numeric answers: a prediction stating one is no answer (scored 0, never
sent to the judge), and a reference stating one matches nothing (it is a missing value written out).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging

from longrl.rewards.choice import extract_option_letter
from longrl.rewards.extraction import extract_final_answer, reference_answer
from longrl.rewards.numeric import is_non_finite, numeric_match, parse_numeric_answer
from longrl.rewards.text import sub_exact_match

logger = logging.getLogger(__name__)

_errors_logged: collections.Counter[str] = collections.Counter()


class AnswerKind(enum.StrEnum):
    NUMERIC = "numeric"
    CHOICE = "choice"
    TEXT = "text"


def answer_kind(data_source: str) -> AnswerKind:
    source = data_source.lower()
    if "docmath" in source:
        return AnswerKind.NUMERIC
    if "long_toc_choices" in source:
        return AnswerKind.CHOICE
    return AnswerKind.TEXT


def score_answer(kind: AnswerKind, prediction: str, ground_truth: str) -> float:
    """1.0 when an extracted answer matches the reference under the rules of its kind, else 0.0."""
    ground_truth = reference_answer(ground_truth)
    if kind is AnswerKind.CHOICE:
        predicted, expected = extract_option_letter(prediction), extract_option_letter(ground_truth)
        if expected is not None:
            return float(predicted == expected)
    elif kind is AnswerKind.NUMERIC:
        if is_non_finite(ground_truth) or is_non_finite(prediction):
            return 0.0
        expected_number = parse_numeric_answer(ground_truth)
        if expected_number is not None:
            predicted_number = parse_numeric_answer(prediction)
            return float(predicted_number is not None and numeric_match(predicted_number, expected_number))
    # Free text, or a reference that is not of its source's kind: compare as text.
    return sub_exact_match(prediction, ground_truth)


def judge_can_help(kind: AnswerKind, ground_truth: str) -> bool:
    """Whether asking the LLM judge makes sense: not for an option letter, which the rule decides
    alone (the official recipe never judges multiple-choice answers)."""
    reference = reference_answer(ground_truth)
    if kind is AnswerKind.NUMERIC and is_non_finite(reference):
        return False
    return not (kind is AnswerKind.CHOICE and extract_option_letter(reference))


def final_answer(kind: AnswerKind, response: str) -> str | None:
    """The answer to score in a whole model output; None when there is none, or when a numeric
    answer is NaN or an infinity."""
    prediction = extract_final_answer(response, choice=kind is AnswerKind.CHOICE)
    if prediction is not None and kind is AnswerKind.NUMERIC and is_non_finite(prediction):
        return None
    return prediction


@dataclasses.dataclass(frozen=True)
class RuleOutcome:
    """The rule check of one response: the extracted answer, its score, and the error that zeroed it."""

    prediction: str | None
    score: float
    error: str | None = None


def check_response(data_source: str, response: str, ground_truth: str) -> RuleOutcome:
    """Extracts the answer from a whole model output and scores it; never raises."""
    try:
        kind = answer_kind(data_source)
        prediction = final_answer(kind, response)
        if prediction is None:
            return RuleOutcome(prediction=None, score=0.0)
        return RuleOutcome(prediction=prediction, score=score_answer(kind, prediction, ground_truth))
    except Exception as exc:  # noqa: BLE001 - a scoring bug must cost one sample, not the run
        return RuleOutcome(prediction=None, score=0.0, error=log_scoring_error(exc, data_source))


def log_scoring_error(exc: BaseException, data_source: object) -> str:
    """Logs a scoring error (the 1st, 2nd, 4th, 8th ... of its kind) and returns its one-line summary."""
    kind = type(exc).__name__
    _errors_logged[kind] += 1
    count = _errors_logged[kind]
    summary = f"{kind}: {str(exc)[:200]}"
    if count & (count - 1) == 0:
        logger.warning(
            "scoring a response of %r failed (%s, %d so far); it scores 0", data_source, summary, count
        )
    return summary


def rule_reward(data_source: str, response: str, ground_truth: str) -> float:
    """Scores a whole model output (reasoning included) against the reference answer: 1.0 or 0.0."""
    return check_response(data_source, response, ground_truth).score
