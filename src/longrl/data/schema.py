"""Record types for long-document QA data, and how raw rows in known layouts map onto them.

Two layouts are read:

* flat rows (what ``python -m longrl.data generate`` writes): ``context``, ``question``,
  ``answer``, ``data_source``, optional ``id``; SFT rows add ``response``;
* verl rows, as DocQA-RL-1.6K is published: ``data_source``, ``prompt`` (chat messages whose
  user turn is the QwenLong-L1 template filled with the document and question),
  ``reward_model.ground_truth`` and ``extra_info.index``. The answer form the row's own prompt
  asks for is kept (``answer_form``), so that the prompt longrl renders asks for it too.

Ground truths published as answer sentences ("Therefore, the answer is 42.", "The correct answer
is (B).") are reduced to the answer (``answer``), the sentence kept in ``raw_answer``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from longrl.data.prompts import (
    answer_form_for,
    answer_form_of_user_turn,
    answer_form_problem,
    parse_user_prompt,
)
from longrl.rewards.choice import extract_option_letter
from longrl.rewards.extraction import THINK_END, published_answer
from longrl.rewards.numeric import is_non_finite
from longrl.rewards.rule import AnswerKind, answer_kind

# Other names the same fields go by in public long-document QA files.
_ALIASES = {
    "context": ("context", "document", "doc", "text"),
    "question": ("question", "query", "input"),
    "answer": ("answer", "ground_truth", "answers", "gold"),
    "data_source": ("data_source", "source", "dataset"),
    "id": ("id", "_id", "uid", "index"),
    "response": ("response", "output", "reasoning_response"),
}


def content_hash(question: str, context: str) -> str:
    """Identity of an example for de-duplication: the question and the document, nothing else."""
    digest = hashlib.sha256()
    digest.update(question.strip().encode())
    digest.update(b"\x1f")
    digest.update(context.strip().encode())
    return digest.hexdigest()


class QARecord(BaseModel):
    """One long-document question with its verifiable answer."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1)
    data_source: str = Field(min_length=1)
    context: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    answer_form: str | None = Field(
        None, description="The answer form the row's own prompt asked for (verl rows); None: its source's"
    )
    raw_answer: str | None = Field(
        None, description="The ground truth as published, when it was an answer sentence reduced to `answer`"
    )

    @model_validator(mode="before")
    @classmethod
    def _reduce_published_answer(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("answer"), str):
            reduced = published_answer(data["answer"])
            if reduced is not None and reduced != data["answer"]:
                return {**data, "answer": reduced, "raw_answer": data.get("raw_answer") or data["answer"]}
        return data

    @field_validator("answer", mode="before")
    @classmethod
    def _not_nan(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"is {value}, not an answer (a missing value written as NaN or Infinity?)")
        return value

    @field_validator("context", "question", "answer", "data_source", "id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank")
        return value

    @field_validator("answer")
    @classmethod
    def _answer_fits_its_source(cls, value: str, info: Any) -> str:
        source = info.data.get("data_source")
        if source and answer_kind(source) is AnswerKind.CHOICE and extract_option_letter(value) is None:
            raise ValueError(
                f"a multiple-choice source ({source}) needs an option letter such as 'B' or '(B)'"
            )
        if source and answer_kind(source) is AnswerKind.NUMERIC and is_non_finite(value):
            raise ValueError(f"is {value!r}: a numeric source ({source}) needs a finite number")
        return value

    @field_validator("answer_form")
    @classmethod
    def _answer_form_is_read_by_the_reward(cls, value: str | None, info: Any) -> str | None:
        source = info.data.get("data_source")
        if value is not None and source:
            problem = answer_form_problem(value, source)
            if problem:
                raise ValueError(problem)
        return value

    @property
    def content_hash(self) -> str:
        return content_hash(self.question, self.context)

    @property
    def prompt_answer_form(self) -> str:
        """The answer form this record's prompt asks for: its own, else its source's."""
        return self.answer_form or answer_form_for(self.data_source)


class SFTRecord(QARecord):
    """A QA record with the reasoning response to imitate: ``<think>...</think>`` then the answer."""

    response: str = Field(min_length=1)

    @field_validator("response")
    @classmethod
    def _closes_its_reasoning(cls, value: str) -> str:
        if THINK_END not in value:
            raise ValueError(f"has no {THINK_END}: an SFT target must close its reasoning before answering")
        return value


def _first_present(raw: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in raw and raw[name] is not None:
            return raw[name]
    return None


def _scalar_text(value: Any) -> Any:
    """Unwraps one-element lists (LongBench's ``answers``) and stringifies numbers."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, float) and not math.isfinite(value):
        return value  # NaN and infinities stay numbers, which the record refuses: they are no answer
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _from_verl(raw: dict[str, Any]) -> dict[str, Any]:
    prompt = raw["prompt"]
    if isinstance(prompt, (list, tuple)):
        users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        prompt = users[-1] if users else None
    fields: dict[str, Any] = {"data_source": raw.get("data_source")}
    parsed = parse_user_prompt(prompt) if isinstance(prompt, str) else None
    if parsed is not None:
        fields["context"], fields["question"] = parsed
        fields["answer_form"] = answer_form_of_user_turn(prompt)
    reward_model = raw.get("reward_model") or {}
    extra_info = raw.get("extra_info") or {}
    fields["answer"] = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
    if isinstance(extra_info, dict):
        fields["id"] = extra_info.get("id", extra_info.get("index"))
    return fields


def canonical_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Maps a raw row of a known layout to QARecord/SFTRecord field names (values unchecked)."""
    if "prompt" in raw and "reward_model" in raw:
        fields = _from_verl(raw)
    else:
        fields = {name: _first_present(raw, aliases) for name, aliases in _ALIASES.items()}
    fields = {name: _scalar_text(value) for name, value in fields.items() if value is not None}
    if (
        "id" not in fields
        and isinstance(fields.get("question"), str)
        and isinstance(fields.get("context"), str)
    ):
        digest = content_hash(fields["question"], fields["context"])[:16]
        fields["id"] = f"{fields.get('data_source', 'record')}-{digest}"
    return fields
