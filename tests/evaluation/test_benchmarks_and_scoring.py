import asyncio
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longrl.data import DataError
from longrl.evaluation import (
    EvalRecord,
    GenerationConfig,
    build_prompt,
    load_benchmark,
    rope_scaling,
    score_all,
    summarize,
    to_layout,
    truncate_middle,
)
from longrl.evaluation.report import comparison_markdown, comparison_plot
from longrl.rewards import JudgeConfig, LLMJudge
from tests.support.openai_server import serve_verifier

QA = {
    "id": "q1",
    "question": "Who founded Acme?",
    "context": "Para one.\n\nAcme was founded by Ann.",
    "answer": "Ann",
    "data_source": "musique",
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_longbench_layout(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "hotpotqa.jsonl",
        [
            {
                "_id": "a",
                "input": "Q?",
                "context": "C",
                "answers": ["x", "y"],
                "dataset": "hotpotqa",
                "length": 1,
            },
        ],
    )
    (record,) = load_benchmark("hotpotqa", path)
    assert record == EvalRecord(
        id="a", benchmark="hotpotqa", data_source="hotpotqa", context="C", question="Q?", answers=["x", "y"]
    )


def test_docmath_and_frames_layouts(tmp_path) -> None:
    docmath = write_jsonl(
        tmp_path / "docmath.jsonl",
        [
            {
                "question_id": "d1",
                "question": "Total?",
                "paragraphs": ["p1", "| a | 1 |"],
                "ground_truth": 12.5,
            },
        ],
    )
    (record,) = load_benchmark("docmath", docmath)
    assert (record.context, record.answers, record.data_source) == ("p1\n| a | 1 |", ["12.5"], "docmath")
    frames = tmp_path / "frames.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "Prompt": "Which?",
                    "Answer": "Bob",
                    "wiki_items": [{"title": "T1", "text": "x"}, {"title": "T2", "text": "y"}],
                },
            ]
        ),
        frames,
    )
    (record,) = load_benchmark("frames", str(frames))
    assert (record.question, record.answers, record.context, record.id) == (
        "Which?",
        ["Bob"],
        "T1\nx\nT2\ny",
        "1",
    )


def test_round_trip_through_each_layout(tmp_path) -> None:
    for name in ("hotpotqa", "docmath", "frames"):
        path = write_jsonl(tmp_path / f"{name}.jsonl", [to_layout(name, QA)])
        (record,) = load_benchmark(name, path)
        assert (
            record.question == QA["question"]
            and record.answers == ["Ann"]
            and "founded by Ann" in record.context
        )


def test_bad_rows_and_unknown_benchmarks_are_clear_errors(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "musique.jsonl",
        [
            {"_id": "a", "input": "Q?", "context": "C", "answers": ["x"]},
            {"_id": "b", "input": "Q?", "context": "C", "answers": []},
            {"_id": "c", "context": "C", "answers": ["x"]},
        ],
    )
    with pytest.raises(DataError) as caught:
        load_benchmark("musique", path)
    assert f"{path}:line 2: field 'answers'" in str(caught.value)
    assert f"{path}:line 3: field 'question': Field required" in str(caught.value)
    with pytest.raises(DataError, match="unknown benchmark 'squad'"):
        load_benchmark("squad", path)


def test_truncation_keeps_head_and_tail(tiny_tokenizer) -> None:
    text = " ".join(f"w{i}" for i in range(400))
    kept, cut = truncate_middle(tiny_tokenizer, text, 40)
    assert cut and kept.startswith("w0") and kept.endswith("w399")
    assert len(tiny_tokenizer(kept, add_special_tokens=False)["input_ids"]) <= 42
    assert truncate_middle(tiny_tokenizer, "short", 40) == ("short", False)


