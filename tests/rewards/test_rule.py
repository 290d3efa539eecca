"""The rule reward on hand-written cases per route, adversarial strings included."""

import pytest

from longrl.rewards import AnswerKind, answer_kind, rule_reward
from longrl.rewards.choice import extract_option_letter
from longrl.rewards.numeric import numeric_match, parse_numeric_answer


def said(answer: str) -> str:
    return f"<think>Let me look at the document.</think>\n\nTherefore, the answer is {answer}"


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("docmath_v1", AnswerKind.NUMERIC),
        ("DocMath-CompLong", AnswerKind.NUMERIC),
        ("long_toc_choices_0_20000", AnswerKind.CHOICE),
        ("multihoprag_v1", AnswerKind.TEXT),
        ("musique_v1", AnswerKind.TEXT),
        ("anything_else", AnswerKind.TEXT),
    ],
)
def test_routing_by_data_source(source: str, kind: AnswerKind) -> None:
    assert answer_kind(source) is kind


# ----- numeric (DocMath) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "truth"),
    [
        ("42", "42"),
        ("42.", "42.0"),
        ("1,234,567", "1234567"),
        ("$1,234.5 million", "1234.5"),
        ("USD 5.2 billion", "5.2"),
        ("1.5 billion", "1500"),  # unit slip: answered in billions, reference in millions
        ("12.5%", "12.5"),
        ("12.5%", "0.125"),  # percentage vs. fraction
        ("0.125", "12.5"),
        ("approximately 3.14159", "3.1416"),
        ("≈ 7.0", "7"),
        ("x = 15", "15"),
        ("-3.5", "-3.5"),
        ("−3.5", "-3.5"),  # unicode minus
        ("1.2e3", "1200"),
        ("1.2 × 10^3", "1200"),
        ("2.5 x 10^-2", "0.025"),
        ("10^6", "1000000"),
        ("3/4", "0.75"),
        ("0.046", "0.0456"),  # rounded to three decimals
        ("100.1", "100.2"),  # within 0.15 %
        ("`56`", "56"),
        ("56 dollars", "56"),
        ("revenue grew by 8.2 %", "8.2"),
        ("Yes", "True"),
        ("no", "False"),
        ("True", "true"),
        ("(b)", "(b)"),
    ],
)
def test_numeric_matches(answer: str, truth: str) -> None:
    assert rule_reward("docmath_v1", said(answer), truth) == 1.0


@pytest.mark.parametrize(
    ("answer", "truth"),
    [
        ("43", "42"),
        ("100.5", "100.2"),  # 0.3 % off
        ("-42", "42"),
        ("4.2", "42"),  # a factor of ten is not a unit slip
        ("Yes", "False"),
        ("1", "True"),  # a number is not a boolean
        ("between 10 and 12", "11"),  # two numbers: ambiguous
        ("unknown", "5"),
        ("(a)", "(b)"),
        ("inf", "5"),
        ("1/0", "5"),
        ("1e999", "5"),  # overflows to inf
        ("nan", "5"),
    ],
)
def test_numeric_mismatches(answer: str, truth: str) -> None:
    assert rule_reward("docmath_v1", said(answer), truth) == 0.0


@pytest.mark.parametrize(
    "answer",
    [
        '__import__("os").system("touch /tmp/longrl_pwned")',
        "exec('import os')",
        "eval('6*7')",
        "6*7",
        "[42 for _ in ()]",
        "(lambda: 42)()",
        "open('/etc/passwd').read()",
        "{{7*7}}",
        "42'); DROP TABLE runs; --",
    ],
)
def test_code_in_the_answer_is_text_not_code(answer: str, tmp_path) -> None:
    # 6*7 is 42 only if evaluated; the scorer must only ever parse.
    assert rule_reward("docmath_v1", said(answer), "42") in (0.0, 1.0)
    assert rule_reward("docmath_v1", said("6*7"), "42") == 0.0
    assert rule_reward("docmath_v1", said("eval('6*7')"), "42") == 0.0


