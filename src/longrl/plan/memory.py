"""Per-GPU memory of one training step (SFT, or an RL step with its rollouts), for a given placement.

Everything is counted in bytes per GPU and reported in GiB (2**30 bytes). Notation: P parameters, N GPUs of
the step (sharding world), n nodes, g GPUs per node, L layers, h hidden size, I MLP width, V vocabulary,
q = heads x head_dim, k = key/value heads x head_dim, sp sequence parallel, tp rollout tensor parallel,
T tokens one GPU holds in a micro-batch = ceil(micro_batch_tokens / sp) (micro_batch_tokens defaults to one
whole prompt + response), S the tokens of T that are scored by the loss, G the GPU's memory.

Model states (bytes per parameter; "/N" when sharded over all GPUs of the step)
--------------------------------------------------------------------------------
===================  =========================  ==================  ==========================
engine / sharding    weights                    gradients           optimizer (Adam m, v)
===================  =========================  ==================  ==========================
trl / ddp            4 fp32 + 2 bf16 autocast   4 + 4 DDP buckets   8
trl / zero3          2 bf16 partition  /N       4  /N               12 (fp32 master + m + v) /N
verl / fsdp          4 fp32 shard /N            4 fp32 /N           8 /N
===================  =========================  ==================  ==========================

* TRL trains through accelerate with ``bf16``: under DDP the model stays fp32 and autocast keeps bf16 copies
  of the weights for the forward/backward; DDP's reducer keeps its own bucket copy of every gradient
  (``gradient_as_bucket_view=False``, the default). Offload is not possible under DDP.
* DeepSpeed ZeRO-3 with bf16 keeps the bf16 parameter partition on the GPU and the fp32 master copy inside the
  optimizer: 18 bytes/param in all, the split DeepSpeed's own estimator
  (``estimate_zero3_model_states_mem_needs``) uses. ``offload_optimizer`` moves gradients and optimizer
  states to CPU memory (GPU keeps 2/N), ``offload_params`` the parameter partition as well; both then live
  there for the whole step (DeepSpeed steps Adam on the CPU).
* verl builds the actor in fp32 (``model_dtype`` fp32 for training) and wraps it in FSDP with
  ``MixedPrecision(param_dtype=bf16, reduce_dtype=fp32)``: the fp32 shard is the master copy, 16 bytes/param.
  verl's ``param_offload`` / ``optimizer_offload`` move these states to CPU memory *between* phases (its
  engine loads them back for the update): they do not lower the training phase, only what stays on the GPU
  while vLLM generates.

Gathered parameters (sharded training computes on whole layers)
---------------------------------------------------------------
* zero3: 4 bytes x the largest module (bf16 parameters + gradient of the module being computed), as
  DeepSpeed's estimator counts it, plus a prefetch bucket of 0.9 h^2 bf16 parameters (accelerate's "auto").
* fsdp: longrl's verl engine runs verl's FSDP2 (``strategy: fsdp2``), which shards every decoder layer and,
  when they are separate tensors, the input embeddings and the output head as units of their own
  (``_select_fsdp2_wrap_targets``). The unit being computed holds its bf16 parameters (2), its unsharded
  bf16 gradient (2) and the fp32 copy reduce-scattered (4), and the next decoder layer is prefetched (2):
  8 x the largest unit + 2 x a decoder layer. With tied embeddings the embedding stays in the root unit,
  which FSDP keeps unsharded from forward through backward: 4 x (V h) for it and 10 x a decoder layer.

Activations (flash attention, bf16; bytes per token of T)
---------------------------------------------------------
Saved for backward by one decoder layer: a = 16h (two RMSNorms: fp32 input 4h, bf16 normalised 2h, bf16
output 2h) + 4(q + k') (flash attention keeps q, k, v, output) + 8I (SwiGLU: gate, up, SiLU(gate), product)
[+ 6(q + k) for Qwen3's per-head norms], where k' = max(kv heads, sp) x head_dim (verl repeats key/value
heads up to the sequence-parallel size). TRL with ``fused_loss`` runs Liger's kernels
(``use_liger_kernel``): its RMSNorm keeps the bf16 input and its SwiGLU recomputes SiLU, so a = 8h +
4(q + k') + 6I.

* with gradient checkpointing (every decoder layer, as transformers does it): L x 2h T for the layer inputs,
  plus one layer recomputed during backward: a T, plus its gradients (4I + 4h) T;
* without: L x a T, plus the gradients (4I + 4h) T;
* Ulysses (sp > 1): the all-to-all send/receive copies of q, k, v: 4(q + 2k') T.

The loss over the vocabulary (S scored tokens)
----------------------------------------------
* trl: TRL 1.16 patches its own fused LM head in both GRPO and SFT (``add_fused_lm_head``): logits are never
  whole, 4096-token x 32768-vocabulary bf16 tiles are; it keeps an fp32 gradient of the hidden states (4h S),
  the compacted hidden states (2h S) and an fp32 gradient of the output head (4 V h). GRPO scores only the
  completion (``logits_to_keep``), so S = T x response / (prompt + response); SFT scores all positions.
* verl: computes logits for every token of the micro-batch (remove-padding: prompt and response, S = T; under
  Ulysses only its own 1/sp of them): bf16 logits 2V S, a temperature-scaled copy 2V S when the rollout
  temperature is not 1, flash-attention's cross-entropy writes its gradient in place; SFT: logits, log-softmax
  and gradient, 6V S. With ``fused_loss`` (verl's ``use_fused_kernels``) logits exist 512 tokens at a time:
  512 x V x 12 bytes (fp32 logits, softmax, gradient) + an fp32 output-head gradient 4 V h.

Rollouts (RL only)
------------------
vLLM gets ``rollout_memory_fraction`` x G of each GPU (vLLM's ``gpu_memory_utilization`` is a share of the
GPU's total memory). Inside that budget: its weights 2P/tp (bf16), a profile of activations for
``max_num_batched_tokens`` tokens (4h + 2(q + k)/tp + 3I/tp bf16 per token; 4096 in TRL, 8192 in verl) and
the sampler's fp32 logits for 256 sequences; the rest is KV cache at 2 x L x max(1, kv heads/tp) x head_dim x
2 bytes per token per GPU. At least one whole prompt + response must fit in it (vLLM refuses to start
otherwise); ``kv_cache_sequences`` says how many do. Outside the budget vLLM keeps ~1 GiB (its CUDA graphs,
context and communicators), also while it sleeps.

How the phases combine: both engines put vLLM to sleep while training (TRL ``vllm_enable_sleep_mode``, verl's
hybrid engine; sleep level 2 frees weights and KV cache) and wake it to generate. So the peak is
max(training phase, rollout phase), where the rollout phase is vLLM's budget plus what training keeps on the
GPU meanwhile: ddp 16 bytes/param (fp32 weights, DDP buckets, Adam; gradients are freed), zero3 2 (+2
gradient partition + 12 optimizer unless offloaded) /N, verl 4/N unless params are offloaded + 8/N unless the
optimizer is. The forward pass that recomputes old log-probabilities needs less than training and is not
counted separately; no reference model is counted (the recipe's KL coefficient is 0).

Framework and fragmentation
---------------------------
2 GiB per GPU for the training process's CUDA context, cuBLAS/cuDNN workspaces and NCCL communicators, and
5% of the training phase's PyTorch allocations for allocator fragmentation (verl sets expandable segments).

CPU memory per node
-------------------
* zero3 (DeepSpeed's estimator, with its 1.5 buffer factor): 18 (params + optimizer offloaded) or 16
  (optimizer only) bytes x P / n; model loading under ``zero.Init`` 4 x largest module x g.
* verl: offloaded states 4 (params) + 8 (optimizer) bytes x P/N x g; loading: rank 0 builds the whole fp32
  model on CPU (4P), every rank does when the embeddings are tied (4P x g).
* ddp: every rank loads an fp32 copy before moving it to its GPU (4P x g).
The step needs the larger of loading and offloaded states; when ``Hardware.cpu_memory_gib_per_node`` is given,
a placement needing more does not fit.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from longrl.plan.placement import Engine, Parallelism, engine_problems
from longrl.plan.shape import ModelShape
from longrl.plan.workload import Hardware, Workload

GIB = 1024**3
FRAMEWORK_GIB = 2.0
FRAGMENTATION = 0.05
VLLM_OUTSIDE_BUDGET_GIB = 1.0
VLLM_SAMPLER_SEQUENCES = 256
VLLM_BATCHED_TOKENS: dict[str, int] = {"trl": 4096, "verl": 8192}
TRL_LOGPROB_TILE = (4096, 32768)  # TRL 1.16 kernels/chunked_logprob.py: TOKEN_CHUNK_SIZE x vocabulary chunk
VERL_FUSED_CHUNK_TOKENS = 512  # verl FusedLinearForPPO chunk_size
DEEPSPEED_CPU_BUFFER_FACTOR = 1.5  # estimate_zero3_model_states_mem_needs(additional_buffer_factor=1.5)


class Estimate(BaseModel):
    """The planner's memory estimate of one placement: per GPU, per phase, per component, and CPU per node."""

    model_config = ConfigDict(extra="forbid")

    engine: Engine
    parallelism: Parallelism
    fits: bool = Field(description="Runnable by the engine and within the GPU's memory in every phase")
    peak_gib_per_gpu: float
    gpu_memory_gib: float
    peak_phase: Literal["training", "rollout"]
    training_gib: float = Field(description="Sum of the training-phase components of the breakdown")
    rollout_gib: float | None = Field(description="Sum of the rollout_* components (RL only)")
    breakdown: dict[str, float] = Field(
        description="GiB per GPU by component; rollout_* entries belong to the rollout phase, the others to training"
    )
    cpu_gib_per_node: float
    cpu_breakdown: dict[str, float]
    parameters: int
    tokens_per_gpu: int = Field(description="Tokens one GPU holds in a micro-batch")
    kv_cache_sequences: int | None = Field(
        description="Whole prompt + response sequences one vLLM engine caches"
    )
    step_time_s: float = Field(description="Nominal step time from the cost model (for ranking placements)")
    problems: list[str] = Field(default_factory=list, description="Why the placement cannot run or fit")
    notes: list[str] = Field(default_factory=list)


