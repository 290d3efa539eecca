"""The command lines: every problem on one line, exit code 2, in seconds, no Ray; --debug shows the traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.preflight.conftest import prepared_rows, write_table

CLI_SECONDS = 15.0  # interpreter start and imports included (about 2 s on an idle machine)


def run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Runs ``python -m ...`` with its own RAY_TMPDIR; fails if Ray left a session there."""
    ray_tmp = cwd / "ray-tmp"
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    assert not ray_tmp.exists(), "Ray was started"
    return done, elapsed


def test_train_rl_with_missing_model_and_data(tmp_path) -> None:
    done, elapsed = run(
        [
            "longrl.train",
            "rl",
            "--preset",
            "tiny",
            "--model",
            "missing-model",
            "--output-dir",
            "build/x",
            "--train-file",
            "nope.parquet",
        ],
        tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: rl step: not started, 2 problems to fix first:",
        "  --model missing-model: no such directory: give a Hugging Face model directory (config.json, "
        "tokenizer files, weights) or an s3:// URI",
        "  --train-file nope.parquet: no such file: give the phase's prepared file (python -m longrl.data "
        "prepare writes train-phase<k>.parquet)",
    ]
    assert elapsed < CLI_SECONDS, elapsed
    assert not (tmp_path / "build").exists()


def test_debug_shows_the_traceback(tmp_path) -> None:
    args = [
        "longrl.train",
        "sft",
        "--preset",
        "tiny",
        "--model",
        "m",
        "--output-dir",
        "o",
        "--train-file",
        "t",
    ]
    done, _ = run([*args, "--debug"], tmp_path)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "longrl.preflight.PreflightFailed: sft step: not started, 2 problems to fix first:" in done.stderr
    done, _ = run(args, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_train_sft_planner_refusal(tiny_model_dir, tmp_path) -> None:
    """The paper preset on a CPU: refused by the planner, with the other problems."""
    train = write_table(tmp_path / "train.parquet", prepared_rows(sft=True))
    done, elapsed = run(
        ["longrl.train", "sft", "--model", str(tiny_model_dir), "--output-dir", "out", "--train-file", train],
        tmp_path,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "error: sft step: not started, 1 problem to fix first:"
    assert lines[1].startswith(
        "  --engine auto on CPU: the planner refuses this step: this step runs on CPUs"
    )
    assert len(lines) == 2 and elapsed < CLI_SECONDS


def test_evaluation_run(tmp_path) -> None:
    done, elapsed = run(
        [
            "longrl.evaluation",
            "run",
            "--model",
            "missing-model",
            "--output-dir",
            "eval",
            "--benchmarks",
            '{"hotpotqa": "hotpotqa.jsonl", "docmath": "docmath.csv"}',
            "--baseline",
            "earlier-eval",
        ],
        tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: evaluation: not started, 4 problems to fix first:",
        "  --model missing-model: no such directory: give a Hugging Face model directory (config.json, "
        "tokenizer files, weights) or an s3:// URI",
        "  --benchmarks.hotpotqa hotpotqa.jsonl: no such file: give the benchmark's file",
        "  --benchmarks.docmath docmath.csv: unknown file type: give a file ending in .jsonl, .json, .ndjson, "
        ".parquet, .pq",
        "  --baseline earlier-eval: no such directory: give the output directory of an earlier evaluation",
    ]
    assert elapsed < CLI_SECONDS


def test_serving_with_missing_model_and_busy_port(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done, elapsed = run(["longrl.serving", "--model", "missing-model", "--port", str(port)], tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "error: verifier: not started, 2 problems to fix first:"
    assert lines[1].startswith("  --model missing-model: no such directory")
    assert lines[2].startswith(f"  --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)")
    assert elapsed < CLI_SECONDS
