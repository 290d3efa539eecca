"""The pipeline's step functions (what the KFP components call) refuse bad inputs before any launcher."""

from __future__ import annotations

import shutil

import pytest

from longrl.preflight import PreflightFailed
from longrl.rewards.judge import JudgeConfig
from longrl.steps import Placement, evaluate_step, rl_step, sft_step
from longrl.tracking import TrackingConfig
from tests.preflight.conftest import closed_port_url, prepared_rows, write_table


def test_sft_step_refuses_missing_data(tiny_model_dir, tmp_path, no_ray) -> None:
    with pytest.raises(PreflightFailed) as refused:
        sft_step(
            str(tiny_model_dir),
            str(tmp_path / "sft-data"),
            str(tmp_path / "rl-data"),
            str(tmp_path / "out"),
            "tiny",
            {},
            Placement(),
            TrackingConfig(),
        )
    assert refused.value.problems == [
        f"--train-file {tmp_path / 'sft-data' / 'train-phase1.parquet'}: no such file: give a prepared SFT file "
        "(python -m longrl.data prepare --sft writes train-phase1.parquet)",
        f"--validation-file {tmp_path / 'rl-data' / 'validation.parquet'}: no such file: give a prepared "
        "validation.parquet (python -m longrl.data prepare), or set validation_max_examples 0",
    ]
    assert str(refused.value).startswith("sft step: not started, 2 problems to fix first:\n  --train-file")


def test_rl_step_refuses_judge_output_and_placement_together(tiny_model_dir, tmp_path, no_ray) -> None:
    start = tmp_path / "sft"
    shutil.copytree(tiny_model_dir, start / "model")
    data = tmp_path / "rl-data"
    data.mkdir()
    write_table(data / "train-phase1.parquet", prepared_rows())
    write_table(data / "validation.parquet", prepared_rows(count=2))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    judge_url = closed_port_url()
    with pytest.raises(PreflightFailed) as refused:
        rl_step(
            str(start),
            str(data),
            1,
            [400, 800],
            str(blocker / "out"),
            "tiny",
            {"engine": "verl", "parallelism": {"sharding": "fsdp"}, "per_device_train_batch_size": 4},
            "dapo",
            "hybrid",
            JudgeConfig(base_url=judge_url, model="verifier"),
            Placement(launcher="kuberay", workers=2, gpus_per_worker=1),
            TrackingConfig(),
        )
    problems = refused.value.problems
    assert problems[0] == f"--output-dir {blocker / 'out'}: cannot be created: {blocker} is a file"
    assert problems[1].startswith(f"--judge.base-url {judge_url}: no answer from GET {judge_url}/models")
    assert problems[2].startswith(
        "--engine verl on 2 GPU(s) of 80 GiB: engine verl on 2 nodes writes checkpoint"
    )
    assert "set shared_volume_claim to a ReadWriteMany PersistentVolumeClaim" in problems[2]
    assert len(problems) == 3


def test_evaluate_step_refuses_missing_model_and_benchmark(tmp_path, no_ray) -> None:
    from longrl.registry import RegistryConfig

    with pytest.raises(PreflightFailed) as refused:
        evaluate_step(
            trained=str(tmp_path / "rl-phase2"),
            output=str(tmp_path / "eval"),
            benchmarks={"hotpotqa": str(tmp_path / "hotpotqa.jsonl"), "trivia": str(tmp_path / "t.jsonl")},
            overrides={},
            judge=None,
            registry=RegistryConfig(tracking_uri=(tmp_path / "mlruns").as_uri()),
            tracking=TrackingConfig(),
        )
    assert refused.value.problems == [
        f"--model {tmp_path / 'rl-phase2' / 'model'}: no such directory: give a Hugging Face model directory "
        "(config.json, tokenizer files, weights) or an s3:// URI",
        f"--benchmarks.hotpotqa {tmp_path / 'hotpotqa.jsonl'}: no such file: give the benchmark's file",
        f"--benchmarks.trivia {tmp_path / 't.jsonl'}: unknown benchmark 'trivia'; known: docmath, frames, "
        "2wikimqa, hotpotqa, musique, narrativeqa, qasper",
    ]
