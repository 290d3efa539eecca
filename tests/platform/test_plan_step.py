"""The pipeline's first step: every training step's config built and planned before anything starts."""

import pydantic
import pytest

from longrl.steps import Placement, plan_markdown, plan_training_steps
from longrl.train.planning import PlacementRefused

LOCAL = Placement(launcher="local")


def plan(base_model, placement=LOCAL, preset="tiny", sft=None, rl=None, bounds=(224, 448)):
    return plan_training_steps(base_model, preset, sft or {}, rl or {}, list(bounds), "dapo", placement)


def test_on_the_local_launcher_every_step_runs_trl_on_cpu(tiny_model_dir) -> None:
    rows = plan(str(tiny_model_dir))
    assert [row["step"] for row in rows] == ["sft", "rl-phase1", "rl-phase2"]
    assert {row["engine"] for row in rows} == {"trl"}
    assert {row["gpus"] for row in rows} == {0}
    table = plan_markdown(rows)
    assert "| rl-phase2 | trl | CPU | ddp |" in table


def test_an_unknown_override_key_fails_the_plan_naming_it(tiny_model_dir) -> None:
    with pytest.raises(pydantic.ValidationError, match="learnig_rate"):
        plan(str(tiny_model_dir), rl={"learnig_rate": 1e-6})
    with pytest.raises(pydantic.ValidationError, match="offload_parms"):
        plan(str(tiny_model_dir), sft={"parallelism": {"offload_parms": True}})


def test_gpu_settings_on_a_cpu_are_refused_with_what_to_change(tiny_model_dir) -> None:
    with pytest.raises(PlacementRefused, match="flash_attention_2") as refused:
        plan(str(tiny_model_dir), preset="paper")
    assert "use_vllm" in str(refused.value)  # every problem at once, every step named
    assert "sft:" in str(refused.value) and "rl-phase2:" in str(refused.value)


def test_a_phase_without_a_length_bound_is_an_error(tiny_model_dir) -> None:
    from longrl.steps import rl_config
    from longrl.tracking import TrackingConfig

    with pytest.raises(ValueError, match="phase 3: phase_max_tokens has bounds for 2 phases"):
        rl_config("m", "d", 3, [100, 200], "o", "tiny", {}, "dapo", "rule", None, LOCAL, TrackingConfig(), [])


def test_the_phase_bound_is_the_prompt_limit_unless_overridden(tiny_model_dir) -> None:
    from longrl.steps import rl_config
    from longrl.tracking import TrackingConfig

    def limit(overrides):
        config = rl_config(
            "m", "d", 2, [100, 200], "o", "tiny", overrides, "dapo", "rule", None, LOCAL, TrackingConfig(), []
        )
        return config.max_prompt_tokens

    assert limit({}) == 200
    assert limit({"max_prompt_tokens": 150}) == 150


def test_a_local_step_gets_every_cpu_of_the_machine() -> None:
    import os

    assert LOCAL.ray() == {"num_workers": 1, "use_gpu": False, "cpus_per_worker": float(os.cpu_count())}


def test_the_gpu_placement_reaches_the_step_config_and_the_rayjob_image() -> None:
    placement = Placement(launcher="kuberay", workers=4, gpus_per_worker=8, gpu_memory_gib=141)
    assert placement.ray() == {
        "num_workers": 32,
        "use_gpu": True,
        "gpus_per_node": 8,
        "gpu_memory_gib": 141,
        "cpu_memory_gib_per_node": 512.0,
    }
    assert placement.kuberay("verl").image == placement.verl_image != placement.kuberay("trl").image
    assert placement.kuberay("trl").workers.replicas == 4 and placement.kuberay("trl").workers.gpus == 8


R1_32B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"  # shapes the planner knows without a download
PAPER_BOUNDS = (20_000, 60_000)


def test_the_papers_32b_on_4x8_gpus_is_planned_with_verl_for_the_60k_phase() -> None:
    placement = Placement(
        launcher="kuberay", workers=4, gpus_per_worker=8, gpu_memory_gib=80, shared_volume_claim="shared"
    )
    rows = {row["step"]: row for row in plan(R1_32B, placement, preset="paper", bounds=PAPER_BOUNDS)}
    assert set(rows) == {"sft", "rl-phase1", "rl-phase2"}
    assert rows["rl-phase2"]["engine"] == "verl"
    assert rows["rl-phase2"]["parallelism"]["sequence_parallel"] > 1
    assert all(row["gpus"] == 32 and row["peak_gib_per_gpu"] <= 80 for row in rows.values())


def test_verl_on_several_nodes_needs_a_shared_volume() -> None:
    placement = Placement(launcher="kuberay", workers=4, gpus_per_worker=8)
    with pytest.raises(PlacementRefused, match="rl-phase2: engine verl on 4 nodes .* shared_volume_claim"):
        plan(R1_32B, placement, preset="paper", bounds=PAPER_BOUNDS)


def test_a_7b_model_on_one_node_of_eight_fits_every_phase() -> None:
    placement = Placement(launcher="kuberay", workers=1, gpus_per_worker=8)
    rows = plan("Qwen/Qwen2.5-7B", placement, preset="paper", bounds=PAPER_BOUNDS)
    assert [row["step"] for row in rows] == ["sft", "rl-phase1", "rl-phase2"]
    assert all(row["parallelism"]["sharding"] != "ddp" for row in rows)


def test_an_impossible_request_is_refused_in_seconds_naming_every_step_and_what_to_add() -> None:
    import time

    started = time.monotonic()
    placement = Placement(launcher="kuberay", workers=1, gpus_per_worker=8, worker_memory_gib=256)
    with pytest.raises(PlacementRefused) as refused:
        plan(R1_32B, placement, preset="paper", bounds=PAPER_BOUNDS)
    message = str(refused.value)
    assert "rl-phase2:" in message and "needs at least 16 x 80 GiB GPUs" in message
    assert "GiB of CPU memory instead of 256" in message
    assert time.monotonic() - started < 60


def test_forcing_unsharded_ddp_for_7b_at_60k_is_refused() -> None:
    placement = Placement(launcher="kuberay", workers=1, gpus_per_worker=8)
    ddp = {"engine": "trl", "parallelism": {"sharding": "ddp"}}
    with pytest.raises(PlacementRefused, match="rl-phase2"):
        plan("Qwen/Qwen2.5-7B", placement, preset="paper", rl=ddp, bounds=PAPER_BOUNDS)