def test_code_in_the_answer_is_never_run(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    for source in ("docmath_v1", "musique", "long_toc_choices_0_20000"):
        rule_reward(source, said(payload), "42")
        rule_reward(source, said("1"), payload)  # hostile reference too
    assert not marker.exists()


def test_parse_numeric_answer_kinds() -> None:
    assert parse_numeric_answer("$1,000") == 1000.0
    assert parse_numeric_answer("Yes, it did") is True
    assert parse_numeric_answer("(c)") == "c"
    assert parse_numeric_answer("unknown") is None
    assert parse_numeric_answer("No, it fell") is False
    assert parse_numeric_answer("") is None


def test_numeric_match_types_do_not_mix() -> None:
    assert not numeric_match(True, 1.0)
    assert not numeric_match("a", 1.0)
    assert numeric_match(0.0, 0.0)
    assert numeric_match(0.0004, 0.0)  # within the absolute tolerance
    assert not numeric_match(0.01, 0.0)


def test_unparseable_numeric_reference_falls_back_to_text() -> None:
    assert rule_reward("docmath_v1", said("the Q3 report"), "Q3 report") == 1.0


# ----- multiple choice ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "truth", "score"),
    [
        ("(B)", "B", 1.0),
        ("B", "(B)", 1.0),
        ("B. Risk disclosures", "B", 1.0),
        ("(b)", "B", 1.0),
        ("option C", "C", 1.0),
        ("[D]", "D", 1.0),
        ("(A) Revenue", "The correct answer is (A)", 1.0),
        ("(A)", "B", 0.0),
        ("A", "B", 0.0),
        ("Revenue", "B", 0.0),
        ("", "B", 0.0),
    ],
)
def test_choice(answer: str, truth: str, score: float) -> None:
    assert rule_reward("long_toc_choices_0_20000", said(answer), truth) == score


def test_option_letter_extraction() -> None:
    assert extract_option_letter("The correct answer is (C)") == "C"
    assert extract_option_letter("A lot of text") is None  # "A" starting a sentence is not an option
    assert extract_option_letter("no option") is None


# ----- free text (multi-hop QA) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "truth", "score"),
    [
        ("Tallinn", "Tallinn", 1.0),
        ("tallinn.", "Tallinn", 1.0),
        ("The city of Tallinn, Estonia", "Tallinn", 1.0),  # reference inside the answer
        ("Tallinn", "Tallinn, Estonia", 1.0),  # answer inside the reference
        ("the Beatles", "Beatles", 1.0),
        ("  Marie   Curie ", "marie curie", 1.0),
        ("Riga", "Tallinn", 0.0),
        ("", "Tallinn", 0.0),
        (".", "Tallinn", 0.0),  # normalises to nothing: must not match everything
        ("the", "Tallinn", 0.0),
    ],
)
def test_text(answer: str, truth: str, score: float) -> None:
    assert rule_reward("musique_v1", said(answer), truth) == score


def test_no_closed_reasoning_scores_zero_whatever_it_says() -> None:
    for source in ("docmath_v1", "long_toc_choices_0_20000", "musique_v1"):
        assert rule_reward(source, "Therefore, the answer is 42", "42") == 0.0
        assert rule_reward(source, "<think>…</think> 42", "42") == 0.0


def test_adversarial_lengths_and_characters() -> None:
    huge = "9" * 100_000
    assert rule_reward("docmath_v1", said(huge), "42") == 0.0
    assert rule_reward("musique_v1", said("\x00\u202e\ufeff"), "Tallinn") == 0.0
    assert rule_reward("musique_v1", said("Tallinn" + "</think>" * 3), "Tallinn") == 0.0
    assert rule_reward("docmath_v1", "<think>" * 10_000 + "</think>the answer is 42", "42") == 1.0


def test_words_that_look_like_letters_are_not_options() -> None:
    assert extract_option_letter("the answer a reader expects") is None
    assert extract_option_letter("option C") == "C"
