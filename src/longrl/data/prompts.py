"""The QwenLong-L1 prompt, filled in and wrapped in the model's chat template.

The user turn is the recipe's template: an instruction, the document between ``<text>`` tags,
the question, and a closing line that names the answer form, ``Format your response as follows:
"<form>".``. The form is the one the row's reward reads: "Therefore, the answer is (insert answer
here)" for QA and math sources, "The correct answer is (insert answer here)" for multiple-choice
sources (as in DocQA-RL-1.6K's ``long_toc_choices`` rows). Rows ingested from the verl layout
keep the form their own prompt asked for.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from longrl.rewards.extraction import answer_marker
from longrl.rewards.rule import AnswerKind, answer_kind

ANSWER_FORM = "Therefore, the answer is (insert answer here)"
CHOICE_ANSWER_FORM = "The correct answer is (insert answer here)"
_INTRO = "Please read the following text and answer the question below.\n\n"
_DOC_OPEN, _DOC_CLOSE = "<text>\n", "\n</text>\n\n"
_FORMAT_LINE = "\n\nFormat your response as follows:"
# The closing line's quoted form; nothing but the full stop follows it in the template.
_QUOTED_FORM = re.compile(r' "(?P<form>[^"\n]+)"\.')

QWENLONG_TEMPLATE = f'{_INTRO}{_DOC_OPEN}$DOC${_DOC_CLOSE}$Q${_FORMAT_LINE} "{ANSWER_FORM}".'


@dataclasses.dataclass(frozen=True)
class PromptParts:
    """A filled-in template taken apart; ``rest`` is what followed it (a chat template's tail)."""

    document: str
    question: str
    answer_form: str
    rest: str = ""


def answer_form_for(data_source: str) -> str:
    """The answer form a prompt of this source asks for: the one its reward reads."""
    return CHOICE_ANSWER_FORM if answer_kind(data_source) is AnswerKind.CHOICE else ANSWER_FORM


def answer_form_problem(answer_form: str, data_source: str) -> str | None:
    """Why a prompt asking for ``answer_form`` cannot train a row of ``data_source``; None if it can."""
    shape_ok = answer_form.strip() == answer_form and answer_form and not re.search(r'["\n]', answer_form)
    if not shape_ok or answer_form.startswith(_FORMAT_LINE.strip()):
        return (
            "the prompt must end with the line 'Format your response as follows: \"<form>\".' (a one-line "
            f"form, nothing after it) for longrl to reproduce it; it ends with {answer_form[:160]!r}"
        )
    choice = answer_kind(data_source) is AnswerKind.CHOICE
    if not answer_marker(choice).search(answer_form):
        expected = '"the answer is" or "the correct answer is"' if choice else '"the answer is"'
        return (
            f"the prompt asks for answers as {answer_form!r}, which the reward for {data_source} does "
            f"not read (it reads what follows {expected})"
        )
    return None


def user_prompt(context: str, question: str, answer_form: str = ANSWER_FORM) -> str:
    """The user turn: the template with the document, the question and the answer form in place."""
    return (
        f'{_INTRO}{_DOC_OPEN}{context.strip()}{_DOC_CLOSE}{question.strip()}{_FORMAT_LINE} "{answer_form}".'
    )


def _split(prompt: str) -> tuple[str, str, str] | None:
    _, opened, rest = prompt.partition(_DOC_OPEN)
    if not opened:
        return None
    document, closed, rest = rest.rpartition(_DOC_CLOSE)
    if not closed:
        return None
    question, formatted, tail = rest.partition(_FORMAT_LINE)
    if not formatted:
        return None
    return document, question.strip(), tail


def parse_prompt(prompt: str) -> PromptParts | None:
    """Document, question and answer form back out of a filled-in template (a bare user turn or a
    whole chat-rendered prompt), or None if it is not one."""
    split = _split(prompt)
    if split is None:
        return None
    document, question, tail = split
    quoted = _QUOTED_FORM.match(tail)
    if quoted is None:
        return None
    return PromptParts(document, question, quoted["form"], tail[quoted.end() :])


def answer_form_of_user_turn(user_turn: str) -> str | None:
    """The answer form a bare user turn asks for; its closing line as written when that is not
    exactly ``Format your response as follows: "<form>".`` (``answer_form_problem`` refuses it);
    None when the turn is not the template at all."""
    split = _split(user_turn)
    if split is None:
        return None
    tail = split[2]
    quoted = _QUOTED_FORM.match(tail)
    if quoted is not None and not tail[quoted.end() :].strip():
        return quoted["form"]
    return (_FORMAT_LINE.strip() + tail).strip()


def parse_user_prompt(prompt: str) -> tuple[str, str] | None:
    """(document, question) back out of a filled-in template, or None if it is not one."""
    split = _split(prompt)
    return None if split is None else split[:2]


def chat_messages(context: str, question: str, answer_form: str = ANSWER_FORM) -> list[dict[str, str]]:
    return [{"role": "user", "content": user_prompt(context, question, answer_form)}]


def chat_prompt(tokenizer: Any, context: str, question: str, answer_form: str = ANSWER_FORM) -> str:
    """The whole prompt as the model sees it, ending where its answer starts."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; "
            "long-document prompts are built with the model's own chat template"
        )
    return tokenizer.apply_chat_template(
        chat_messages(context, question, answer_form), tokenize=False, add_generation_prompt=True
    )
