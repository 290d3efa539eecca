"""Real training on the tiny model: SFT, two RL phases with retrospective sampling, resuming, and the
Ray entrypoint through the local launcher with S3 outputs and MLflow metrics."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from longrl.curriculum import DIFFICULTY_FILE, TRAIN_DATA_FILE, read_difficulty
from longrl.rewards import JudgeConfig
from longrl.tracking import TrackingConfig, read_metrics
from longrl.train.checkpoints import CHECKPOINTS_DIR, MODEL_DIR, RESULT_FILE, latest_checkpoint
from longrl.train.rl import run_rl
from longrl.train.sft import run_sft
from tests.support.openai_server import serve_verifier
from tests.train.step_configs import rl_config, sft_config

pytestmark = pytest.mark.slow


def test_sft_then_two_rl_phases(tiny_model_dir, data, tmp_path) -> None:
    sft = run_sft(sft_config(tiny_model_dir, data, tmp_path / "sft"))
    assert sft["global_step"] == 4
    assert (tmp_path / "sft" / MODEL_DIR / "model.safetensors").is_file()
    assert (tmp_path / "sft" / MODEL_DIR / "tokenizer.json").is_file()
    assert set(sft["validation"]) >= {"val/accuracy", "val/answered", "val/mean_response_tokens"}
    sft_metrics = read_metrics(tmp_path / "sft")
    assert any("train/loss" in m for m in sft_metrics)
    assert any("train/tokens_per_second" in m for m in sft_metrics)

    with serve_verifier() as (url, script):
        judge = JudgeConfig(base_url=url, model="verifier", max_retries=0)
        phase1 = run_rl(
            rl_config(tmp_path / "sft" / MODEL_DIR, data, tmp_path / "rl1", 1, reward="hybrid", judge=judge)
        )
        assert phase1["global_step"] == 3
        records = read_difficulty(tmp_path / "rl1" / DIFFICULTY_FILE)
        trained_ids = {r["id"] for r in pq.read_table(tmp_path / "rl1" / TRAIN_DATA_FILE).to_pylist()}
        assert records and set(records) <= trained_ids
        assert all(r["samples"] % 8 == 0 and 0.0 <= r["difficulty"] <= 1.0 for r in records.values())
        metrics = read_metrics(tmp_path / "rl1")
        logged = {key for m in metrics for key in m}
        assert {
            "train/reward",
            "train/reward/rule",
            "train/reward/hybrid",
            "train/entropy",
            "train/completions/mean_length",
            "train/clip_ratio/region_mean",
            "train/judge/requests",
            "train/judge/cache_hits",
            "train/judge/failures",
            "train/dynamic_sampling/dropped_fraction",
            "train/tokens_per_second",
            "curriculum/retrospective_drawn",
        } <= logged

    # phase 2 draws hard phase-1 examples back in
    difficulties = {i: r["difficulty"] for i, r in records.items()}
    phase2 = run_rl(
        rl_config(
            tmp_path / "rl1" / MODEL_DIR,
            data,
            tmp_path / "rl2",
            2,
            retrospective_from=[str(tmp_path / "rl1")],
            retrospective_share=0.5,
        )
    )
    rows = pq.read_table(tmp_path / "rl2" / TRAIN_DATA_FILE).to_pylist()
    drawn = [r for r in rows if r["retrospective"]]
    own = [r for r in rows if not r["retrospective"]]
    hard = [i for i, d in difficulties.items() if d > 0]
    assert len(drawn) == min(round(0.5 * len(own)), len(hard))
    assert all(difficulties[r["id"]] > 0 for r in drawn)
    assert phase2["curriculum"]["retrospective_drawn"] == len(drawn)
    assert json.loads((tmp_path / "rl2" / RESULT_FILE).read_text())["step"] == "rl-phase2"


RESUME_SCRIPT = """
import sys, json
from longrl.train.config import RLStepConfig
from longrl.train.rl import run_rl
run_rl(RLStepConfig.model_validate_json(open(sys.argv[1]).read()))
"""


def test_a_killed_phase_resumes_from_its_last_checkpoint(tiny_model_dir, data, tmp_path) -> None:
    out = tmp_path / "rl"
    config = rl_config(tiny_model_dir, data, out, 1, max_steps=8, save_steps=2, save_total_limit=3)
    config_file = tmp_path / "config.json"
    config_file.write_text(config.model_dump_json())
    process = subprocess.Popen(
        [sys.executable, "-c", RESUME_SCRIPT, str(config_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while (
        latest_checkpoint(out / CHECKPOINTS_DIR) is None
        or latest_checkpoint(out / CHECKPOINTS_DIR).endswith("-2") is False
    ):
        assert process.poll() is None, "the phase ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the phase dies half-way, like a preempted pod
    process.wait()
    assert not (out / RESULT_FILE).exists()
    killed_at = int(latest_checkpoint(out / CHECKPOINTS_DIR).rsplit("-", 1)[1])
    assert 2 <= killed_at < 8

    result = run_rl(config)
    assert result["global_step"] == 8
    history = json.loads((Path(latest_checkpoint(out / CHECKPOINTS_DIR)) / "trainer_state.json").read_text())
    steps_logged = [entry["step"] for entry in history["log_history"] if "loss" in entry]
    assert steps_logged == sorted(set(steps_logged))  # no step trained twice
    samples = sum(r["samples"] for r in read_difficulty(out / DIFFICULTY_FILE).values())
    # 8 steps x 2 prompts x 8 completions, at least: the killed run's records came back from its checkpoint
    assert samples >= 8 * 2 * 8


def test_the_ray_entrypoint_through_the_local_launcher_with_s3_and_mlflow(
    tiny_model_dir, data, tmp_path, s3_endpoint, monkeypatch
) -> None:
    import mlflow

    from longrl import storage
    from longrl.launchers import LocalLauncher

    storage.copy_tree(str(tiny_model_dir), "s3://longrl/base-model")
    storage.copy_file(str(data / "sft/train-phase1.parquet"), "s3://longrl/data/sft.parquet")
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    config = sft_config(
        "s3://longrl/base-model",
        data,
        "s3://longrl/runs/1/sft",
        train_file="s3://longrl/data/sft.parquet",
        validation_file=None,
        save_steps=2,
        tracking=TrackingConfig(tracking_uri=tracking_uri, experiment="it", run_name="sft"),
    )
    lines: list[str] = []
    result = LocalLauncher(log=lines.append).run("sft", config)
    assert result["global_step"] == 4
    files = set(storage.list_files("s3://longrl/runs/1/sft"))
    assert {"model/model.safetensors", "model/tokenizer.json", "result.json", "metrics.jsonl"} <= files
    assert any(f.startswith("checkpoints/checkpoint-2/") for f in files)  # pushed while training
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("it").experiment_id])
    assert run.info.run_name == "sft" and run.info.status == "FINISHED"
    assert "train/loss" in run.data.metrics
    assert run.data.params["learning_rate"] == str(config.learning_rate)

    # a re-run of the finished step (an s3:// step staged to local paths) finds its result: nothing trains
    again: list[str] = []
    assert LocalLauncher(log=again.append).run("sft", config) == result
    assert any("already holds this step's result" in line for line in again)
    assert not any("starting a local Ray" in line for line in again)
