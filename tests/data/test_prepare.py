import json

import pyarrow.parquet as pq
import pytest

from longrl.data import DataError, PrepareConfig, assign_phase, generate_records, prepare
from longrl.data.prepare import validation_ids
from longrl.data.synthetic import GenerateConfig, write_records


@pytest.fixture
def qa_file(tmp_path, tiny_tokenizer):
    config = GenerateConfig(output="-", num_records=30, doc_tokens_min=60, doc_tokens_max=700, seed=1)
    count = lambda text: len(tiny_tokenizer(text)["input_ids"])  # noqa: E731
    return write_records(list(generate_records(config, count)), tmp_path / "qa.jsonl")


def config_for(tmp_path, inputs, tiny_model_dir, **overrides) -> PrepareConfig:
    settings = {
        "inputs": [str(p) for p in inputs],
        "output_dir": str(tmp_path / "out"),
        "tokenizer": str(tiny_model_dir),
        "phase_max_tokens": [350, 600],
        "validation_fraction": 0.1,
    } | overrides
    return PrepareConfig(**settings)


def read(path):
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize(("tokens", "phase"), [(1, 1), (20_000, 1), (20_001, 2), (60_000, 2), (60_001, None)])
def test_assign_phase_bands(tokens, phase) -> None:
    assert assign_phase(tokens, [20_000, 60_000]) == phase


def test_phase_bounds_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        PrepareConfig(inputs=["x"], output_dir="o", tokenizer="t", phase_max_tokens=[60_000, 20_000])


def test_validation_draw_is_seeded_and_order_free() -> None:
    ids = [f"id-{i}" for i in range(100)]
    chosen = validation_ids(ids, 0.1, seed=3)
    assert len(chosen) == 10
    assert validation_ids(list(reversed(ids)), 0.1, seed=3) == chosen
    assert validation_ids(ids, 0.1, seed=4) != chosen
    assert validation_ids(ids[:1], 0.5, seed=0) == set()
    assert len(validation_ids(ids[:3], 0.01, seed=0)) == 1


def test_prepare_buckets_measures_and_splits(tmp_path, qa_file, tiny_model_dir, tiny_tokenizer) -> None:
    stats = prepare(config_for(tmp_path, [qa_file], tiny_model_dir))
    out = tmp_path / "out"
    phase1, phase2, validation = (
        read(out / n) for n in ("train-phase1.parquet", "train-phase2.parquet", "validation.parquet")
    )
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]

    # nothing is lost: every row read is used or rejected with a reason
    assert len(phase1) + len(phase2) + len(validation) + len(rejected) == 30
    assert stats["rows_read"] == 30 and stats["rows_used"] == len(phase1) + len(phase2) + len(validation)
    assert phase1 and phase2 and validation and rejected
    assert {r["reason"] for r in rejected} == {"too_long"}
    assert all(r["prompt_tokens"] > 600 and r["record"]["context"] for r in rejected)

    for row in phase1 + phase2 + validation:
        assert row["prompt"].startswith("<|im_start|>user\nPlease read the following text")
        assert row["prompt"].endswith("<|im_start|>assistant\n<think>\n")
        assert row["prompt_tokens"] == len(
            tiny_tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        )
    assert all(r["prompt_tokens"] <= 350 and r["phase"] == 1 for r in phase1)
    assert all(350 < r["prompt_tokens"] <= 600 and r["phase"] == 2 for r in phase2)
    assert not {r["id"] for r in validation} & {r["id"] for r in phase1 + phase2}
    assert len(validation) == round(0.1 * (30 - len(rejected)))  # 10 % of those that fit

    assert [p["train_rows"] for p in stats["phases"]] == [len(phase1), len(phase2)]
    assert sum(stats["phases"][0]["train_by_data_source"].values()) == len(phase1)
    assert stats["rejected"] == {"invalid": 0, "duplicate": 0, "too_long": len(rejected)}
    assert stats["prompt_tokens"]["count"] == 30
    assert stats["phases"][1]["prompt_tokens"]["max"] <= 600
    assert json.loads((out / "stats.json").read_text()) == stats


def test_bad_rows_stop_the_step_and_write_nothing(tmp_path, qa_file, tiny_model_dir) -> None:
    with qa_file.open("a") as handle:
        handle.write('{"id": "x", "question": "q"}\n')
        handle.write("garbage\n")
    with pytest.raises(DataError) as caught:
        prepare(config_for(tmp_path, [qa_file], tiny_model_dir))
    message = str(caught.value)
    assert "2 invalid row(s); nothing was written" in message
    assert (
        f"{qa_file}:line 31: field 'data_source': is missing (also: 'context' is missing; 'answer' is missing)"
        in message
    )
    assert f"{qa_file}:line 32: field '<row>': not valid JSON" in message
    assert "--on-bad-row skip" in message
    assert not (tmp_path / "out").exists()


def test_an_empty_phase_stops_preparation_and_keeps_the_earlier_output(
    tmp_path, qa_file, tiny_model_dir
) -> None:
    config = config_for(tmp_path, [qa_file], tiny_model_dir)
    prepare(config)
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # every prompt is under 5000 tokens: phase 2 would train on nothing, a failure hours later
    with pytest.raises(DataError) as caught:
        prepare(config.model_copy(update={"phase_max_tokens": [5000, 6000]}))
    message = str(caught.value)
    assert f"curriculum phase(s) too small in {qa_file}; nothing was written" in message
    assert "phase 2 (5000 < prompt tokens <= 6000): 0 training row(s), fewer than min_phase_rows=1" in message
    assert "phase 1 (" not in message  # only the phase that is short
    assert "--phase-max-tokens" in message and "LONGRL_RL_PHASES" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing moved in, nothing left


