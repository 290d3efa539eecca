import pytest

from longrl.rewards.extraction import answer_section, clean_answer, extract_final_answer


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("<think>reasoning</think>\n\nTherefore, the answer is 42.", "42"),
        ("<think>x</think>Therefore, the answer is **Paris**.<|im_end|>", "Paris"),
        ("<think>x</think>the answer is Paris.<｜end▁of▁sentence｜>", "Paris"),
        ("<think>x</think>The answer is: 7", "7"),
        ("<think>x</think>THE ANSWER IS yes", "yes"),
        ("<think>x</think>Therefore, the answer is $\\boxed{12}$.", "12"),
        # the last marker wins, in the section after the last </think>
        ("<think>the answer is 1</think>I think the answer is 2. Therefore, the answer is 3.", "3"),
        ("<think>a</think> wait <think>b</think> Therefore, the answer is 5", "5"),
        ("<think>a</think>Therefore, the answer is 3.14.", "3.14"),
        ("<think>a</think>Therefore, the answer is ...", None),
    ],
)
def test_extract_final_answer(response: str, expected: str | None) -> None:
    assert extract_final_answer(response) == expected


@pytest.mark.parametrize(
    "response",
    [
        "Therefore, the answer is 42.",  # never closed its reasoning
        "<think>Therefore, the answer is 42.",
        "<think>x</think>",  # nothing after reasoning
        "<think>x</think>42",  # no "the answer is"
        "",
    ],
)
def test_no_answer_is_none(response: str) -> None:
    assert extract_final_answer(response) is None


def test_answer_section_is_after_last_think_end() -> None:
    assert answer_section("a</think>b</think>c") == "c"
    assert answer_section("no tags") is None


def test_clean_answer_strips_only_the_wrapping() -> None:
    assert clean_answer("  **U.S.A.**.<|endoftext|> ") == "U.S.A"
    assert clean_answer(": 1,000") == "1,000"
