"""The rule half of the hybrid reward: a deterministic check of the final answer.

Routing follows DocQA-RL-1.6K's ``data_source`` names: "docmath" sources are numeric, the
"long_toc_choices" source is multiple choice, everything else ("multihoprag", "musique", ...) is
free text scored by sub-exact match after SQuAD normalisation.
"""

from __future__ import annotations

import enum

from longrl.rewards.choice import extract_option_letter
from longrl.rewards.extraction import extract_final_answer
from longrl.rewards.numeric import numeric_match, parse_numeric_answer
from longrl.rewards.text import sub_exact_match


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
    if kind is AnswerKind.CHOICE:
        predicted, expected = extract_option_letter(prediction), extract_option_letter(ground_truth)
        if expected is not None:
            return float(predicted == expected)
    elif kind is AnswerKind.NUMERIC:
        expected_number = parse_numeric_answer(ground_truth)
        if expected_number is not None:
            predicted_number = parse_numeric_answer(prediction)
            return float(predicted_number is not None and numeric_match(predicted_number, expected_number))
    # Free text, or a reference that is not of its source's kind: compare as text.
    return sub_exact_match(prediction, ground_truth)


def rule_reward(data_source: str, response: str, ground_truth: str) -> float:
    """Scores a whole model output (reasoning included) against the reference answer: 1.0 or 0.0."""
    prediction = extract_final_answer(response)
    if prediction is None:
        return 0.0
    return score_answer(answer_kind(data_source), prediction, ground_truth)
