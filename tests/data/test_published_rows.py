"""Rows as DocQA-RL-1.6K publishes them: answer-sentence ground truths and per-source answer forms.

The verl rows here are written out literally, as the published parquet holds them, so that the
prompt longrl renders is compared with the row's own text, not with longrl's template.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longrl.data import QARecord, RowError, canonical_fields, prepare, read_rows
from longrl.data.prepare import PrepareConfig
from longrl.data.prompts import (
    ANSWER_FORM,
    CHOICE_ANSWER_FORM,
    PromptParts,
    answer_form_for,
    parse_prompt,
    user_prompt,
)
from longrl.rewards import rule_reward

HANDBOOK = (
    "Northwind Staff Handbook\n\nSection 2: Working Hours\nCore hours are 10:00 to 16:00.\n\n"
    "Section 7: Data Retention\nCustomer records are kept for six years after the last contract."
)
CHOICE_QUESTION = (
    "What is the correct answer to this question: Which section says how long customer records are kept?\n"
    "Choices:\n(A) Section 2\n(B) Section 7\n(C) Section 9\n(D) Appendix A"
)
CHOICE_TURN = (
    "Please read the following text and answer the question below.\n\n<text>\n"
    + HANDBOOK
    + "\n</text>\n\n"
    + CHOICE_QUESTION
    + '\n\nFormat your response as follows: "The correct answer is (insert answer here)".'
)
QA_TURN = (
    "Please read the following text and answer the question below.\n\n<text>\n" + HANDBOOK + "\n</text>\n\n"
    "Are customer records kept for more than five years?"
    '\n\nFormat your response as follows: "Therefore, the answer is (insert answer here)".'
)


def verl_row(source: str, user_turn: str, ground_truth: str, index: int) -> dict:
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": user_turn}],
        "ability": "doc-mc" if "choices" in source else "doc-qa",
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {"index": index},
    }


def test_choice_row_keeps_its_answer_form_and_reduces_its_ground_truth() -> None:
    raw = verl_row("long_toc_choices_0_20000", CHOICE_TURN, "The correct answer is (B).", 3)
    record = QARecord.model_validate(canonical_fields(raw))
    assert (record.answer, record.raw_answer) == ("(B)", "The correct answer is (B).")
    assert record.answer_form == CHOICE_ANSWER_FORM
    assert record.question == CHOICE_QUESTION
    assert user_prompt(record.context, record.question, record.prompt_answer_form) == CHOICE_TURN


def test_qa_row_with_a_yes_no_answer_sentence() -> None:
    raw = verl_row("musique_v1", QA_TURN, "Therefore, the answer is yes.", 4)
    record = QARecord.model_validate(canonical_fields(raw))
    assert (record.answer, record.raw_answer, record.answer_form) == (
        "yes",
        "Therefore, the answer is yes.",
        ANSWER_FORM,
    )
    assert user_prompt(record.context, record.question, record.prompt_answer_form) == QA_TURN


def test_reduction_is_idempotent_and_bare_answers_untouched() -> None:
    flat = {"id": "f1", "data_source": "docmath_v1", "context": "D", "question": "Q?"}
    reduced = QARecord.model_validate({**flat, "answer": "Therefore, the answer is 12.5."})
    assert (reduced.answer, reduced.raw_answer) == ("12.5", "Therefore, the answer is 12.5.")
    assert QARecord.model_validate(reduced.model_dump()) == reduced
    bare = QARecord.model_validate({**flat, "answer": "12.5"})
    assert (bare.answer, bare.raw_answer) == ("12.5", None)


@pytest.mark.parametrize(
    ("source", "form"),
    [
        ("long_toc_choices_0_20000", CHOICE_ANSWER_FORM),
        ("long_toc_choices_synthetic", CHOICE_ANSWER_FORM),
        ("docmath_v1", ANSWER_FORM),
        ("musique_v1", ANSWER_FORM),
    ],
)
def test_flat_rows_ask_for_their_sources_answer_form(source: str, form: str) -> None:
    answer = "B" if "choices" in source else "7"
    record = QARecord.model_validate(
        {"id": "x", "data_source": source, "context": "D", "question": "Q?", "answer": answer}
    )
    assert record.prompt_answer_form == answer_form_for(source) == form


def test_rows_whose_prompt_the_reward_cannot_read_are_refused(tmp_path) -> None:
    unreadable = QA_TURN.replace(
        "Therefore, the answer is (insert answer here)", "Answer: (insert answer here)"
    )
    trailing = QA_TURN + "\n\nThink step by step."
    unquoted = QA_TURN.replace('"Therefore, the answer is (insert answer here)".', "a single word.")
    rows = [
        verl_row("musique_v1", unreadable, "Therefore, the answer is yes.", 1),
        verl_row("musique_v1", trailing, "Therefore, the answer is yes.", 2),
        verl_row("musique_v1", unquoted, "Therefore, the answer is yes.", 3),
        # a choice prompt may ask for "the answer is (X)": the choice reward reads it
        verl_row(
            "long_toc_choices_0_20000",
            CHOICE_TURN.replace("The correct answer", "Therefore, the answer"),
            "B",
            4,
        ),
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = list(read_rows(path))
    errors = [item for item in items if isinstance(item, RowError)]
    assert [e.field for e in errors] == ["answer_form"] * 3
    assert "which the reward for musique_v1 does not read" in errors[0].reason
    assert "Format your response as follows" in errors[1].reason and "Think step by step" in errors[1].reason
    assert "a single word" in errors[2].reason
    assert items[3].record.answer_form == "Therefore, the answer is (insert answer here)"


def test_parse_prompt_reads_a_chat_rendered_prompt() -> None:
    rendered = f"<|im_start|>user\n{CHOICE_TURN}<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert parse_prompt(rendered) == PromptParts(
        HANDBOOK, CHOICE_QUESTION, CHOICE_ANSWER_FORM, "<|im_end|>\n<|im_start|>assistant\n<think>\n"
    )
    assert parse_prompt("no template here") is None


def test_prepared_prompts_ask_for_the_form_their_reward_reads(tmp_path, tiny_model_dir) -> None:
    rows = [
        verl_row("long_toc_choices_0_20000", CHOICE_TURN, "The correct answer is (B).", 1),
        verl_row("musique_v1", QA_TURN, "Therefore, the answer is yes.", 2),
        verl_row(
            "docmath_v1",
            QA_TURN.replace("Are customer", "For how many years are"),
            "Therefore, the answer is 6.",
            3,
        ),
    ]
    path = tmp_path / "docqa.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    config = PrepareConfig(
        inputs=[str(path)],
        output_dir=str(tmp_path / "out"),
        tokenizer=str(tiny_model_dir),
        phase_max_tokens=[4000],
        validation_fraction=0.0,
    )
    prepare(config)
    published = {str(r["extra_info"]["index"]): r["reward_model"]["ground_truth"] for r in rows}
    prepared = pq.read_table(tmp_path / "out" / "train-phase1.parquet").to_pylist()
    assert sorted(r["answer"] for r in prepared) == ["(B)", "6", "yes"]
    assert all(r["raw_answer"] == published[r["id"]] for r in prepared)  # the published sentence is kept
    for row in prepared:
        parts = parse_prompt(row["prompt"])
        assert parts is not None and parts.question == row["question"]
        assert parts.answer_form == (CHOICE_ANSWER_FORM if "choices" in row["data_source"] else ANSWER_FORM)
        # A response in exactly the requested form, with the right answer, earns the full reward.
        closing = parts.answer_form.replace("(insert answer here)", row["answer"])
        response = f"<think>\nSection 7 says six years.\n</think>\n\n{closing}."
        assert rule_reward(row["data_source"], response, row["answer"]) == 1.0
        assert rule_reward(row["data_source"], response, published[row["id"]]) == 1.0