def tokens_per_gpu(workload: Workload, parallelism: Parallelism) -> int:
    micro_batch = parallelism.micro_batch_tokens or workload.sequence_tokens
    return math.ceil(micro_batch / parallelism.sequence_parallel)


def placement_problems(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine, parallelism: Parallelism
) -> list[str]:
    """Why ``engine`` cannot run this placement at all (empty when it can)."""
    problems = list(engine_problems(engine, parallelism))
    if engine == "verl" and workload.kind == "sft":
        problems.append("engine verl trains RL phases; SFT uses engine trl")
    sp, tp = parallelism.sequence_parallel, parallelism.rollout_tensor_parallel
    heads, kv_heads = shape.num_attention_heads, shape.num_kv_heads
    if sp > 1:
        if heads % sp:
            problems.append(f"sequence_parallel {sp} must divide the {heads} attention heads (Ulysses)")
        if kv_heads % sp and sp % kv_heads:
            problems.append(
                f"sequence_parallel {sp} and the {kv_heads} key/value heads must divide one another"
            )
        if hardware.gpus_per_node % sp:
            problems.append(f"sequence_parallel {sp} must divide the {hardware.gpus_per_node} GPUs of a node")
    if workload.kind == "rl":
        if heads % tp:
            problems.append(f"rollout_tensor_parallel {tp} must divide the {heads} attention heads (vLLM)")
        if kv_heads % tp and tp % kv_heads:
            problems.append(
                f"rollout_tensor_parallel {tp} and the {kv_heads} key/value heads must divide one another"
            )
        if tp > hardware.gpus_per_node or hardware.gpus % tp:
            problems.append(
                f"rollout_tensor_parallel {tp} must divide the step's {hardware.gpus} GPUs and fit in one node "
                f"of {hardware.gpus_per_node}"
            )
    if (
        parallelism.micro_batch_tokens is not None
        and parallelism.micro_batch_tokens < workload.sequence_tokens
    ):
        problems.append(
            f"micro_batch_tokens {parallelism.micro_batch_tokens} must hold one whole sequence "
            f"({workload.sequence_tokens} tokens)"
        )
    return problems


