"""A phase's rows in verl's dataset layout, the one DocQA-RL-1.6K is published in.

verl's ``RLHFDataset`` reads ``prompt`` as chat messages and its rollout applies the model's chat
template itself, while longrl's prepared parquet stores each prompt already rendered with that
template (what the trl engine trains on). The user turn is cut back out of the rendered prompt
and rendered again with the tokenizer: a row whose re-rendered prompt is not exactly the prepared
one is an error, so both engines train on the same prompt text.

Columns: ``data_source``, ``prompt`` (messages), ``ability``, ``reward_model`` (``style``,
``ground_truth``: the prepared ``answer``), ``extra_info`` (longrl's ``id``, the row ``index``,
the ``question`` for the judge, ``split``, ``phase``, ``retrospective``, ``prompt_tokens``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longrl.curriculum import read_rows, write_rows
from longrl.train.engines.verl_config import PhaseData, PhaseLayout

ABILITY = "long_context_qa"
TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"


_PROBE = "\x00longrl-user-turn\x00"


def chat_messages_of(row: dict[str, Any], tokenizer: Any) -> list[dict[str, str]]:
    """The messages whose rendering with ``tokenizer``'s chat template is exactly ``row['prompt']``.

    The chat template is rendered around a probe to learn what it puts before and after a user
    turn; what the prompt has between those is its user turn.
    """
    around = tokenizer.apply_chat_template(
        [{"role": "user", "content": _PROBE}], tokenize=False, add_generation_prompt=True
    )
    before, _, after = around.partition(_PROBE)
    prompt = row["prompt"]
    if prompt.startswith(before) and prompt.endswith(after) and len(prompt) >= len(before) + len(after):
        messages = [{"role": "user", "content": prompt[len(before) : len(prompt) - len(after)]}]
        if tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == prompt:
            return messages
    raise ValueError(
        f"example {row['id']}: its prompt is not one user turn rendered with this model's chat template "
        f"({getattr(tokenizer, 'name_or_path', '')}); prepare the data again with the model's tokenizer"
    )


def verl_row(row: dict[str, Any], index: int, split: str, tokenizer: Any) -> dict[str, Any]:
    return {
        "data_source": row["data_source"],
        "prompt": chat_messages_of(row, tokenizer),
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": row["answer"]},
        "extra_info": {
            "id": row["id"],
            "index": index,
            "question": row["question"],
            "split": split,
            "phase": int(row.get("phase") or 0),
            "retrospective": bool(row.get("retrospective", False)),
            "prompt_tokens": int(row["prompt_tokens"]),
        },
    }


def write_verl_rows(rows: Sequence[dict[str, Any]], path: Path, split: str, tokenizer: Any) -> Path:
    return write_rows([verl_row(row, i, split, tokenizer) for i, row in enumerate(rows)], path)


def write_phase_data(
    rows: Sequence[dict[str, Any]],
    validation_rows: Sequence[dict[str, Any]],
    layout: PhaseLayout,
    tokenizer: Any,
) -> PhaseData:
    """The phase's training rows (own band + retrospective draws) and validation rows as verl parquet."""
    write_verl_rows(rows, layout.train_file, TRAIN_SPLIT, tokenizer)
    if validation_rows:
        write_verl_rows(validation_rows, layout.validation_file, VALIDATION_SPLIT, tokenizer)
    return PhaseData(
        train_rows=len(rows),
        longest_prompt_tokens=max(int(row["prompt_tokens"]) for row in rows),
        validation_rows=len(validation_rows),
    )


def validation_rows_within(config: Any, prompt_limit: int) -> list[dict[str, Any]]:
    """The first ``validation_max_examples`` validation rows whose prompt fits the phase's prompt length.

    verl validates with the rollout engine, whose prompts are at most ``data.max_prompt_length``
    (the phase's longest prompt); the validation set is drawn from every phase.
    """
    if not config.validation_file or config.validation_max_examples == 0:
        return []
    rows = [row for row in read_rows(config.validation_file) if int(row["prompt_tokens"]) <= prompt_limit]
    return rows[: config.validation_max_examples]
