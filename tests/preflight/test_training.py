"""Pre-flight checks of the training steps: each class of mistake, its message, no Ray started."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from longrl.preflight import PreflightFailed, require, rl_problems, sft_problems
from longrl.train.config import TINY_RL, TINY_SFT, RLStepConfig, SFTStepConfig, with_overrides
from tests.preflight.conftest import closed_port_url, prepared_rows, write_table


def sft(model: Path | str, data: dict[str, str], tmp_path: Path, **values) -> SFTStepConfig:
    base = {
        "model": str(model),
        "output_dir": str(tmp_path / "out"),
        "train_file": data["sft"],
        "validation_file": data["validation"],
    }
    return with_overrides(SFTStepConfig, TINY_SFT, base | values)


def rl(model: Path | str, data: dict[str, str], tmp_path: Path, **values) -> RLStepConfig:
    base = {
        "model": str(model),
        "output_dir": str(tmp_path / "out"),
        "train_file": data["rl"],
        "validation_file": data["validation"],
    }
    return with_overrides(RLStepConfig, TINY_RL, base | values)


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


# ----- what passes ----------------------------------------------------------------------------------


def test_ready_steps_have_no_problems(tiny_model_dir, data, tmp_path, no_ray) -> None:
    assert sft_problems(sft(tiny_model_dir, data, tmp_path)) == []
    assert rl_problems(rl(tiny_model_dir, data, tmp_path)) == []
    assert not (tmp_path / "out").exists()  # nothing is created by looking


# ----- the model ------------------------------------------------------------------------------------


def test_missing_model_directory(data, tmp_path, no_ray) -> None:
    line = only(sft_problems(sft(tmp_path / "missing-model", data, tmp_path)))
    assert line.startswith(
        f"--model {tmp_path / 'missing-model'}: no such directory: give a Hugging Face model"
    )
    line = only(sft_problems(sft(data["sft"], data, tmp_path)))
    assert "is a file, not a model directory" in line


@pytest.mark.parametrize(
    ("removed", "message"),
    [
        ("config.json", "no config.json"),
        ("tokenizer.json", "no tokenizer files (tokenizer.json, tokenizer.model, vocab.json, vocab.txt)"),
        ("model.safetensors", "no weights (*.safetensors or pytorch_model*.bin)"),
    ],
)
def test_model_directory_missing_a_part(model_copy, data, tmp_path, removed, message, no_ray) -> None:
    (model_copy / removed).unlink()
    line = only(rl_problems(rl(model_copy, data, tmp_path)))
    assert line.startswith(f"--model {model_copy}: {message}")


def test_model_weights_cut_short_or_not_safetensors(model_copy, data, tmp_path, no_ray) -> None:
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert "model.safetensors is cut short" in only(sft_problems(sft(model_copy, data, tmp_path)))
    weights.write_bytes(struct.pack("<Q", 10) + b"not json!!")
    assert "model.safetensors is not a safetensors file" in only(
        sft_problems(sft(model_copy, data, tmp_path))
    )


def test_sharded_model_missing_a_shard(model_copy, data, tmp_path, no_ray) -> None:
    weights = model_copy / "model.safetensors"
    weights.rename(model_copy / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (model_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    line = only(sft_problems(sft(model_copy, data, tmp_path)))
    assert "weight shards missing: model-00002-of-00002.safetensors" in line


def test_hub_name_not_in_the_offline_cache(data, tmp_path, monkeypatch, no_ray) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = only(sft_problems(sft("nobody/no-such-model", data, tmp_path)))
    assert line.startswith(
        "--model nobody/no-such-model: no such directory, and not in the Hugging Face cache"
    )


# ----- the tables -----------------------------------------------------------------------------------


def test_missing_and_unreadable_train_files(tiny_model_dir, data, tmp_path, no_ray) -> None:
    line = only(rl_problems(rl(tiny_model_dir, data, tmp_path, train_file=str(tmp_path / "nope.parquet"))))
    assert line.startswith(
        f"--train-file {tmp_path / 'nope.parquet'}: no such file: give the phase's prepared file"
    )
    (tmp_path / "text.parquet").write_text("id,prompt\n1,hello\n")
    line = only(rl_problems(rl(tiny_model_dir, data, tmp_path, train_file=str(tmp_path / "text.parquet"))))
    assert "text.parquet: not a parquet file" in line
    line = only(sft_problems(sft(tiny_model_dir, data, tmp_path, train_file=str(tmp_path))))
    assert "is a directory, not a parquet file" in line


def test_train_file_without_the_columns_the_step_reads(tiny_model_dir, data, tmp_path, no_ray) -> None:
    line = only(sft_problems(sft(tiny_model_dir, data, tmp_path, train_file=data["rl"])))
    assert "no completion column (it has id, data_source" in line
    assert "python -m longrl.data prepare --sft" in line
    rows = [{k: v for k, v in row.items() if k not in ("answer", "prompt_tokens")} for row in prepared_rows()]
    thin = write_table(tmp_path / "thin.parquet", rows)
    line = only(rl_problems(rl(tiny_model_dir, data, tmp_path, train_file=thin)))
    assert "no answer, prompt_tokens columns" in line
    # given the phase's longest prompt, the step does not read prompt_tokens
    line = only(rl_problems(rl(tiny_model_dir, data, tmp_path, train_file=thin, max_prompt_tokens=500)))
    assert "no answer column" in line


def test_empty_train_file(tiny_model_dir, data, tmp_path, no_ray) -> None:
    schema = write_table(tmp_path / "schema.parquet", prepared_rows(count=1))
    import pyarrow.parquet as pq

    empty = write_table(tmp_path / "empty.parquet", [], schema=pq.read_schema(schema))
    line = only(rl_problems(rl(tiny_model_dir, data, tmp_path, train_file=empty)))
    assert line == f"--train-file {empty}: holds no rows: give the phase's prepared file " + (
        "(python -m longrl.data prepare writes train-phase<k>.parquet)"
    )


def test_rl_rows_outside_the_phase_band(tiny_model_dir, data, tmp_path, no_ray) -> None:
    line = only(rl_problems(rl(tiny_model_dir, data, tmp_path, phase=2)))
    assert line.endswith(
        "holds rows of phase 1, not of phase 2: give train-phase2.parquet or set --phase to the file's phase"
    )
    line = only(rl_problems(rl(tiny_model_dir, data, tmp_path, max_prompt_tokens=104)))
    assert "its longest prompt has 107 tokens, above the phase's band (--max-prompt-tokens 104)" in line


def test_validation_file_problems(tiny_model_dir, data, tmp_path, no_ray) -> None:
    line = only(
        sft_problems(sft(tiny_model_dir, data, tmp_path, validation_file=str(tmp_path / "v.parquet")))
    )
    assert line.startswith(f"--validation-file {tmp_path / 'v.parquet'}: no such file")
    assert "or set validation_max_examples 0" in line
    # not read when validation is off
    config = sft(
        tiny_model_dir, data, tmp_path, validation_file=str(tmp_path / "v.parquet"), validation_max_examples=0
    )
    assert sft_problems(config) == []


def test_retrospective_sources_must_be_finished_phases(tiny_model_dir, data, tmp_path, no_ray) -> None:
    earlier = tmp_path / "phase1"
    earlier.mkdir()
    (earlier / "difficulty.jsonl").write_text("")
    config = rl(tiny_model_dir, data, tmp_path, retrospective_from=[str(earlier), str(tmp_path / "gone")])
    assert rl_problems(config) == [
        f"--retrospective-from {earlier}: has no train_data.parquet: give the output directory of a finished RL phase",
        f"--retrospective-from {tmp_path / 'gone'}: no such directory: give the output directory of a finished RL phase",
    ]


# ----- the output -----------------------------------------------------------------------------------


def test_output_that_cannot_be_written(tiny_model_dir, data, tmp_path, no_ray) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = only(sft_problems(sft(tiny_model_dir, data, tmp_path, output_dir=str(blocker / "out"))))
    assert line == f"--output-dir {blocker / 'out'}: cannot be created: {blocker} is a file"
    line = only(sft_problems(sft(tiny_model_dir, data, tmp_path, output_dir=str(blocker))))
    assert line == f"--output-dir {blocker}: is a file: give a directory"


# ----- the judge ------------------------------------------------------------------------------------


def test_hybrid_reward_needs_a_judge_that_answers(tiny_model_dir, data, tmp_path, judge_url, no_ray) -> None:
    def hybrid(base_url: str, model: str = "verifier") -> RLStepConfig:
        return rl(
            tiny_model_dir, data, tmp_path, reward="hybrid", judge={"base_url": base_url, "model": model}
        )

    assert rl_problems(hybrid(judge_url)) == []
    line = only(rl_problems(hybrid(judge_url, "judge-7b")))
    assert line == (
        f"--judge.model judge-7b: {judge_url}/models serves verifier, not this one: set judge.model to the "
        "verifier's --served-model-name"
    )
    down = closed_port_url()
    line = only(rl_problems(hybrid(down)))
    assert line.startswith(
        f"--judge.base-url {down}: no answer from GET {down}/models (ConnectError): start the"
    )
    # reward=rule asks no judge
    assert (
        rl_problems(rl(tiny_model_dir, data, tmp_path, reward="rule", judge={"base_url": down, "model": "v"}))
        == []
    )


# ----- the placement --------------------------------------------------------------------------------


def test_planner_refusal_and_placement_problems(tiny_model_dir, data, tmp_path, no_ray) -> None:
    line = only(sft_problems(sft(tiny_model_dir, data, tmp_path, attn_implementation="flash_attention_2")))
    assert line.startswith("--engine auto on CPU: the planner refuses this step: this step runs on CPUs")
    assert "flash_attention_2 needs GPUs" in line
    small = {"use_gpu": True, "gpu_memory_gib": 0.01}
    line = only(rl_problems(rl(tiny_model_dir, data, tmp_path, ray=small)))
    assert line.startswith("--engine auto on 1 GPU(s) of 0.01 GiB: the planner refuses this step:")
    assert "use GPUs with more memory" in line
    config = rl(tiny_model_dir, data, tmp_path, ray={"use_gpu": True, "gpu_memory_gib": 80})
    assert rl_problems(config, lambda engine: [f"engine {engine} needs a shared volume"]) == [
        "--engine auto on 1 GPU(s) of 80 GiB: engine trl needs a shared volume"
    ]


# ----- all at once ----------------------------------------------------------------------------------


def test_every_problem_reported_at_once(data, tmp_path, no_ray) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = rl(
        tmp_path / "missing-model",
        data,
        tmp_path,
        output_dir=str(blocker / "out"),
        train_file=str(tmp_path / "nope.parquet"),
        validation_file=data["sft"],
        attn_implementation="flash_attention_2",
    )
    problems = rl_problems(config)
    assert [line.split(" ", 1)[0] for line in problems] == [
        "--model",
        "--output-dir",
        "--train-file",
        "--engine",
    ]
    with pytest.raises(PreflightFailed) as refused:
        require("rl step", problems)
    message = str(refused.value)
    assert message.splitlines()[0] == "rl step: not started, 4 problems to fix first:"
    assert message.splitlines()[1:] == [f"  {line}" for line in problems]
    assert refused.value.problems == problems
