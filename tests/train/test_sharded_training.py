"""The trl engine sharded with DeepSpeed ZeRO-3: what TRL and DeepSpeed receive from a ``Parallelism``
(fast), and real sharded training of the tiny model over gloo with 2 ranks (slow): SFT and an RL
phase through ``run_step`` on Ray, a kill and resume, and agreement with the unsharded run."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from longrl import storage
from longrl.curriculum import DIFFICULTY_FILE, read_difficulty
from longrl.plan.placement import Parallelism
from longrl.tracking import read_metrics
from longrl.train.callbacks import DIFFICULTY_STATE_FILE, restore_difficulty
from longrl.train.checkpoints import (
    CHECKPOINTS_DIR,
    COMPLETE_MARKER,
    MODEL_DIR,
    RESULT_FILE,
    latest_checkpoint,
)
from longrl.train.config import RLStepConfig, with_overrides
from longrl.train.engines.trl_deepspeed import (
    SHARDING_DIR,
    ShardingNotApplied,
    check_sharding,
    deepspeed_config,
)
from tests.train.step_configs import rl_config, sft_config

# Relative difference allowed between ZeRO-3 and DDP grad norms and final weights: the same fp32
# arithmetic, reduced in a different order (DESIGN.md measured 2e-5 for grad norms).
SHARDED_TOLERANCE = 1e-4
TWO_RANKS = {"num_workers": 2}


# ----- what TRL / DeepSpeed receive (fast) ------------------------------------------------------


@pytest.fixture
def forget_deepspeed():
    """TrainingArguments with a DeepSpeed config switch transformers to ZeRO-3 loading process-wide."""
    yield
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def test_deepspeed_config_is_zero3_with_auto_values_and_a_gathered_save() -> None:
    config = deepspeed_config(Parallelism(sharding="zero3"))
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "offload_param" not in zero and "offload_optimizer" not in zero and "optimizer" not in config
    assert config["bf16"] == {"enabled": "auto"}
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert config[key] == "auto"

    offloaded = deepspeed_config(Parallelism(sharding="zero3", offload_params=True, offload_optimizer=True))
    assert offloaded["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert offloaded["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    # ZeRO-Offload steps with DeepSpeed's CPU Adam, so the optimizer is DeepSpeed's, filled from the trainer
    assert offloaded["optimizer"] == {
        "type": "AdamW",
        "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
    }


def test_sft_config_on_zero3_with_a_token_budget(tiny_model_dir, tmp_path, forget_deepspeed) -> None:
    from longrl.train.sft import sft_arguments

    config = sft_config(
        tiny_model_dir,
        tmp_path,
        tmp_path / "sft",
        max_length=512,
        max_grad_norm=0.5,
        parallelism={"sharding": "zero3", "micro_batch_tokens": 2048, "gradient_checkpointing": True},
    )
    args = sft_arguments(config, "<|im_end|>")
    assert args.packing and args.packing_strategy == "bfd" and args.padding_free
    assert args.max_length == 2048 and args.per_device_train_batch_size == 1
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    filled = args.hf_deepspeed_config.config  # transformers replaced every "auto" it owns
    assert filled["train_micro_batch_size_per_gpu"] == 1
    assert filled["gradient_accumulation_steps"] == config.gradient_accumulation_steps
    assert filled["gradient_clipping"] == 0.5
    assert filled["bf16"]["enabled"] is False
    assert args.use_cpu

    too_small = config.model_copy(
        update={"parallelism": Parallelism(sharding="zero3", micro_batch_tokens=256)}
    )
    with pytest.raises(ValueError, match=r"micro_batch_tokens \(256\) is below max_length \(512\)"):
        sft_arguments(too_small, "<|im_end|>")


def gpu_rl_config(tmp_path, use_gpu=True, **parallelism):
    return with_overrides(
        RLStepConfig,
        {},
        {
            "model": str(tmp_path / "model"),
            "output_dir": str(tmp_path / "rl"),
            "train_file": str(tmp_path / "train-phase2.parquet"),
            "reward": "rule",
            "use_vllm": True,
            "bf16": True,
            "attn_implementation": "flash_attention_2",
            "ray": {"num_workers": 16, "use_gpu": use_gpu, "gpus_per_node": 8},
            "parallelism": {"sharding": "zero3", "rollout_tensor_parallel": 4, **parallelism},
        },
    )


def test_the_gpu_grpo_config_trl_receives(tmp_path, monkeypatch, forget_deepspeed) -> None:
    import transformers.training_args

    from longrl.train.rl import grpo_arguments

    # This machine has no GPU; transformers' bf16 check is the only thing that looks for one.
    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)
    config = gpu_rl_config(
        tmp_path,
        offload_params=True,
        offload_optimizer=True,
        micro_batch_tokens=150_000,
        rollout_memory_fraction=0.45,
    )
    args = grpo_arguments(config, prompt_tokens=60_000)  # TRL's own __post_init__ validation runs here

    # vLLM colocated in every training process: tensor parallel 4, asleep while the policy trains
    assert args.use_vllm and args.vllm_mode == "colocate"
    assert args.vllm_tensor_parallel_size == 4
    assert args.vllm_gpu_memory_utilization == 0.45
    assert args.vllm_enable_sleep_mode
    assert args.vllm_max_model_length == 60_000 + config.max_completion_length
    # 150K tokens fit two 70K-token completions; 128 prompts x 8 / 16 workers = 64 per worker
    assert args.per_device_train_batch_size == 2 and args.gradient_accumulation_steps == 32
    assert args.steps_per_generation == 32  # a worker's 64 completions generated at once, trained 2 by 2
    # bf16 compute with fp32 master weights in DeepSpeed, parameters and optimizer states offloaded
    assert args.bf16 and not args.use_cpu
    assert args.model_init_kwargs == {"dtype": "bfloat16", "attn_implementation": "flash_attention_2"}
    zero = args.hf_deepspeed_config.config["zero_optimization"]
    assert zero["offload_param"]["device"] == "cpu" and zero["offload_optimizer"]["device"] == "cpu"
    assert args.hf_deepspeed_config.config["bf16"]["enabled"] is True
    assert args.gradient_checkpointing
    # the recipe: DAPO loss, clip-higher, no KL
    assert args.loss_type == "dapo" and args.epsilon == 0.2 and args.epsilon_high == 0.28 and args.beta == 0.0


def test_rollout_layouts_trl_cannot_run_are_refused_before_any_worker(tmp_path) -> None:
    from longrl.train.engines.trl import preflight

    with pytest.raises(ValueError, match=r"rollout_tensor_parallel \(3\) must divide ray.num_workers \(16\)"):
        preflight("rl", gpu_rl_config(tmp_path, rollout_tensor_parallel=3))
    on_cpu = gpu_rl_config(tmp_path, use_gpu=False)
    with pytest.raises(ValueError, match="set use_vllm=false on a CPU"):
        preflight("rl", on_cpu)
    fused = on_cpu.model_copy(update={"use_vllm": False, "parallelism": Parallelism(fused_loss=True)})
    with pytest.raises(ValueError, match="set parallelism.fused_loss=false on a CPU"):
        preflight("rl", fused)
    fsdp = on_cpu.model_copy(update={"use_vllm": False, "parallelism": Parallelism(sharding="fsdp")})
    with pytest.raises(ValueError, match="engine trl runs sharding ddp or zero3, not fsdp"):
        preflight("rl", fsdp)


def test_the_drivers_checks_import_no_ml_library(tmp_path) -> None:
    """The driver checks a step's layout before any worker starts; importing torch and TRL there cost each
    local RL phase ~10 s before Ray could start its workers."""
    config = gpu_rl_config(tmp_path, use_gpu=False).model_copy(update={"use_vllm": False})
    script = (
        "import sys\n"
        "from longrl.train.config import RLStepConfig\n"
        "from longrl.train.engines.trl import preflight\n"
        f"config = RLStepConfig.model_validate_json({config.model_dump_json()!r})\n"
        "preflight('rl', config)\n"
        "preflight('sft', config)\n"
        "print(sorted(m for m in ('torch', 'trl', 'transformers', 'vllm', 'deepspeed') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_rl_micro_batches_follow_the_token_budget(tmp_path) -> None:
    from longrl.train.arguments import completions_per_pass

    def per_pass(budget, prompt_tokens):
        return completions_per_pass(gpu_rl_config(tmp_path, micro_batch_tokens=budget), prompt_tokens)

    assert per_pass(10_000, 60_000) == 1  # one 70K sequence is more than the budget: still one
    assert per_pass(700_000, 60_000) == 8  # ten fit, but a worker's 64 completions split evenly by 8
    assert per_pass(10_000_000, 1_000) == 64  # never more than a worker's share of the step
    assert (
        completions_per_pass(gpu_rl_config(tmp_path), 60_000) == 8
    )  # no budget: per_device_train_batch_size


def test_a_ddp_fallback_fails_loudly() -> None:
    fell_back = {
        "rank": 1,
        "world_size": 2,
        "distributed_type": "MULTI_CPU",
        "zero_stage": None,
        "parameters": 26,
        "partitioned_parameters": 0,
    }
    with pytest.raises(ShardingNotApplied, match="rank 1: accelerate runs MULTI_CPU .* 26 of 26 parameters"):
        check_sharding(fell_back, "zero3")
    check_sharding(fell_back, "ddp")  # what DDP is meant to look like


def test_only_checkpoints_marked_complete_are_resumed(tmp_path) -> None:
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoint-2" / COMPLETE_MARKER).write_text("2\n")
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")  # 4 was cut off mid-save


class NeverTrains:
    state = None

    def train(self, resume_from_checkpoint=None):
        raise AssertionError("trained again")


def test_a_step_killed_after_its_last_checkpoint_trains_no_more(tmp_path) -> None:
    from longrl.train.common import train

    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(
        json.dumps({"global_step": 4, "max_steps": 4, "log_history": []})
    )
    trainer = NeverTrains()
    assert train(trainer, str(checkpoint)) == str(checkpoint)  # the model comes from the checkpoint
    assert trainer.state.global_step == 4


def test_difficulty_of_every_saved_rank_comes_back_with_fewer_ranks(tmp_path) -> None:
    from longrl.curriculum import DifficultyRecorder

    for rank in range(3):
        (tmp_path / f"{DIFFICULTY_STATE_FILE}.rank{rank}").write_text(
            json.dumps({f"q{rank}": [float(rank), 8]})
        )
    recorder = DifficultyRecorder()
    restore_difficulty(recorder, str(tmp_path))  # a lone process: rank 0 of a world of one
    assert recorder.state() == {"q0": (0.0, 8), "q1": (1.0, 8), "q2": (2.0, 8)}


# ----- real sharded training over gloo (slow) ---------------------------------------------------


def rank_reports(output_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((output_dir / SHARDING_DIR).glob("rank*.json"))]


def assert_partitioned(output_dir: Path) -> None:
    reports = rank_reports(output_dir)
    assert [r["rank"] for r in reports] == [0, 1]
    for report in reports:
        assert report["distributed_type"] == "DEEPSPEED" and report["zero_stage"] == 3
        assert report["partitioned_parameters"] == report["parameters"] > 0
        assert report["visible_numel"] == 0  # outside a forward pass a rank sees no whole parameter
        assert report["local_numel"] <= math.ceil(report["full_numel"] / 2) + report["parameters"]


def grad_norms(output_dir: Path) -> list[float]:
    return [m["train/grad_norm"] for m in read_metrics(output_dir) if "train/grad_norm" in m]


def assert_loadable_and_validated(output_dir: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = json.loads((output_dir / RESULT_FILE).read_text())
    assert result["validation"]["val/examples"] == 4.0  # scored after training, on rank 0, no hang
    assert {"val/accuracy", "val/answered", "val/mean_response_tokens"} <= set(result["validation"])
    model = AutoModelForCausalLM.from_pretrained(output_dir / MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(output_dir / MODEL_DIR)
    assert all(p.numel() > 0 for p in model.parameters())  # whole tensors, gathered from the shards
    out = model.generate(**tokenizer("Question:", return_tensors="pt"), max_new_tokens=2, do_sample=False)
    assert out.shape[1] > 2
    return result


@pytest.fixture(scope="module")
def local_ray():
    import ray

    yield
    ray.shutdown()


@pytest.mark.slow
def test_sft_and_an_rl_phase_sharded_over_two_ray_workers(
    tiny_model_dir, data, tmp_path, s3_endpoint, monkeypatch, local_ray
) -> None:
    from safetensors.torch import load_file

    from longrl.train.runner import run_step

    # set before Ray starts: its workers inherit the environment (S3 endpoint, staging cache)
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    # sequences packed padding-free into micro-batches of 1024 tokens
    zero3 = {"sharding": "zero3", "micro_batch_tokens": 1024, "gradient_checkpointing": False}
    sft = sft_config(tiny_model_dir, data, tmp_path / "sft", ray=TWO_RANKS, parallelism=zero3, save_steps=2)
    assert run_step("sft", sft)["global_step"] == 4
    assert_partitioned(tmp_path / "sft")
    assert_loadable_and_validated(tmp_path / "sft")

    # the unsharded run: same seed, same data order, same entrypoint
    ddp = sft.model_copy(
        update={
            "output_dir": str(tmp_path / "ddp"),
            "parallelism": Parallelism(micro_batch_tokens=1024, gradient_checkpointing=False),
        }
    )
    run_step("sft", ddp)
    assert {r["distributed_type"] for r in rank_reports(tmp_path / "ddp")} == {"MULTI_CPU"}
    sharded, whole = grad_norms(tmp_path / "sft"), grad_norms(tmp_path / "ddp")
    assert len(sharded) == len(whole) == 4
    assert all(abs(s - w) <= SHARDED_TOLERANCE * w for s, w in zip(sharded, whole, strict=True)), (
        sharded,
        whole,
    )
    sharded_weights = load_file(tmp_path / "sft" / MODEL_DIR / "model.safetensors")
    whole_weights = load_file(tmp_path / "ddp" / MODEL_DIR / "model.safetensors")
    assert sharded_weights.keys() == whole_weights.keys()
    for name, tensor in whole_weights.items():
        difference = (sharded_weights[name] - tensor).norm() / tensor.norm()
        assert difference <= SHARDED_TOLERANCE, (name, float(difference))

    # an RL phase from the sharded SFT model, with gradient checkpointing, its outputs in S3
    remote = "s3://longrl/runs/rl"
    rl = rl_config(
        tmp_path / "sft" / MODEL_DIR,
        data,
        remote,
        1,
        max_steps=2,
        save_steps=1,
        max_generation_rounds=2,
        per_device_train_batch_size=8,
        ray=TWO_RANKS,
        parallelism={"sharding": "zero3", "gradient_checkpointing": True},
    )
    assert run_step("rl", rl)["global_step"] == 2
    pushed = set(storage.list_files(remote))
    checkpoint = f"{CHECKPOINTS_DIR}/checkpoint-2"
    assert {
        f"{checkpoint}/{COMPLETE_MARKER}",
        f"{checkpoint}/{DIFFICULTY_STATE_FILE}",
        f"{SHARDING_DIR}/rank0.json",
        f"{SHARDING_DIR}/rank1.json",
        DIFFICULTY_FILE,
        RESULT_FILE,
    } <= pushed
    assert any(
        f.startswith(f"{checkpoint}/global_step2/") and "rank_1" in f for f in pushed
    )  # rank 1's shards
    out = storage.localize(remote)
    assert_partitioned(out)
    assert_loadable_and_validated(out)
    # the last checkpoint holds both ranks' records, gathered into rank 0's part: the phase's record
    saved = json.loads((out / checkpoint / DIFFICULTY_STATE_FILE).read_text())
    assert saved
    merged = read_difficulty(out / DIFFICULTY_FILE)
    assert {prompt_id: record["samples"] for prompt_id, record in merged.items()} == {
        prompt_id: n for prompt_id, (_, n) in saved.items()
    }


RESUME_SCRIPT = """
import os, sys
from longrl.train.config import RLStepConfig
from longrl.train.runner import run_step_here
config = RLStepConfig.model_validate_json(open(sys.argv[1]).read())
run_step_here("rl", config, is_rank_zero=os.environ["RANK"] == "0")
"""


def two_ranks(script: Path, config_file: Path, log: Path) -> list[subprocess.Popen]:
    """Rank 0 and rank 1 of a gloo job, in one new process group that rank 0 leads."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    command = [sys.executable, str(script), str(config_file)]
    output = log.open("w")
    ranks: list[subprocess.Popen] = []
    for rank in (0, 1):
        ranks.append(
            subprocess.Popen(
                command,
                env=env | {"RANK": str(rank), "LOCAL_RANK": str(rank)},
                stdout=output,
                stderr=subprocess.STDOUT,
                process_group=ranks[0].pid if ranks else 0,
            )
        )
    return ranks


