"""The whole evaluation path on the tiny model: serve the verifier, generate with vLLM, score, report."""

import json

import pyarrow.parquet as pq
import pytest

from longrl.data import GenerateConfig, generate_records
from longrl.evaluation import EvalConfig, GenerationConfig, evaluate, write_benchmark_file
from longrl.rewards import JudgeConfig
from longrl.serving import LocalVerifier, VerifierConfig

pytestmark = pytest.mark.slow


def test_evaluate_with_served_judge(tiny_model_dir, tmp_path) -> None:
    files = {}
    for name, kind in (("hotpotqa", "multihop"), ("docmath", "docmath")):
        records = list(
            generate_records(
                GenerateConfig(
                    output="-", num_records=4, kinds=[kind], doc_tokens_min=40, doc_tokens_max=200, seed=3
                )
            )
        )
        files[name] = str(write_benchmark_file(name, records, tmp_path / f"{name}.jsonl"))
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "metrics.json").write_text(
        json.dumps(
            {
                "model": "champion",
                "benchmarks": {"hotpotqa": {"score": 0.5}, "docmath": {"score": 0.25}},
                "average": 0.375,
            }
        )
    )
    verifier = VerifierConfig(model=str(tiny_model_dir), max_model_len=1024, dtype="float32")
    with LocalVerifier(verifier, tmp_path / "verifier.log") as endpoint:
        summary = evaluate(
            EvalConfig(
                model=str(tiny_model_dir),
                output_dir=str(tmp_path / "eval"),
                benchmarks=files,
                max_input_tokens=160,
                generation=GenerationConfig(max_new_tokens=24, samples=2, dtype="float32"),
                judge=JudgeConfig(base_url=endpoint, model="verifier", max_tokens=16),
                baseline=str(baseline),
                baseline_name="champion",
            )
        )
    out = tmp_path / "eval"
    assert set(summary["benchmarks"]) == {"hotpotqa", "docmath"}
    assert summary["questions"] == 8 and summary["truncated_inputs"] >= 1
    assert summary["judge"]["api_calls"] >= 1  # the random model's answers are wrong: the judge was asked
    predictions = pq.read_table(out / "predictions.parquet").to_pylist()
    assert len(predictions) == 16  # 8 questions x 2 samples
    assert all(0.0 <= p["score"] <= 1.0 and p["completion"] is not None for p in predictions)
    assert json.loads((out / "metrics.json").read_text())["average"] == summary["average"]
    table = (out / "comparison.md").read_text()
    assert table.splitlines()[0] == "| benchmark | champion | candidate | change |"
    assert (out / "comparison.png").stat().st_size > 1000