def _layer_saved_bytes_per_token(shape: ModelShape, sp: int, liger: bool) -> float:
    h, q, i = shape.hidden_size, shape.q_dim, shape.intermediate_size
    kv_repeated = max(shape.num_kv_heads, sp) * shape.head_dim
    head_norms = 6 * (q + shape.kv_dim) if shape.qk_norm else 0
    norms, mlp = (8 * h, 6 * i) if liger else (16 * h, 8 * i)
    return norms + 4 * (q + kv_repeated) + mlp + head_norms


def _model_states(
    shape: ModelShape, engine: Engine, parallelism: Parallelism, gpus: int
) -> tuple[dict[str, float], float]:
    """Training-phase weights/gradients/optimizer (bytes per GPU), and what stays on the GPU during rollouts."""
    p = shape.parameters
    if parallelism.sharding == "ddp":
        return {"weights": 6.0 * p, "gradients": 8.0 * p, "optimizer_states": 8.0 * p}, 16.0 * p
    share = p / gpus
    if parallelism.sharding == "zero3":
        weights = 0.0 if parallelism.offload_params else 2 * share
        on_gpu_optimizer = not parallelism.offload_optimizer
        states = {
            "weights": weights,
            "gradients": 4 * share if on_gpu_optimizer else 0.0,
            "optimizer_states": 12 * share if on_gpu_optimizer else 0.0,
        }
        return states, weights + (14 * share if on_gpu_optimizer else 0.0)
    resident = (0 if parallelism.offload_params else 4 * share) + (
        0 if parallelism.offload_optimizer else 8 * share
    )
    return {"weights": 4 * share, "gradients": 4 * share, "optimizer_states": 8 * share}, resident


