"""The memory model's arithmetic: each component scales with what it depends on, and only with that."""

from __future__ import annotations

import pytest

from longrl.plan import BUILTIN_SHAPES, Hardware, Parallelism, Workload, estimate
from longrl.plan.memory import GIB

Q7 = BUILTIN_SHAPES["Qwen/Qwen2.5-7B"]
Q32 = BUILTIN_SHAPES["Qwen/Qwen2.5-32B"]
RL_60K = Workload(kind="rl", prompt_tokens=60_000, response_tokens=10_000)
SFT_20K = Workload(kind="sft", prompt_tokens=20_000)


def _nodes(n: int, gpu_gib: float = 80.0) -> Hardware:
    return Hardware(nodes=n, gpus_per_node=8, gpu_memory_gib=gpu_gib)


def _states(result) -> float:
    return sum(result.breakdown[k] for k in ("weights", "gradients", "optimizer_states"))


@pytest.mark.parametrize(("engine", "sharding"), [("trl", "zero3"), ("verl", "fsdp")])
def test_sharded_states_halve_with_twice_the_gpus(engine: str, sharding: str) -> None:
    placement = Parallelism(sharding=sharding)
    one, two = (estimate(Q32, SFT_20K, _nodes(n), engine, placement) for n in (1, 2))
    assert _states(two) == pytest.approx(_states(one) / 2, rel=1e-3)
    assert two.breakdown["activations"] == one.breakdown["activations"]


def test_ddp_holds_a_whole_copy_whatever_the_gpu_count() -> None:
    one, two = (estimate(Q7, SFT_20K, _nodes(n), "trl", Parallelism(sharding="ddp")) for n in (1, 2))
    assert _states(one) == _states(two) == pytest.approx(22 * Q7.parameters / GIB, rel=1e-3)


def test_bytes_per_parameter_by_engine() -> None:
    zero3 = estimate(Q32, SFT_20K, _nodes(4), "trl", Parallelism(sharding="zero3"))
    fsdp = estimate(Q32, SFT_20K, _nodes(4), "verl", Parallelism(sharding="fsdp"))
    share = Q32.parameters / 32 / GIB
    assert _states(zero3) == pytest.approx(18 * share, rel=1e-3)  # DeepSpeed bf16: 2 + 4 + 12
    assert _states(fsdp) == pytest.approx(16 * share, rel=1e-3)  # verl fp32 shard: 4 + 4 + 8


def test_sequence_parallel_divides_tokens_and_activations() -> None:
    base = dict(sharding="fsdp", offload_params=True, offload_optimizer=True)
    one, eight = (
        estimate(Q32, RL_60K, _nodes(4), "verl", Parallelism(**base, sequence_parallel=sp)) for sp in (1, 8)
    )
    assert (one.tokens_per_gpu, eight.tokens_per_gpu) == (70_000, 8_750)
    assert eight.breakdown["activations"] == pytest.approx(one.breakdown["activations"] / 8, rel=1e-3)
    assert eight.breakdown["loss"] == pytest.approx(one.breakdown["loss"] / 8, rel=1e-3)
    assert "ulysses_buffers" in eight.breakdown and "ulysses_buffers" not in one.breakdown


def test_micro_batch_tokens_scale_activations() -> None:
    one, two = (
        estimate(Q7, SFT_20K, _nodes(1), "trl", Parallelism(sharding="zero3", micro_batch_tokens=tokens))
        for tokens in (None, 40_000)
    )
    assert two.tokens_per_gpu == 2 * one.tokens_per_gpu
    assert two.breakdown["activations"] == pytest.approx(2 * one.breakdown["activations"], rel=1e-3)


def test_gradient_checkpointing_keeps_only_layer_inputs() -> None:
    kept, recomputed = (
        estimate(Q7, SFT_20K, _nodes(1), "trl", Parallelism(sharding="zero3", gradient_checkpointing=ckpt))
        for ckpt in (False, True)
    )
    per_token_inputs = Q7.num_layers * 2 * Q7.hidden_size
    assert recomputed.breakdown["activations"] == pytest.approx(per_token_inputs * 20_000 / GIB, rel=1e-3)
    # a layer saves far more than its input: 16h + 4(q + k) + 8I bytes per token against 2h
    assert kept.breakdown["activations"] > 20 * recomputed.breakdown["activations"]


def test_zero3_offload_moves_states_to_cpu() -> None:
    def placement(params: bool, optimizer: bool) -> Parallelism:
        return Parallelism(sharding="zero3", offload_params=params, offload_optimizer=optimizer)

    none, optimizer, both = (
        estimate(Q32, SFT_20K, _nodes(2), "trl", placement(*offload))
        for offload in ((False, False), (False, True), (True, True))
    )
    assert none.breakdown["optimizer_states"] > 0 and optimizer.breakdown["optimizer_states"] == 0
    assert optimizer.breakdown["weights"] > 0 and both.breakdown["weights"] == 0
    assert none.cpu_breakdown["offloaded_states"] == 0
    assert both.cpu_breakdown["offloaded_states"] > optimizer.cpu_breakdown["offloaded_states"] > 0
    assert none.peak_gib_per_gpu > optimizer.peak_gib_per_gpu > both.peak_gib_per_gpu


