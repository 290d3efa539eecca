"""``make run ARTIFACTS=s3``: a SeaweedFS server for the run, inputs uploaded, step outputs in the bucket."""

import json
import os
import socket

import pytest
from pipelines.local_s3 import bucket_outputs, local_bucket, upload_inputs

from longrl import storage
from longrl.artifacts import data_location, fetch, read_pointer, write_pointer


def test_a_run_keeps_its_inputs_and_step_outputs_in_its_own_bucket(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("LONGRL_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    work = tmp_path / "run"
    (work / "base-model").mkdir(parents=True)
    (work / "base-model" / "config.json").write_text("{}")
    for name in ("sft.jsonl", "rl.jsonl", "hotpotqa.jsonl"):
        (work / name).write_text(f'{{"file": "{name}"}}\n')
    inputs = {
        "base_model": str(work / "base-model"),
        "sft_data": [str(work / "sft.jsonl")],
        "rl_data": [str(work / "rl.jsonl")],
        "eval_benchmarks": {"hotpotqa": str(work / "hotpotqa.jsonl")},
    }
    pipeline_root = work / "kfp"
    with local_bucket(work, pipeline_root) as endpoint:
        assert os.environ["LONGRL_S3_ENDPOINT_URL"] == endpoint
        assert upload_inputs(inputs) == {
            "base_model": "s3://longrl/models/base",
            "sft_data": ["s3://longrl/data/sft.jsonl"],
            "rl_data": ["s3://longrl/data/rl.jsonl"],
            "eval_benchmarks": {"hotpotqa": "s3://longrl/data/eval/hotpotqa.jsonl"},
        }
        assert storage.read_text("s3://longrl/data/eval/hotpotqa.jsonl") == '{"file": "hotpotqa.jsonl"}\n'
        assert list(storage.list_files("s3://longrl/models/base")) == ["config.json"]

        # what a step does with its output artifact under kfp.local: data in the bucket, pointer local
        artifact = pipeline_root / "longrl-2026" / "evaluate-model" / "evaluation"
        location = data_location(str(artifact), str(artifact))
        assert location == "s3://longrl/pipelines/longrl-2026/evaluate-model/.longrl-data/evaluation"
        storage.write_text(storage.join(location, "comparison.md"), "| benchmark | score |\n")
        write_pointer(artifact, location)
        assert fetch(read_pointer(artifact), "comparison.md").read_text() == "| benchmark | score |\n"
        (table,) = bucket_outputs(work, "evaluation", ("stages.md", "comparison.md"))
        assert str(table) == f"{location}/comparison.md" and table.read_text() == "| benchmark | score |\n"

        outside = tmp_path / "elsewhere" / "model"
        assert data_location(str(outside), str(outside)) == str(outside.parent / ".longrl-data" / "model")
    assert "LONGRL_S3_ENDPOINT_URL" not in os.environ  # as it was before
    assert json.loads((work / "seaweedfs" / "credentials.json").read_text())["access_key"] == "longrl-local"
    port = int(endpoint.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):  # the server is gone with the block
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