def _gathered(shape: ModelShape, parallelism: Parallelism) -> dict[str, float]:
    if parallelism.sharding == "ddp":
        return {}
    if parallelism.sharding == "zero3":
        return {
            "gathered_parameters": 4.0 * shape.largest_module_params,
            "prefetch_buffer": 2 * 0.9 * shape.hidden_size**2,
        }
    if shape.tie_word_embeddings:
        return {"gathered_parameters": 4.0 * shape.root_params + 10.0 * shape.layer_params}
    largest_unit = max(shape.embedding_params, shape.layer_params)
    return {"gathered_parameters": 8.0 * largest_unit + 2.0 * shape.layer_params}


def _activations(
    shape: ModelShape, engine: Engine, parallelism: Parallelism, tokens: int
) -> dict[str, float]:
    sp = parallelism.sequence_parallel
    saved = _layer_saved_bytes_per_token(shape, sp, liger=engine == "trl" and parallelism.fused_loss)
    gradients = 4 * shape.intermediate_size + 4 * shape.hidden_size
    if parallelism.gradient_checkpointing:
        stored, working = shape.num_layers * 2 * shape.hidden_size, saved + gradients
    else:
        stored, working = shape.num_layers * saved, gradients
    parts = {"activations": stored * tokens, "layer_backward": working * tokens}
    if sp > 1:
        kv_repeated = max(shape.num_kv_heads, sp) * shape.head_dim
        parts["ulysses_buffers"] = 4.0 * (shape.q_dim + 2 * kv_repeated) * tokens
    return parts


def _loss(
    shape: ModelShape, workload: Workload, engine: Engine, parallelism: Parallelism, tokens: int
) -> float:
    v, h = shape.vocab_size, shape.hidden_size
    if engine == "trl":
        scored = (
            tokens if workload.kind == "sft" else tokens * workload.response_tokens / workload.sequence_tokens
        )
        tile = min(scored, TRL_LOGPROB_TILE[0]) * min(v, TRL_LOGPROB_TILE[1]) * 2
        return tile + 6 * h * scored + 4.0 * v * h + 32 * scored
    if parallelism.fused_loss:
        return min(tokens, VERL_FUSED_CHUNK_TOKENS) * v * 12 + 4.0 * v * h
    if workload.kind == "sft":
        return 6.0 * v * tokens
    return (4.0 if workload.temperature != 1 else 2.0) * v * tokens


def _rollout(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine, parallelism: Parallelism
) -> tuple[dict[str, float], int]:
    """vLLM's share of a GPU while generating (bytes), and how many whole sequences its KV cache holds."""
    tp = parallelism.rollout_tensor_parallel
    budget = parallelism.rollout_memory_fraction * hardware.gpu_memory_gib * GIB
    weights = 2.0 * shape.parameters / tp
    h, q, kv, i = shape.hidden_size, shape.q_dim, shape.kv_dim, shape.intermediate_size
    batched = VLLM_BATCHED_TOKENS[engine]
    activations = batched * 2 * (4 * h + 2 * (q + kv) / tp + 3 * i / tp)
    activations += VLLM_SAMPLER_SEQUENCES * shape.vocab_size * 4 * 2
    kv_cache = budget - weights - activations
    per_sequence = shape.kv_cache_bytes_per_token(tp) * workload.sequence_tokens
    sequences = max(0, math.floor(kv_cache / per_sequence))
    parts = {
        "rollout_vllm_weights": weights,
        "rollout_vllm_activations": activations,
        "rollout_vllm_kv_cache": kv_cache,
        "rollout_vllm_outside_budget": VLLM_OUTSIDE_BUDGET_GIB * GIB,
    }
    return parts, sequences