def test_verl_offload_frees_rollout_memory_not_training_memory() -> None:
    def run(offload: bool):
        placement = Parallelism(
            sharding="fsdp", offload_params=offload, offload_optimizer=offload, sequence_parallel=8
        )
        return estimate(Q32, RL_60K, _nodes(4), "verl", placement)

    kept, offloaded = run(False), run(True)
    assert kept.training_gib == offloaded.training_gib  # verl loads the states back for the update
    assert offloaded.breakdown["rollout_resident_states"] == 0
    assert kept.rollout_gib - offloaded.rollout_gib == pytest.approx(12 * Q32.parameters / 32 / GIB, rel=1e-3)
    assert offloaded.cpu_breakdown["offloaded_states"] == pytest.approx(
        12 * Q32.parameters / 4 / GIB, rel=1e-3
    )


def test_peak_is_the_larger_phase() -> None:
    result = estimate(Q7, RL_60K, _nodes(1), "trl", Parallelism(sharding="zero3"))
    assert result.peak_gib_per_gpu == max(result.training_gib, result.rollout_gib)
    training = sum(v for k, v in result.breakdown.items() if not k.startswith("rollout_"))
    rollout = sum(v for k, v in result.breakdown.items() if k.startswith("rollout_"))
    assert (training, rollout) == (
        pytest.approx(result.training_gib, abs=0.01),
        pytest.approx(result.rollout_gib, abs=0.01),
    )


def test_kv_cache_grows_with_the_memory_fraction_and_tensor_parallel() -> None:
    def sequences(fraction: float, tp: int) -> int:
        placement = Parallelism(
            sharding="zero3", rollout_memory_fraction=fraction, rollout_tensor_parallel=tp
        )
        return estimate(Q7, RL_60K, _nodes(1), "trl", placement).kv_cache_sequences

    assert sequences(0.3, 1) < sequences(0.6, 1) < sequences(0.6, 2)
    # a fraction too small for the weights and one 70K-token sequence cannot start vLLM
    starved = estimate(
        Q7, RL_60K, _nodes(1), "trl", Parallelism(sharding="zero3", rollout_memory_fraction=0.2)
    )
    assert starved.kv_cache_sequences == 0 and not starved.fits
    assert any("KV cache" in problem for problem in starved.problems)


def test_loss_positions_by_engine() -> None:
    trl = estimate(Q7, RL_60K, _nodes(1), "trl", Parallelism(sharding="zero3"))
    trl_fused = estimate(Q7, RL_60K, _nodes(1), "trl", Parallelism(sharding="zero3", fused_loss=True))
    verl = estimate(Q7, RL_60K, _nodes(1), "verl", Parallelism(sharding="fsdp"))
    verl_fused = estimate(Q7, RL_60K, _nodes(1), "verl", Parallelism(sharding="fsdp", fused_loss=True))
    assert trl.breakdown["loss"] == trl_fused.breakdown["loss"]  # TRL 1.16's LM head is always fused
    assert trl_fused.breakdown["layer_backward"] < trl.breakdown["layer_backward"]  # Liger's norms and SwiGLU
    # verl: bf16 logits and their temperature-scaled copy for all 70K tokens
    assert verl.breakdown["loss"] == pytest.approx(4 * Q7.vocab_size * 70_000 / GIB, rel=1e-3)
    assert verl_fused.breakdown["loss"] < verl.breakdown["loss"] / 10
    unit_temperature = estimate(
        Q7, RL_60K.model_copy(update={"temperature": 1.0}), _nodes(1), "verl", Parallelism(sharding="fsdp")
    )
    assert unit_temperature.breakdown["loss"] == pytest.approx(verl.breakdown["loss"] / 2, rel=1e-3)


def test_impossible_layouts_are_problems_not_crashes() -> None:
    q7_heads = Parallelism(sharding="fsdp", sequence_parallel=8)  # 28 heads
    result = estimate(Q7, RL_60K, _nodes(1), "verl", q7_heads)
    assert not result.fits and any("28 attention heads" in p for p in result.problems)
    trl_sp = estimate(Q32, RL_60K, _nodes(1), "trl", Parallelism(sharding="zero3", sequence_parallel=2))
    assert any("no sequence parallelism" in p for p in trl_sp.problems)
    short = estimate(Q7, RL_60K, _nodes(1), "trl", Parallelism(sharding="zero3", micro_batch_tokens=1000))
    assert any("whole sequence" in p for p in short.problems)


def test_a_cpu_memory_limit_refuses_heavy_offload() -> None:
    placement = Parallelism(sharding="zero3", offload_params=True, offload_optimizer=True)
    roomy = estimate(Q32, SFT_20K, _nodes(1), "trl", placement)
    limited = estimate(
        Q32, SFT_20K, _nodes(1).model_copy(update={"cpu_memory_gib_per_node": 256}), "trl", placement
    )
    assert roomy.fits and roomy.cpu_gib_per_node > 256
    assert not limited.fits and "CPU memory per node" in limited.problems[0]
