"""``python -m longrl.data`` as a user runs it."""

import json
import subprocess
import sys

import pytest

from longrl.data.cli import main


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "longrl.data", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("command", [[], ["generate"], ["tiny-model"], ["prepare"], ["stats"]])
def test_help(command) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: python -m longrl.data" in result.stdout


def test_generate_prepare_stats_round_trip(tmp_path, tiny_model_dir, capsys) -> None:
    qa = tmp_path / "qa.parquet"
    assert (
        main(
            [
                "generate",
                "--output",
                str(qa),
                "--num-records",
                "12",
                "--doc-tokens-min",
                "60",
                "--doc-tokens-max",
                "200",
                "--tokenizer",
                str(tiny_model_dir),
            ]
        )
        == 0
    )
    config = tmp_path / "prepare.yaml"
    config.write_text(f"inputs: [{qa}]\nphase-max-tokens: [2000]\nvalidation_fraction: 0.25\n")
    out = tmp_path / "prepared"
    assert (
        main(
            [
                "prepare",
                "--config",
                str(config),
                "--output-dir",
                str(out),
                "--tokenizer",
                str(tiny_model_dir),
                "--validation-fraction",
                "0.5",
            ]
        )
        == 0
    )
    stats = json.loads((out / "stats.json").read_text())
    assert stats["config"]["validation_fraction"] == 0.5  # the flag beats the file
    assert stats["config"]["phase_max_tokens"] == [2000]  # the file beats the default
    assert stats["validation"]["rows"] == 6
    capsys.readouterr()
    assert main(["stats", str(out)]) == 0
    assert "RL data: 12 examples used of 12 rows read" in capsys.readouterr().out
    assert main(["stats", str(qa), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid_rows"] == 12


def test_bad_input_is_a_message_not_a_traceback(tmp_path, tiny_model_dir) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "data_source": "musique", "context": "c", "question": "q"}\n')
    result = cli(
        "prepare",
        "--inputs",
        str(bad),
        "--output-dir",
        str(tmp_path / "o"),
        "--tokenizer",
        str(tiny_model_dir),
    )
    assert result.returncode == 1
    assert f"{bad}:line 1: field 'answer': is missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_phase_is_a_message_naming_the_option(tmp_path, tiny_model_dir) -> None:
    qa = tmp_path / "qa.jsonl"
    generate = ["generate", "--output", str(qa), "--num-records", "4"]
    assert main([*generate, "--doc-tokens-min", "60", "--doc-tokens-max", "200"]) == 0
    common = ["prepare", "--inputs", str(qa), "--output-dir", str(tmp_path / "o")]
    result = cli(*common, "--tokenizer", str(tiny_model_dir), "--phase-max-tokens", "[20000, 60000]")
    assert result.returncode == 1
    assert "phase 2 (20000 < prompt tokens <= 60000): 0 training row(s)" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


def test_bad_options_exit_2(tmp_path) -> None:
    result = cli(
        "prepare",
        "--inputs",
        "x.jsonl",
        "--output-dir",
        "o",
        "--tokenizer",
        "t",
        "--phase-max-tokens",
        "[5, 1]",
    )
    assert result.returncode == 2
    assert "--phase-max-tokens: must be positive and strictly ascending" in result.stderr
    result = cli("generate", "--output", "x.jsonl", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "no such file" in result.stderr
    result = cli("stats", str(tmp_path))
    assert result.returncode == 1 and "no stats.json" in result.stderr