def exit_codes(ranks: list[subprocess.Popen], timeout: float) -> list[int]:
    return [rank.wait(timeout=timeout) for rank in ranks]


@pytest.mark.slow
def test_a_killed_sharded_phase_resumes_from_its_checkpoint(tiny_model_dir, data, tmp_path) -> None:
    STEPS = 4  # noqa: N806 - killed after checkpoint-2, resumed for steps 3 and 4
    out = tmp_path / "rl"
    config = rl_config(
        tiny_model_dir,
        data,
        out,
        1,
        max_steps=STEPS,
        save_steps=2,
        save_total_limit=3,
        max_generation_rounds=1,
        per_device_train_batch_size=8,
        bf16=True,
        ray=TWO_RANKS,
        parallelism={"sharding": "zero3", "gradient_checkpointing": False},
    )
    config_file, script = tmp_path / "config.json", tmp_path / "phase.py"
    config_file.write_text(config.model_dump_json())
    script.write_text(RESUME_SCRIPT)
    ranks = two_ranks(script, config_file, tmp_path / "killed.log")
    deadline = time.monotonic() + 300
    while latest_checkpoint(out / CHECKPOINTS_DIR) is None:
        assert all(rank.poll() is None for rank in ranks), (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(ranks[0].pid, signal.SIGKILL)  # every rank dies at once, like a preempted pod
    assert exit_codes(ranks, 60) == [-signal.SIGKILL] * 2
    assert not (out / RESULT_FILE).exists()
    killed_at = int(latest_checkpoint(out / CHECKPOINTS_DIR).rsplit("-", 1)[1])
    assert killed_at == 2
    assert list((Path(latest_checkpoint(out / CHECKPOINTS_DIR)) / f"global_step{killed_at}").glob("*rank_1*"))

    resumed = two_ranks(script, config_file, tmp_path / "resumed.log")
    assert exit_codes(resumed, 300) == [0, 0], (tmp_path / "resumed.log").read_text()[-3000:]
    result = json.loads((out / RESULT_FILE).read_text())
    assert result["global_step"] == STEPS
    assert_partitioned(out)
    for report in rank_reports(out):  # bf16 compute, fp32 master weights and Adam states in DeepSpeed
        assert report["parameter_dtype"] == "torch.bfloat16"
        assert report["master_weight_dtypes"] == report["optimizer_state_dtypes"] == ["torch.float32"]
    history = json.loads((Path(latest_checkpoint(out / CHECKPOINTS_DIR)) / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in history["log_history"] if "loss" in entry]
    assert steps == list(range(1, STEPS + 1))  # each step trained once
    resumed_steps = [m["step"] for m in read_metrics(out) if "train/loss" in m]
    assert min(resumed_steps[-(STEPS - killed_at) :]) == killed_at + 1  # went on from the checkpoint
    # one group of 8 per rank and step: both ranks' records of steps 1-2 came back from checkpoint-2,
    # and nothing the killed run rolled out after it was counted
    at_kill = out / CHECKPOINTS_DIR / f"checkpoint-{killed_at}"
    assert recorded_samples(at_kill) == killed_at * 2 * 8
    at_end = out / CHECKPOINTS_DIR / f"checkpoint-{STEPS}"
    assert recorded_samples(at_end) == STEPS * 2 * 8
    assert sum(r["samples"] for r in read_difficulty(out / DIFFICULTY_FILE).values()) == STEPS * 2 * 8


def recorded_samples(checkpoint: Path) -> int:
    state = json.loads((checkpoint / DIFFICULTY_STATE_FILE).read_text())
    return sum(n for _, n in state.values())


@pytest.mark.parametrize(
    ("sharding", "bf16", "loaded"),
    [
        ("zero3", True, "bfloat16"),
        ("ddp", True, "float32"),
        ("ddp", False, "float32"),
        ("zero3", False, "float32"),
    ],
)
def test_weights_are_loaded_in_bf16_only_where_fp32_masters_live_elsewhere(
    tmp_path, sharding, bf16, loaded
) -> None:
    from longrl.train.arguments import trainer_arguments

    config = rl_config("model", tmp_path, tmp_path / "out", 1, bf16=bf16, parallelism={"sharding": sharding})
    arguments = trainer_arguments(config)
    assert arguments["model_init_kwargs"]["dtype"] == loaded
    assert arguments["bf16"] is bf16  # unsharded bf16: fp32 weights, bf16 autocast
