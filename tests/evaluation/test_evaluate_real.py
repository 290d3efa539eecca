"""The whole evaluation path on the tiny models ``make run`` trains (the session's ``local_run``): serve
its judge as the verifier, generate with its warm-up SFT model in vLLM, score, report.

The evaluation runs as ``python -m longrl.evaluation run`` in its own process, as a component runs
it; in-process, vLLM's CPU engine scans every imported module and trips over proxies that other
servers and libraries other tests load (flask, for one) leave in ``sys.modules``.
"""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from longrl.data import GenerateConfig, generate_records
from longrl.evaluation import EvalConfig, GenerationConfig, write_benchmark_file
from longrl.rewards import JudgeConfig
from longrl.serving import LocalVerifier, VerifierConfig
from tests.support.pipeline_run import PIPELINE_TIMEOUT_S

# The first test to use the session's ``local_run`` sets it up: the whole pipeline.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(PIPELINE_TIMEOUT_S)]


def test_evaluate_with_served_judge(pipeline_models, tmp_path) -> None:
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
    verifier = VerifierConfig(
        model=str(pipeline_models["judge"]), max_model_len=2048, dtype="float32", enforce_eager=True
    )
    with LocalVerifier(verifier, tmp_path / "verifier.log") as endpoint:
        config = EvalConfig(
            model=str(pipeline_models["sft"]),
            output_dir=str(tmp_path / "eval"),
            benchmarks=files,
            max_input_tokens=160,
            generation=GenerationConfig(max_new_tokens=96, samples=2, dtype="float32", enforce_eager=True),
            judge=JudgeConfig(base_url=endpoint, model="verifier", max_tokens=64),
            baseline=str(baseline),
            baseline_name="champion",
        )
        config_file = tmp_path / "eval.json"
        config_file.write_text(config.model_dump_json())
        done = subprocess.run(
            [sys.executable, "-m", "longrl.evaluation", "run", "--config", str(config_file)],
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "eval"
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["benchmarks"]) == {"hotpotqa", "docmath"}
    assert summary["questions"] == 8 and summary["truncated_inputs"] >= 1
    predictions = pq.read_table(out / "predictions.parquet").to_pylist()
    answered_wrong = [p for p in predictions if p["prediction"] and p["em"] < 1]
    assert answered_wrong, "the model gave no answers to judge"
    judge = summary["judge"]
    assert judge["requests"] >= len(answered_wrong)  # each wrong answer went to the judge
    assert judge["failures"] == 0 and judge["yes"] + judge["no"] == judge["api_calls"]  # and it answered
    assert len(predictions) == 16  # 8 questions x 2 samples
    assert all(0.0 <= p["score"] <= 1.0 and p["completion"] is not None for p in predictions)
    assert f'"average": {summary["average"]}' in done.stdout  # the CLI prints the summary
    table = (out / "comparison.md").read_text()
    assert table.splitlines()[0] == "| benchmark | champion | candidate | change |"
    assert (out / "comparison.png").stat().st_size > 1000
