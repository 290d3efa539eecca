"""A nominal step time for ranking placements that fit: roofline arithmetic on H100-class constants.

It is not a performance prediction; it orders placements by what makes them slower, in seconds of one step
(``Workload.step_sequences`` sequences) on nominal hardware:

* training compute: 2 x (matmul parameters) FLOPs per token forward plus 2 x L x s^2 x q for causal
  attention over a sequence of s tokens; backward twice the forward; gradient checkpointing recomputes the
  forward (+1/3); RL adds one forward for the old log-probabilities; verl's fused loss recomputes the output
  head in backward. Divided over all GPUs at ``TRAIN_FLOPS`` each (~40% of an H100's dense bf16 peak).
* sharding: zero3/fsdp all-gather the bf16 parameters twice per micro-batch (forward, backward) and
  reduce-scatter gradients (bf16 under DeepSpeed, fp32 under verl), overlapped with that micro-batch's
  compute (the slower of the two counts); DDP all-reduces fp32 gradients once per step. Inter-node bandwidth
  applies as soon as the step spans nodes. Fewer, larger micro-batches pay these per-micro-batch costs fewer
  times.
* sequence parallel: Ulysses' all-to-all of q, k, v and the attention output in every layer, forward,
  recompute and backward, at NVLink bandwidth (the group sits inside a node), not overlapped.
* offload: DeepSpeed moves gradients to CPU every micro-batch and steps Adam on the CPU
  (``CPU_ADAM_PARAMS_PER_S`` per node); with parameter offload it also copies every partition over PCIe for
  forward and backward. verl moves its states between CPU and GPU a few times per step (PCIe).
* rollouts: each vLLM engine (tp GPUs) prefills its prompts compute-bound, then decodes bandwidth-bound:
  every step reads its weights and the KV cache of the sequences in flight; the sequences in flight are
  limited by the KV cache (``kv_cache_sequences``) and vLLM's 256; tensor parallel adds two all-reduces per
  layer and step.
"""

from __future__ import annotations

import math

from longrl.plan.placement import Engine, Parallelism
from longrl.plan.shape import ModelShape
from longrl.plan.workload import Hardware, Workload

TRAIN_FLOPS = 400e12
PREFILL_FLOPS = 500e12
HBM_BYTES_PER_S = 2.5e12
NVLINK_BYTES_PER_S = 200e9
INTER_NODE_BYTES_PER_S = 40e9
PCIE_BYTES_PER_S = 20e9
CPU_ADAM_PARAMS_PER_S = 2e9
ALL_REDUCE_LATENCY_S = 10e-6
VLLM_MAX_SEQUENCES = 256


def _forward_flops(shape: ModelShape, tokens: int) -> float:
    matmul_params = shape.num_layers * shape.layer_params + shape.vocab_size * shape.hidden_size
    return 2.0 * matmul_params * tokens + 2.0 * shape.num_layers * tokens**2 * shape.q_dim


def _collective_bandwidth(hardware: Hardware) -> float:
    return INTER_NODE_BYTES_PER_S if hardware.nodes > 1 else NVLINK_BYTES_PER_S


def _training_time(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine, parallelism: Parallelism
) -> float:
    n, p, sp = hardware.gpus, shape.parameters, parallelism.sequence_parallel
    sequence = workload.sequence_tokens
    passes = 3 + (1 if parallelism.gradient_checkpointing else 0) + (1 if workload.kind == "rl" else 0)
    flops = _forward_flops(shape, sequence) * passes
    if engine == "verl" and parallelism.fused_loss:
        flops += 2.0 * shape.vocab_size * shape.hidden_size * sequence
    sequences_per_micro_batch = max(1, (parallelism.micro_batch_tokens or sequence) // sequence)
    replicas = n // sp
    micro_batches = math.ceil(workload.step_sequences / replicas / sequences_per_micro_batch)
    compute = sequences_per_micro_batch * flops / (sp * TRAIN_FLOPS)
    bandwidth = _collective_bandwidth(hardware)
    spread = (n - 1) / n
    if parallelism.sharding == "ddp":
        time = micro_batches * compute + 2 * 4.0 * p * spread / bandwidth
    else:
        gradient_bytes = 2 if parallelism.sharding == "zero3" else 4
        communication = (2 * 2 + gradient_bytes) * p * spread / bandwidth
        time = micro_batches * max(compute, communication)
    if sp > 1:
        tokens = math.ceil(sequences_per_micro_batch * sequence / sp)
        kv = max(shape.num_kv_heads, sp) * shape.head_dim
        per_pass = shape.num_layers * 2 * (2 * shape.q_dim + 2 * kv) * tokens * (sp - 1) / sp
        time += micro_batches * per_pass * (passes - 1) / NVLINK_BYTES_PER_S
    share = p / n
    if parallelism.sharding == "zero3":
        if parallelism.offload_optimizer:
            time += micro_batches * 2 * share / PCIE_BYTES_PER_S + 2 * share / PCIE_BYTES_PER_S
            time += p / hardware.nodes / CPU_ADAM_PARAMS_PER_S
        if parallelism.offload_params:
            time += micro_batches * 2 * 2 * share / PCIE_BYTES_PER_S
    elif parallelism.sharding == "fsdp":
        moved = (4 * 4 * share if parallelism.offload_params else 0) + (
            2 * 8 * share if parallelism.offload_optimizer else 0
        )
        time += moved / PCIE_BYTES_PER_S
    return time


def _rollout_time(
    shape: ModelShape, workload: Workload, hardware: Hardware, parallelism: Parallelism, kv_sequences: int
) -> float:
    tp = parallelism.rollout_tensor_parallel
    engines = max(1, hardware.gpus // tp)
    sequences = math.ceil(workload.step_sequences / engines)
    in_flight = max(1, min(sequences, VLLM_MAX_SEQUENCES, kv_sequences))
    prefill = sequences * _forward_flops(shape, workload.prompt_tokens) / (tp * PREFILL_FLOPS)
    mean_context = workload.prompt_tokens + workload.response_tokens / 2
    read_per_step = 2.0 * shape.parameters / tp + in_flight * mean_context * shape.kv_cache_bytes_per_token(
        tp
    )
    decode_step = read_per_step / HBM_BYTES_PER_S
    if tp > 1:
        decode_step += 2 * shape.num_layers * ALL_REDUCE_LATENCY_S
    waves = math.ceil(sequences / in_flight)
    return prefill + waves * workload.response_tokens * decode_step


def step_time(
    shape: ModelShape,
    workload: Workload,
    hardware: Hardware,
    engine: Engine,
    parallelism: Parallelism,
    kv_sequences: int | None,
) -> float:
    """Nominal seconds of one step (rollouts and training) of this placement."""
    time = _training_time(shape, workload, hardware, engine, parallelism)
    if workload.kind == "rl":
        time += _rollout_time(shape, workload, hardware, parallelism, kv_sequences or 0)
    return time
