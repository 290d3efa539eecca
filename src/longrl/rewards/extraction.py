"""Pulls the final answer out of a reasoning model's whole output.

The recipe's convention: the answer section is what follows the last ``</think>``; within it,
the answer is what follows the last "the answer is" (the prompt asks the model to finish with
"Therefore, the answer is ..."). Markdown emphasis, end-of-turn tokens and a trailing period are
dropped. Nothing here evaluates model text; it is only sliced.
"""

from __future__ import annotations

import re

THINK_END = "</think>"
_ANSWER_MARKER = re.compile(r"the answer is", re.IGNORECASE)
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


def answer_from_section(section: str) -> str | None:
    """What follows the last "the answer is" in an answer section, cleaned; None if absent or empty."""
    section = section.replace("*", "")
    matches = list(_ANSWER_MARKER.finditer(section))
    if not matches:
        return None
    return clean_answer(section[matches[-1].end() :]) or None


def extract_final_answer(response: str) -> str | None:
    """The model's final answer from its whole output, or None when it gave none in the expected form."""
    section = answer_section(response)
    if section is None:
        return None
    return answer_from_section(section)