def _cpu_per_node(
    shape: ModelShape, hardware: Hardware, engine: Engine, parallelism: Parallelism
) -> dict[str, float]:
    p, g = shape.parameters, hardware.gpus_per_node
    if parallelism.sharding == "ddp":
        return {"model_load": 4.0 * p * g}
    if parallelism.sharding == "zero3":
        per_param = (2 if parallelism.offload_params else 0) + (16 if parallelism.offload_optimizer else 0)
        return {
            "offloaded_states": per_param * p / hardware.nodes * DEEPSPEED_CPU_BUFFER_FACTOR,
            "model_load": 4.0 * shape.largest_module_params * g * DEEPSPEED_CPU_BUFFER_FACTOR,
        }
    per_param = (4 if parallelism.offload_params else 0) + (8 if parallelism.offload_optimizer else 0)
    return {
        "offloaded_states": per_param * p / hardware.gpus * g,
        "model_load": 4.0 * p * (g if shape.tie_word_embeddings else 1),
    }


def _pairs(parts: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}" for name, value in parts.items())


def _gib(parts: dict[str, float]) -> dict[str, float]:
    return {name: round(value / GIB, 3) for name, value in parts.items()}


def estimate(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine, parallelism: Parallelism
) -> Estimate:
    """Peak memory per GPU of one step of ``workload`` on ``hardware`` with this engine and placement."""
    from longrl.plan.cost import step_time

    problems = placement_problems(shape, workload, hardware, engine, parallelism)
    tokens = tokens_per_gpu(workload, parallelism)
    states, resident = _model_states(shape, engine, parallelism, hardware.gpus)
    training = {
        **states,
        **_gathered(shape, parallelism),
        **_activations(shape, engine, parallelism, tokens),
        "loss": _loss(shape, workload, engine, parallelism, tokens),
    }
    training["fragmentation"] = FRAGMENTATION * sum(training.values())
    training["framework"] = FRAMEWORK_GIB * GIB
    rollout: dict[str, float] = {}
    sequences = None
    if workload.kind == "rl":
        training["vllm_asleep"] = VLLM_OUTSIDE_BUDGET_GIB * GIB
        vllm, sequences = _rollout(shape, workload, hardware, engine, parallelism)
        rollout = {"rollout_resident_states": resident, "rollout_framework": FRAMEWORK_GIB * GIB, **vllm}
        if sequences < 1:
            problems.append(
                f"vLLM's KV cache ({max(0.0, vllm['rollout_vllm_kv_cache']) / GIB:.1f} GiB per GPU) holds no whole "
                f"{workload.sequence_tokens}-token sequence: raise rollout_memory_fraction or "
                "rollout_tensor_parallel, or offload training states"
            )
    training_gib = sum(training.values()) / GIB
    rollout_gib = sum(rollout.values()) / GIB if rollout else None
    peak = max(training_gib, rollout_gib or 0.0)
    cpu = _cpu_per_node(shape, hardware, engine, parallelism)
    cpu_gib = max(cpu.values()) / GIB
    if hardware.cpu_memory_gib_per_node is not None and cpu_gib > hardware.cpu_memory_gib_per_node:
        problems.append(
            f"needs {cpu_gib:.0f} GiB of CPU memory per node ({_pairs(_gib(cpu))}), the node offers "
            f"{hardware.cpu_memory_gib_per_node:g}"
        )
    notes = []
    if shape.max_position_embeddings and workload.sequence_tokens > shape.max_position_embeddings:
        notes.append(
            f"{workload.sequence_tokens} tokens exceed the model's max_position_embeddings "
            f"{shape.max_position_embeddings}: train with rope scaling (YaRN)"
        )
    fits = not problems and peak <= hardware.gpu_memory_gib
    return Estimate(
        engine=engine,
        parallelism=parallelism,
        fits=fits,
        peak_gib_per_gpu=round(peak, 3),
        gpu_memory_gib=hardware.gpu_memory_gib,
        peak_phase="rollout" if rollout_gib is not None and rollout_gib > training_gib else "training",
        training_gib=round(training_gib, 3),
        rollout_gib=None if rollout_gib is None else round(rollout_gib, 3),
        breakdown=_gib({**training, **rollout}),
        cpu_gib_per_node=round(cpu_gib, 3),
        cpu_breakdown=_gib(cpu),
        parameters=shape.parameters,
        tokens_per_gpu=tokens,
        kv_cache_sequences=sequences,
        step_time_s=round(step_time(shape, workload, hardware, engine, parallelism, sequences), 3),
        problems=problems,
        notes=notes,
    )
