"""Pulls the final answer out of a reasoning model's whole output, and out of a published ground truth.

The recipe's convention: the answer section is what follows the last ``</think>``; within it,
the answer is what follows the last "the answer is" (the prompt asks the model to finish with
"Therefore, the answer is ..."). Multiple-choice prompts ask for "The correct answer is (X)"
instead, so for them "the correct answer is" is read as well. Markdown emphasis, end-of-turn
tokens and a trailing period are dropped. Nothing here evaluates model text; it is only sliced.

DocQA-RL-1.6K publishes its ground truths in the same answer form ("Therefore, the answer is
12.5.", "The correct answer is (B)."): ``reference_answer`` reduces such a sentence to its answer
and leaves a bare answer as it is.
"""

from __future__ import annotations

import re

from longrl.rewards.choice import extract_option_letter

THINK_END = "</think>"
_ANSWER_MARKER = re.compile(r"the answer is", re.IGNORECASE)
_CHOICE_MARKER = re.compile(r"the (?:correct )?answer is", re.IGNORECASE)
# End-of-turn tokens of the chat templates we meet (ChatML/Qwen, Llama 3, DeepSeek-R1, generic).
END_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<｜end▁of▁sentence｜>",
    "<｜Assistant｜>",
    "</s>",
)
_BOXED = re.compile(r"^\\boxed\{(.*)\}$", re.DOTALL)


def answer_marker(choice: bool) -> re.Pattern[str]:
    """The phrase an answer follows: "the answer is", or for multiple choice also "the correct answer is"."""
    return _CHOICE_MARKER if choice else _ANSWER_MARKER


def answer_section(response: str) -> str | None:
    """Text after the last ``</think>``, or None when the model never closed its reasoning."""
    head, sep, tail = response.rpartition(THINK_END)
    if not sep:
        return None
    return tail


def clean_answer(text: str) -> str:
    """Strips markdown emphasis, end tokens, surrounding space, a leading colon and trailing periods."""
    text = text.replace("*", "")
    for token in END_TOKENS:
        text = text.replace(token, "")
    text = text.strip().lstrip(":").strip().rstrip(".").strip()
    boxed = _BOXED.match(text.strip("$").strip())
    if boxed:
        text = boxed.group(1).strip().rstrip(".").strip()
    return text


def answer_from_section(section: str, choice: bool = False) -> str | None:
    """What follows the last answer marker in an answer section, cleaned; None if absent or empty.

    For multiple choice, the last marker followed by an option letter wins ("The correct answer is
    (B), since the answer is stated in Section 7" answers B), else the last marker.
    """
    section = section.replace("*", "")
    matches = list(answer_marker(choice).finditer(section))
    if not matches:
        return None
    if choice:  # each marker's own stretch of text, up to the next marker, is searched once
        bounds = [*(m.start() for m in matches[1:]), len(section)]
        for match, stop in zip(reversed(matches), reversed(bounds), strict=True):
            if extract_option_letter(clean_answer(section[match.end() : stop])) is not None:
                return clean_answer(section[match.end() :])
    return clean_answer(section[matches[-1].end() :]) or None


def extract_final_answer(response: str, *, choice: bool = False) -> str | None:
    """The model's final answer from its whole output, or None when it gave none in the expected form.

    ``choice``: the response answers a multiple-choice question, whose prompt asks for
    "The correct answer is (X)"; "the answer is (X)" is accepted too.
    """
    section = answer_section(response)
    if section is None:
        return None
    return answer_from_section(section, choice)


def published_answer(ground_truth: str) -> str | None:
    """The answer of a ground truth published as an answer sentence ("Therefore, the answer is 42.",
    "The correct answer is (B)."); None when it is a bare answer or states nothing after the marker."""
    return answer_from_section(ground_truth, choice=True)


def reference_answer(ground_truth: str) -> str:
    """The answer a ground truth states, whether published as an answer sentence or bare."""
    return published_answer(ground_truth) or ground_truth