def test_a_phase_needs_min_phase_rows(tmp_path, qa_file, tiny_model_dir) -> None:
    stats = prepare(config_for(tmp_path, [qa_file], tiny_model_dir, output_dir=str(tmp_path / "ok")))
    rows = [phase["train_rows"] for phase in stats["phases"]]
    enough = min(rows)
    prepare(config_for(tmp_path, [qa_file], tiny_model_dir, min_phase_rows=enough))
    with pytest.raises(DataError, match=f"fewer than min_phase_rows={enough + 1}") as caught:
        short = str(tmp_path / "short")
        prepare(config_for(tmp_path, [qa_file], tiny_model_dir, output_dir=short, min_phase_rows=enough + 1))
    assert f"training rows per phase: phase 1: {rows[0]}, phase 2: {rows[1]}" in str(caught.value)
    assert not (tmp_path / "short").exists()


def test_skipped_bad_rows_are_quarantined_with_their_reason(tmp_path, qa_file, tiny_model_dir) -> None:
    with qa_file.open("a") as handle:
        handle.write('{"id": "x", "question": "q", "extra": 1}\n')
    stats = prepare(config_for(tmp_path, [qa_file], tiny_model_dir, on_bad_row="skip"))
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    invalid = [r for r in rejected if r["reason"].startswith("invalid")]
    assert invalid == [
        {
            "file": str(qa_file),
            "row": 31,
            "field": "data_source",
            "reason": "invalid: is missing (also: 'context' is missing; 'answer' is missing)",
            "record": {"id": "x", "question": "q", "extra": 1},
        }
    ]
    assert stats["rejected"]["invalid"] == 1
    assert stats["rows_used"] + sum(stats["rejected"].values()) == 31


def test_duplicates_are_reported_and_removed(tmp_path, qa_file, tiny_model_dir) -> None:
    first = json.loads(qa_file.read_text().splitlines()[0])
    with qa_file.open("a") as handle:
        handle.write(json.dumps({**first, "id": "copy-of-first", "answer": "other"}) + "\n")
    stats = prepare(config_for(tmp_path, [qa_file], tiny_model_dir, phase_max_tokens=[100_000]))
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert rejected == [
        {
            "file": str(qa_file),
            "row": 31,
            "reason": "duplicate",
            "id": "copy-of-first",
            "duplicate_of": first["id"],
            "first_seen": f"{qa_file}:line 1",
        }
    ]
    assert stats["rejected"]["duplicate"] == 1
    assert stats["rows_used"] == 30


def test_one_id_for_two_examples_is_an_error(tmp_path, qa_file, tiny_model_dir) -> None:
    first = json.loads(qa_file.read_text().splitlines()[0])
    with qa_file.open("a") as handle:
        handle.write(json.dumps({**first, "question": "A different question?"}) + "\n")
    with pytest.raises(DataError, match=f"id '{first['id']}' is already used by {qa_file}:line 1"):
        prepare(config_for(tmp_path, [qa_file], tiny_model_dir))


def test_rerun_with_same_inputs_is_a_no_op_and_changes_rerun(tmp_path, qa_file, tiny_model_dir) -> None:
    config = config_for(tmp_path, [qa_file], tiny_model_dir)
    prepare(config)
    stats_file = tmp_path / "out" / "stats.json"
    stamp = stats_file.stat().st_mtime_ns
    prepare(config)
    assert stats_file.stat().st_mtime_ns == stamp
    changed = prepare(config.model_copy(update={"phase_max_tokens": [300, 650]}))
    assert stats_file.stat().st_mtime_ns != stamp
    assert changed["phases"][0]["max_tokens"] == 300
    (tmp_path / "out" / "train-phase1.parquet").write_bytes(b"damaged")
    prepare(config.model_copy(update={"phase_max_tokens": [300, 650]}))
    assert (
        pq.read_table(tmp_path / "out" / "train-phase1.parquet").num_rows
        == changed["phases"][0]["train_rows"]
    )


def test_sft_records_get_a_completion_that_continues_the_think_block(tmp_path, tiny_model_dir) -> None:
    config = GenerateConfig(
        output=str(tmp_path / "sft.jsonl"), num_records=6, doc_tokens_min=60, doc_tokens_max=120, sft=True
    )
    path = write_records(list(generate_records(config)), config.output)
    prepare(
        config_for(tmp_path, [path], tiny_model_dir, sft=True, phase_max_tokens=[2000], validation_fraction=0)
    )
    rows = read(tmp_path / "out" / "train-phase1.parquet")
    assert len(rows) == 6
    for row in rows:
        assert row["prompt"].endswith("<think>\n")
        assert not row["completion"].startswith("<think>")
        assert "</think>" in row["completion"]
        closing = "The correct answer is" if "choices" in row["data_source"] else "Therefore, the answer is"
        assert row["completion"].endswith(f"{closing} {row['answer']}.")


def test_verl_parquet_input(tmp_path, tiny_model_dir) -> None:
    import pyarrow as pa

    from longrl.data import user_prompt

    rows = [
        {
            "data_source": "docmath_v1",
            "prompt": [{"role": "user", "content": user_prompt(f"Revenue was {i}.", "What was revenue?")}],
            "ability": "doc-math",
            "reward_model": {"style": "rule", "ground_truth": str(i)},
            "extra_info": {"index": i},
        }
        for i in range(5)
    ]
    path = tmp_path / "docqa.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    stats = prepare(
        config_for(tmp_path, [path], tiny_model_dir, phase_max_tokens=[600], validation_fraction=0.0)
    )
    assert stats["phases"][0]["train_rows"] == 5
    assert sorted(r["answer"] for r in read(tmp_path / "out" / "train-phase1.parquet")) == [
        "0",
        "1",
        "2",
        "3",
        "4",
    ]