def test_prompts_fit_the_input_budget(tiny_tokenizer) -> None:
    record = EvalRecord(
        id="x",
        benchmark="musique",
        data_source="musique",
        question="Who?",
        context=" ".join(["filler words"] * 2000),
        answers=["a"],
    )
    prompt, length, cut = build_prompt(tiny_tokenizer, record, max_input_tokens=300)
    assert cut and length <= 305
    assert prompt.endswith("<|im_start|>assistant\n<think>\n") and "Who?" in prompt
    with pytest.raises(ValueError, match="no room"):
        build_prompt(tiny_tokenizer, record, max_input_tokens=10)


def test_yarn_switches_on_past_the_original_context() -> None:
    auto = GenerationConfig()
    assert rope_scaling(auto, 32_000) is None
    assert rope_scaling(auto, 130_000) == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 32768,
    }
    assert rope_scaling(GenerationConfig(yarn="on"), 100) is not None
    assert rope_scaling(GenerationConfig(yarn="off"), 10**6) is None


def said(answer):
    return f"<think>...</think>Therefore, the answer is {answer}."


def test_scores_and_summary_with_a_judge() -> None:
    records = [
        EvalRecord(
            id="1",
            benchmark="hotpotqa",
            data_source="hotpotqa",
            context="c",
            question="Q1",
            answers=["Paris"],
        ),
        EvalRecord(
            id="2", benchmark="hotpotqa", data_source="hotpotqa", context="c", question="Q2", answers=["4"]
        ),
        EvalRecord(
            id="3", benchmark="docmath", data_source="docmath", context="c", question="Q3", answers=["12.5"]
        ),
    ]
    completions = [[said("Paris"), said("Lyon")], [said("four")], [said("$12.50 million")]]
    with serve_verifier() as (url, script):
        script.synonyms.add(("four", "4"))

        async def run():
            async with LLMJudge(JudgeConfig(base_url=url, model="v", max_retries=0)) as judge:
                return await score_all(records, completions, judge)

        rows = asyncio.run(run())
    assert [(r["id"], r["sample"], r["em"], r["judge"], r["score"]) for r in rows] == [
        ("1", 0, 1.0, 1.0, 1.0),
        ("1", 1, 0.0, 0.0, 0.0),
        ("2", 0, 0.0, 1.0, 1.0),
        ("3", 0, 1.0, 1.0, 1.0),
    ]
    summary = summarize(rows)
    assert summary["benchmarks"]["hotpotqa"]["score"] == pytest.approx(2 / 3)
    assert summary["benchmarks"]["hotpotqa"]["em"] == pytest.approx(1 / 3)
    assert summary["benchmarks"]["docmath"]["score"] == 1.0
    assert summary["average"] == pytest.approx((2 / 3 + 1) / 2)


def test_scores_without_a_judge_are_em_based() -> None:
    record = EvalRecord(
        id="1", benchmark="musique", data_source="musique", context="c", question="Q", answers=["Ann"]
    )
    rows = asyncio.run(score_all([record], [[said("Ann Lee"), "no answer"]], None))
    assert [(r["em"], r["sub_em"], r["judge"], r["score"]) for r in rows] == [
        (0.0, 1.0, None, 0.0),
        (0.0, 0.0, 0.0, 0.0),
    ]
    assert rows[0]["f1"] == pytest.approx(2 / 3)


def test_comparison_table_and_plot(tmp_path) -> None:
    baseline = {"benchmarks": {"hotpotqa": {"score": 0.40}, "docmath": {"score": 0.20}}, "average": 0.30}
    candidate = {"benchmarks": {"hotpotqa": {"score": 0.50}, "docmath": {"score": 0.25}}, "average": 0.375}
    table = comparison_markdown({"champion": baseline, "candidate": candidate})
    assert table.splitlines()[0] == "| benchmark | champion | candidate | change |"
    assert "| hotpotqa | 40.0 | 50.0 | +10.0 |" in table
    assert "| **average** | 30.0 | 37.5 | +7.5 |" in table
    png = comparison_plot({"champion": baseline, "candidate": candidate}, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
