"""``python -m longrl.plan``: the contract scripts and CI rely on (flags, JSON keys, exit codes, messages)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from longrl.plan.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
R1_32B = str(FIXTURES / "DeepSeek-R1-Distill-Qwen-32B.json")
WORKLOAD = ["--kind", "rl", "--prompt-tokens", "60000", "--response-tokens", "10000"]
QWENLONG_L1 = [
    "--nodes", "4", "--gpus-per-node", "8", "--gpu-memory-gib", "80", "--sharding", "fsdp", "--offload-params",
    "--offload-optimizer", "--sequence-parallel", "8", "--micro-batch-tokens", "80000",
    "--rollout-tensor-parallel", "4", "--rollout-memory-fraction", "0.5",
]  # fmt: skip


def _plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "longrl.plan", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_estimate_json_has_the_contract_keys() -> None:
    result = _plan("estimate", "--model-config", R1_32B, *WORKLOAD, *QWENLONG_L1, "--json")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["fits"] is True
    assert isinstance(verdict["peak_gib_per_gpu"], float) and verdict["peak_gib_per_gpu"] < 80
    assert {"weights", "activations", "loss", "rollout_vllm_kv_cache"} <= set(verdict["breakdown"])
    assert verdict["engine"] == "verl"  # derived from --sharding fsdp


def test_auto_that_does_not_fit_exits_0_with_a_reason() -> None:
    result = _plan("auto", "--model-config", R1_32B, *WORKLOAD, "--nodes", "1", "--json")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["fits"] is False and "needs at least" in verdict["reason"]
    assert verdict["min_gpus"] >= 16


def test_auto_keeps_the_flags_given_fixed() -> None:
    args = ["auto", "--model-config", R1_32B, *WORKLOAD, "--nodes", "4", "--sequence-parallel", "8", "--json"]
    verdict = json.loads(_plan(*args).stdout)
    assert verdict["fits"] is True and verdict["engine"] == "verl"
    assert verdict["placement"]["sequence_parallel"] == 8
    assert {"peak_gib_per_gpu", "breakdown"} <= set(verdict)


def test_text_output_is_a_table() -> None:
    assert main(["estimate", "--model-config", R1_32B, *WORKLOAD, *QWENLONG_L1]) == 0
    assert main(["auto", "--model-config", "Qwen/Qwen2.5-7B", *WORKLOAD]) == 0


def test_text_output_reads(capsys: pytest.CaptureFixture[str]) -> None:
    main(["estimate", "--model-config", R1_32B, *WORKLOAD, *QWENLONG_L1, "--no-gradient-checkpointing"])
    out = capsys.readouterr().out
    assert out.startswith("fits: false")
    assert "no checkpointing" in out and "activations" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model-config", "/no/such/model", *WORKLOAD, "--sharding", "ddp"],
            "--model-config /no/such/model",
        ),
        (
            ["--model-config", R1_32B, "--kind", "rl", "--prompt-tokens", "0", "--sharding", "ddp"],
            "--prompt-tokens",
        ),
        (["--model-config", R1_32B, *WORKLOAD, "--sharding", "ddp", "--nodes", "two"], "--nodes"),
        (["--model-config", R1_32B, *WORKLOAD, "--sharding", "zero2"], "--sharding"),
        (
            ["--model-config", R1_32B, *WORKLOAD, "--sharding", "ddp", "--rollout-memory-fraction", "1.5"],
            "--rollout-memory-fraction",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_option(args: list[str], message: str) -> None:
    result = _plan("estimate", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_a_config_without_hidden_size_names_the_file_and_key(tmp_path: Path) -> None:
    config = json.loads(Path(R1_32B).read_text())
    del config["hidden_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = _plan("auto", "--model-config", str(tmp_path), *WORKLOAD)
    assert result.returncode == 2
    assert str(tmp_path) in result.stderr and "hidden_size" in result.stderr


def test_help_explains_every_flag() -> None:
    result = _plan("estimate", "--help")
    assert result.returncode == 0
    for flag in (
        "--model-config", "--kind", "--prompt-tokens", "--response-tokens", "--nodes", "--gpus-per-node",
        "--gpu-memory-gib", "--sharding", "--offload-params", "--offload-optimizer", "--sequence-parallel",
        "--micro-batch-tokens", "--no-gradient-checkpointing", "--fused-loss", "--rollout-tensor-parallel",
        "--rollout-memory-fraction", "--json", "--engine",
    ):  # fmt: skip
        assert flag in result.stdout


def test_table_covers_four_models_two_lengths_three_gpu_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["table", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 * 2 * 3
    by_key = {(row["model"], row["prompt_tokens"], row["gpus"]): row for row in rows}
    assert by_key[("Qwen/Qwen2.5-7B", 60_000, 8)]["fits"]
    assert by_key[("Qwen/Qwen2.5-32B", 60_000, 32)]["engine"] == "verl"
    assert not by_key[("Qwen/Qwen2.5-32B", 60_000, 8)]["fits"]
