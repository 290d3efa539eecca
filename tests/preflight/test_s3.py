"""Pre-flight checks of s3:// locations: listed and footers read by range, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from longrl import storage
from longrl.preflight import evaluation_problems, rl_problems, sft_problems
from longrl.train.config import TINY_RL, TINY_SFT, RLStepConfig, SFTStepConfig, with_overrides
from tests.preflight.conftest import prepared_rows, write_table


@pytest.fixture
def on_s3(s3_endpoint, tiny_model_dir, data, tmp_path, monkeypatch) -> dict[str, str]:
    """The tiny model and the tables in the 'longrl' bucket; an empty cache that downloads would fill."""
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    storage.copy_tree(str(tiny_model_dir), "s3://longrl/models/tiny")
    uris = {"model": "s3://longrl/models/tiny"}
    for name, path in data.items():
        uris[name] = f"s3://longrl/data/{Path(path).name}"
        storage.upload_file(path, uris[name])
    return uris


def sft(uris: dict[str, str], **values) -> SFTStepConfig:
    base = {
        "model": uris["model"],
        "output_dir": "s3://longrl/runs/sft",
        "train_file": uris["sft"],
        "validation_file": uris["validation"],
    }
    return with_overrides(SFTStepConfig, TINY_SFT, base | values)


def test_ready_s3_step_is_checked_without_downloading(on_s3, tmp_path, no_ray) -> None:
    assert sft_problems(sft(on_s3)) == []
    config = with_overrides(
        RLStepConfig,
        TINY_RL,
        {
            "model": on_s3["model"],
            "output_dir": "s3://longrl/runs/rl1",
            "train_file": on_s3["rl"],
            "phase": 2,
        },
    )
    assert rl_problems(config) == [  # the band is read from the footer's statistics
        f"--train-file {on_s3['rl']}: holds rows of phase 1, not of phase 2: give train-phase2.parquet or set "
        "--phase to the file's phase"
    ]
    assert not (tmp_path / "cache").exists()


def test_s3_model_missing_or_incomplete(on_s3, no_ray) -> None:
    assert sft_problems(sft(on_s3, model="s3://longrl/models/none")) == [
        "--model s3://longrl/models/none: no objects under this prefix: give a Hugging Face model directory "
        "(config.json, tokenizer files, weights) or an s3:// URI"
    ]
    storage.s3_client().delete_object(Bucket="longrl", Key="models/tiny/tokenizer.json")
    (line,) = sft_problems(sft(on_s3))
    assert line.startswith("--model s3://longrl/models/tiny: no tokenizer files")


def test_s3_tables_missing_or_without_columns(on_s3, tmp_path, no_ray) -> None:
    thin = write_table(tmp_path / "thin.parquet", [{"prompt": r["prompt"]} for r in prepared_rows()])
    storage.upload_file(thin, "s3://longrl/data/thin.parquet")
    assert sft_problems(
        sft(on_s3, train_file="s3://longrl/data/thin.parquet", validation_file="s3://longrl/v")
    ) == [
        "--train-file s3://longrl/data/thin.parquet: no completion column (it has prompt): give a prepared SFT "
        "file (python -m longrl.data prepare --sft writes train-phase1.parquet)",
        "--validation-file s3://longrl/v: no such file: give a prepared validation.parquet (python -m "
        "longrl.data prepare), or set validation_max_examples 0",
    ]


def test_missing_bucket_and_unreachable_endpoint(on_s3, monkeypatch, no_ray) -> None:
    (line,) = sft_problems(sft(on_s3, output_dir="s3://no-such-bucket/runs/sft"))
    assert line.startswith(
        "--output-dir s3://no-such-bucket/runs/sft: bucket 'no-such-bucket' does not exist"
    )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    problems = sft_problems(sft(on_s3))
    assert len(problems) == 4 and all("the S3 credentials were refused" in line for line in problems), (
        problems
    )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
    from tests.support.s3_server import free_port

    monkeypatch.setenv("LONGRL_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    problems = sft_problems(sft(on_s3))
    assert [line.split(" ", 1)[0] for line in problems] == [
        "--model",
        "--output-dir",
        "--train-file",
        "--validation-file",
    ]
    assert all("cannot reach the S3 endpoint" in line for line in problems), problems


def test_s3_evaluation_inputs(on_s3, tmp_path, no_ray) -> None:
    from longrl.evaluation.run import EvalConfig

    config = EvalConfig(
        model=on_s3["model"],
        output_dir="s3://longrl/eval",
        benchmarks={"hotpotqa": "s3://longrl/bench/hotpotqa.jsonl"},
    )
    assert evaluation_problems(config) == [
        "--benchmarks.hotpotqa s3://longrl/bench/hotpotqa.jsonl: no such file: give the benchmark's file"
    ]
    storage.write_text("s3://longrl/bench/hotpotqa.jsonl", '{"_id": "1"}\n')
    assert evaluation_problems(config) == []
