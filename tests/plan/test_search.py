"""``auto``: the cheapest placement that fits, fixed fields kept, engines restricted, refusals with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from longrl.plan import BUILTIN_SHAPES, Hardware, Workload, auto, estimate
from longrl.plan.search import HEADROOM

FIXTURES = Path(__file__).parent / "fixtures"
Q7 = BUILTIN_SHAPES["Qwen/Qwen2.5-7B"]
Q32 = BUILTIN_SHAPES["deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"]
RL_60K = Workload(kind="rl", prompt_tokens=60_000, response_tokens=10_000)
EIGHT_H100 = Hardware(nodes=1, gpus_per_node=8, gpu_memory_gib=80)
FOUR_NODES = Hardware(nodes=4, gpus_per_node=8, gpu_memory_gib=80)


def test_a_7b_model_at_60k_fits_one_node_of_eight() -> None:
    plan = auto(Q7, RL_60K, EIGHT_H100)
    assert plan.fits and plan.engine == "trl"  # fits without sequence parallelism: TRL
    assert plan.parallelism.sharding == "zero3" and plan.parallelism.gradient_checkpointing
    assert plan.estimate.peak_gib_per_gpu <= (1 - HEADROOM) * 80
    assert plan.estimate == estimate(Q7, RL_60K, EIGHT_H100, plan.engine, plan.parallelism)


def test_the_papers_32b_at_60k_on_4x8_needs_verl_with_sequence_parallelism() -> None:
    plan = auto(Q32, RL_60K, FOUR_NODES)
    assert plan.fits and plan.engine == "verl"
    assert plan.parallelism.sharding == "fsdp" and plan.parallelism.sequence_parallel > 1
    assert not auto(Q32, RL_60K, FOUR_NODES, engine="trl").fits


def test_fixed_fields_are_kept() -> None:
    fixed = {"sequence_parallel": 8, "rollout_tensor_parallel": 4, "rollout_memory_fraction": 0.5}
    plan = auto(Q32, RL_60K, FOUR_NODES, fixed=fixed)
    assert plan.fits
    assert {name: getattr(plan.parallelism, name) for name in fixed} == fixed


def test_the_engine_restriction_is_kept() -> None:
    plan = auto(Q7, RL_60K, EIGHT_H100, engine="verl")
    assert plan.fits and plan.engine == "verl" and plan.parallelism.sharding == "fsdp"


def test_with_everything_fixed_auto_is_the_estimate_and_idempotent() -> None:
    first = auto(Q32, RL_60K, FOUR_NODES)
    fixed = first.parallelism.model_dump()
    again = auto(Q32, RL_60K, FOUR_NODES, engine=first.engine, fixed=fixed)
    assert again.fits and again.parallelism == first.parallelism and again.placements_considered == 1
    assert again.estimate.peak_gib_per_gpu == first.estimate.peak_gib_per_gpu


def test_an_impossible_request_names_what_to_add() -> None:
    plan = auto(Q32, RL_60K, EIGHT_H100)
    assert not plan.fits and plan.engine is None and plan.parallelism is None
    assert plan.min_gpus is not None and plan.min_gpus > 8 and plan.min_gpus % 8 == 0
    assert f"needs at least {plan.min_gpus} x 80 GiB GPUs" in plan.reason
    assert "shorter phase" in plan.reason
    assert auto(Q32, RL_60K, Hardware(nodes=plan.min_gpus // 8, gpus_per_node=8)).fits
    assert not auto(Q32, RL_60K, Hardware(nodes=plan.min_gpus // 8 - 1, gpus_per_node=8)).fits
    # the closest placement, for the record: TRL with everything offloaded, over the planner's 90% line
    assert plan.estimate is not None and plan.estimate.peak_gib_per_gpu > (1 - HEADROOM) * 80


def test_a_fixed_setting_in_the_way_is_named() -> None:
    plan = auto(Q32, RL_60K, FOUR_NODES, fixed={"sequence_parallel": 1})
    assert not plan.fits
    assert "without the fixed settings (sequence_parallel=1)" in plan.reason


def test_an_engine_that_cannot_run_the_fixed_layout_says_why() -> None:
    plan = auto(Q7, RL_60K, EIGHT_H100, engine="trl", fixed={"sharding": "fsdp"})
    assert not plan.fits and "engine trl runs sharding ddp or zero3" in plan.reason


def test_unknown_fixed_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="sequence_paralel"):
        auto(Q7, RL_60K, EIGHT_H100, fixed={"sequence_paralel": 2})


def test_gpus_too_small_for_the_model_itself() -> None:
    plan = auto(Q32, RL_60K, Hardware(nodes=1, gpus_per_node=1, gpu_memory_gib=8))
    assert not plan.fits and plan.reason


def test_the_step_planner_resolves_twice_to_the_same_placement(tmp_path: Path) -> None:
    """train.planning (the caller) replaces the config's parallelism with the plan's, and may resolve again."""
    from longrl.train.config import RLStepConfig
    from longrl.train.planning import resolve

    config = RLStepConfig(
        model=str(FIXTURES / "DeepSeek-R1-Distill-Qwen-32B.json"),
        output_dir=str(tmp_path),
        train_file=str(tmp_path / "unused.parquet"),
        reward="rule",
        max_prompt_tokens=60_000,
        max_completion_length=10_000,
        per_device_train_batch_size=1,
        ray={"num_workers": 32, "use_gpu": True, "gpus_per_node": 8, "gpu_memory_gib": 80},
    )
    first = resolve("rl", config)
    second = resolve("rl", first.config)
    assert first.config.engine == second.config.engine == "verl"
    assert first.config.parallelism == second.config.parallelism
    assert second.plan.estimate.peak_gib_per_gpu == first.plan.estimate.peak_gib_per_gpu


def test_when_cpu_memory_keeps_offloading_out_the_reason_says_how_much_a_node_needs() -> None:
    workload = Workload(kind="rl", prompt_tokens=20_000, response_tokens=10_240)
    small_pods = EIGHT_H100.model_copy(update={"cpu_memory_gib_per_node": 512})
    plan = auto(Q32, workload, small_pods)
    assert not plan.fits
    unchecked = auto(Q32, workload, EIGHT_H100)
    assert unchecked.fits and unchecked.estimate.cpu_gib_per_node > 512
    needed = -(-unchecked.estimate.cpu_gib_per_node // 1)
    assert f"at least {needed:.0f} GiB of CPU memory instead of 512" in plan.reason
    roomy = EIGHT_H100.model_copy(update={"cpu_memory_gib_per_node": needed})
    assert auto(Q32, workload, roomy).fits


def test_sft_is_never_planned_on_verl() -> None:
    sft_60k = Workload(kind="sft", prompt_tokens=61_440)
    plan = auto(Q32, sft_60k, FOUR_NODES)
    assert plan.engine != "verl"
    forced = auto(Q32, sft_60k, FOUR_NODES, engine="verl")
    assert not forced.fits and "engine verl trains RL phases; SFT uses engine trl" in forced.reason
