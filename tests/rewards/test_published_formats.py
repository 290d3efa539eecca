"""The reward on responses and ground truths in the forms DocQA-RL-1.6K and its prompts use.

Ground truths are published as answer sentences ("Therefore, the answer is X." for QA and math,
"The correct answer is (B)." for ``long_toc_choices``); bare answers are accepted too. The
responses are written the way R1-style reasoning models answer these prompts.
"""

import pytest

from longrl.rewards import rule_reward
from longrl.rewards.extraction import extract_final_answer, published_answer, reference_answer

CHOICE = "long_toc_choices_0_20000"


def reply(reasoning: str, closing: str) -> str:
    return f"<think>\n{reasoning}\n</think>\n\n{closing}<|im_end|>"


@pytest.mark.parametrize(
    ("ground_truth", "answer"),
    [
        ("Therefore, the answer is 12.5.", "12.5"),
        ("Therefore, the answer is Yes.", "Yes"),
        ("Therefore, the answer is no", "no"),
        ("Therefore, the answer is **Tallinn**.", "Tallinn"),
        ("The correct answer is (B).", "(B)"),
        ("The correct answer is C", "C"),
        ("Therefore, the answer is $1,234.5 million.", "$1,234.5 million"),
    ],
)
def test_published_ground_truths_reduce_to_their_answer(ground_truth: str, answer: str) -> None:
    assert published_answer(ground_truth) == answer
    assert reference_answer(ground_truth) == answer


@pytest.mark.parametrize("bare", ["Tallinn", "12.5", "(B)", "yes", "Therefore", "the answer is"])
def test_bare_ground_truths_stay_as_they_are(bare: str) -> None:
    assert published_answer(bare) is None
    assert reference_answer(bare) == bare


MATH_REASONING = (
    "Revenue in 2022 was $1,200 million and in 2023 $1,350 million (Table 3).\n"
    "Growth = (1350 - 1200) / 1200 = 0.125, i.e. 12.5%."
)


@pytest.mark.parametrize(
    ("closing", "truth", "score"),
    [
        ("Therefore, the answer is 12.5.", "Therefore, the answer is 12.5.", 1.0),
        ("Therefore, the answer is 12.5%.", "Therefore, the answer is 12.5.", 1.0),
        ("Therefore, the answer is **12.50%**.", "12.5", 1.0),
        ("Therefore, the answer is 0.125.", "Therefore, the answer is 12.5.", 1.0),
        ("Therefore, the answer is 13.", "Therefore, the answer is 12.5.", 0.0),
        ("Therefore, the answer is True.", "Therefore, the answer is True.", 1.0),
        ("Therefore, the answer is No.", "Therefore, the answer is True.", 0.0),
    ],
)
def test_docmath(closing: str, truth: str, score: float) -> None:
    assert rule_reward("docmath_v1", reply(MATH_REASONING, closing), truth) == score


QA_REASONING = (
    "The film was directed by Ilmar Raag. Paragraph 4 says Raag was born in Kuressaare and "
    "moved to Tallinn as a child; the question asks where he grew up."
)


@pytest.mark.parametrize(
    ("closing", "truth", "score"),
    [
        ("Therefore, the answer is Tallinn.", "Therefore, the answer is Tallinn.", 1.0),
        ("Therefore, the answer is Tallinn, Estonia.", "Therefore, the answer is Tallinn.", 1.0),
        ("Therefore, the answer is Tallinn.", "Tallinn", 1.0),
        ("Therefore, the answer is Kuressaare.", "Therefore, the answer is Tallinn.", 0.0),
        # Short answers: against the unreduced sentence these matched any reference.
        ("Therefore, the answer is therefore.", "Therefore, the answer is Tallinn.", 0.0),
        ("Therefore, the answer is answer.", "Therefore, the answer is Tallinn.", 0.0),
        ("Therefore, the answer is yes.", "Therefore, the answer is yes.", 1.0),
        ("Therefore, the answer is no.", "Therefore, the answer is yes.", 0.0),
        # A QA prompt asks for "the answer is"; the multiple-choice form is not read for it.
        ("The correct answer is Tallinn.", "Therefore, the answer is Tallinn.", 0.0),
    ],
)
def test_multihop_qa(closing: str, truth: str, score: float) -> None:
    assert rule_reward("musique_v1", reply(QA_REASONING, closing), truth) == score


CHOICE_REASONING = (
    "The table of contents lists 'Section 7: Data Retention' on page 41; option (B) is the "
    "only one naming that section."
)


@pytest.mark.parametrize(
    ("closing", "truth", "score"),
    [
        ("The correct answer is (B).", "The correct answer is (B).", 1.0),
        ("The correct answer is B", "The correct answer is (B).", 1.0),
        ("The correct answer is **(B)**.", "The correct answer is (B).", 1.0),
        ("the correct answer is (b)", "The correct answer is (B).", 1.0),
        ("Therefore, the answer is (B).", "The correct answer is (B).", 1.0),
        ("Therefore, the correct answer is (B) Data Retention.", "B", 1.0),
        ("The correct answer is (B). This is because the answer is stated in Section 7.", "B", 1.0),
        ("The correct answer is B, not (C).", "The correct answer is (B).", 1.0),
        ("The correct answer is (A).", "The correct answer is (B).", 0.0),
        (
            "The correct answer is Definitely (C).",
            "The correct answer is (D).",
            0.0,
        ),  # "D"efinitely is no option
        ("Data Retention", "The correct answer is (B).", 0.0),  # no answer sentence at all
    ],
)
def test_multiple_choice(closing: str, truth: str, score: float) -> None:
    assert rule_reward(CHOICE, reply(CHOICE_REASONING, closing), truth) == score


def test_choice_extraction_reads_the_correct_answer_form() -> None:
    response = reply(CHOICE_REASONING, "The correct answer is (B).")
    assert extract_final_answer(response, choice=True) == "(B)"
    assert extract_final_answer(response) is None  # QA sources read only "the answer is"
