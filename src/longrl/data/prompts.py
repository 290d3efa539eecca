"""The QwenLong-L1 prompt, filled in and wrapped in the model's chat template."""

from __future__ import annotations

from typing import Any

QWENLONG_TEMPLATE = (
    "Please read the following text and answer the question below.\n\n"
    "<text>\n$DOC$\n</text>\n\n"
    "$Q$\n\n"
    'Format your response as follows: "Therefore, the answer is (insert answer here)".'
)
_DOC_OPEN, _DOC_CLOSE = "<text>\n", "\n</text>\n\n"
_FORMAT_LINE = "\n\nFormat your response as follows:"


def user_prompt(context: str, question: str) -> str:
    """The user turn: the template with the document and the question in place."""
    return QWENLONG_TEMPLATE.replace("$DOC$", context.strip()).replace("$Q$", question.strip())


def parse_user_prompt(prompt: str) -> tuple[str, str] | None:
    """(document, question) back out of a filled-in template, or None if it is not one."""
    _, opened, rest = prompt.partition(_DOC_OPEN)
    if not opened:
        return None
    document, closed, rest = rest.rpartition(_DOC_CLOSE)
    if not closed:
        return None
    question, formatted, _ = rest.partition(_FORMAT_LINE)
    if not formatted:
        return None
    return document, question.strip()


def chat_messages(context: str, question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user_prompt(context, question)}]


def chat_prompt(tokenizer: Any, context: str, question: str) -> str:
    """The whole prompt as the model sees it, ending where its answer starts."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; "
            "long-document prompts are built with the model's own chat template"
        )
    return tokenizer.apply_chat_template(
        chat_messages(context, question), tokenize=False, add_generation_prompt=True
    )
