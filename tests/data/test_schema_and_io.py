import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longrl.data import DataError, QARecord, RowError, canonical_fields, read_rows, user_prompt
from longrl.data.prompts import parse_user_prompt

GOOD = {"id": "a1", "data_source": "musique_v1", "context": "Doc text.", "question": "Who?", "answer": "Ann"}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_template_round_trip() -> None:
    prompt = user_prompt("  The document\n\nwith <text> inside.  ", " What is it? ")
    assert prompt.startswith("Please read the following text and answer the question below.\n\n<text>\n")
    assert prompt.endswith(
        'Format your response as follows: "Therefore, the answer is (insert answer here)".'
    )
    assert parse_user_prompt(prompt) == ("The document\n\nwith <text> inside.", "What is it?")
    assert parse_user_prompt("just a question") is None


def test_flat_and_aliased_fields() -> None:
    assert canonical_fields(GOOD) == GOOD
    aliased = {"document": "D", "query": "Q", "answers": ["A"], "source": "docmath", "_id": 7}
    assert canonical_fields(aliased) == {
        "context": "D",
        "question": "Q",
        "answer": "A",
        "data_source": "docmath",
        "id": "7",
    }
    numeric = canonical_fields({**GOOD, "answer": 12.5})
    assert numeric["answer"] == "12.5"


def test_missing_id_is_derived_from_content() -> None:
    first = canonical_fields({k: v for k, v in GOOD.items() if k != "id"})
    again = canonical_fields({k: v for k, v in GOOD.items() if k != "id"})
    assert first["id"] == again["id"] and first["id"].startswith("musique_v1-")


def test_verl_layout_as_docqa_rl_publishes_it() -> None:
    raw = {
        "data_source": "docmath_v1",
        "prompt": [{"role": "user", "content": user_prompt("Revenue was 5.", "What was revenue?")}],
        "ability": "doc-math",
        "reward_model": {"style": "rule", "ground_truth": "5"},
        "extra_info": {"index": 12},
    }
    record = QARecord.model_validate(canonical_fields(raw))
    assert (record.id, record.context, record.question, record.answer) == (
        "12",
        "Revenue was 5.",
        "What was revenue?",
        "5",
    )


def test_jsonl_rows_are_validated_with_file_line_and_field(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            GOOD,
            "{not json",
            "[1, 2]",
            {**GOOD, "id": "a2", "question": None},
            {**GOOD, "id": "a3", "context": "   "},
            {**GOOD, "id": "a4", "context": ["a", "b"]},
            {**GOOD, "id": "a5", "data_source": "long_toc_choices_0_20000", "answer": "Paris"},
            {"id": "a6"},
        ],
    )
    items = list(read_rows(path))
    assert isinstance(items[0].record, QARecord)
    errors = [str(i) for i in items if isinstance(i, RowError)]
    assert errors == [
        f"{path}:line 2: field '<row>': not valid JSON (Expecting property name enclosed in double quotes)",
        f"{path}:line 3: field '<row>': not a JSON object",
        f"{path}:line 4: field 'question': is missing",
        f"{path}:line 5: field 'context': is blank",
        f"{path}:line 6: field 'context': Input should be a valid string",
        f"{path}:line 7: field 'answer': a multiple-choice source (long_toc_choices_0_20000) needs an option "
        "letter such as 'B' or '(B)'",
        f"{path}:line 8: field 'data_source': is missing (also: 'context' is missing; 'question' is missing; "
        "'answer' is missing)",
    ]


def test_parquet_rows_are_numbered(tmp_path) -> None:
    path = tmp_path / "in.parquet"
    rows = [GOOD, {**GOOD, "id": "b", "answer": ""}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    items = list(read_rows(path))
    assert items[0].record.id == "a1"
    assert str(items[1]) == f"{path}:row 2: field 'answer': String should have at least 1 character"


def test_sft_rows_must_close_their_reasoning(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "sft.jsonl",
        [
            {**GOOD, "response": "<think>x</think> Therefore, the answer is Ann."},
            {**GOOD, "id": "z", "response": "Ann"},
        ],
    )
    ok, bad = list(read_rows(path, sft=True))
    assert ok.record.response.endswith("Ann.")
    assert bad.field == "response" and "</think>" in bad.reason


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("in.csv", b"a,b\n", "unknown file type"),
        ("in.jsonl", b"\xff\xfe\x00bad", "not UTF-8"),
        ("in.parquet", b"not parquet at all", "cannot be read as parquet"),
    ],
)
def test_unreadable_files_are_clear_errors(tmp_path, name, content, message) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        list(read_rows(path))


def test_missing_file(tmp_path) -> None:
    with pytest.raises(DataError, match="no such file"):
        list(read_rows(tmp_path / "nope.jsonl"))
