"""The cheapest placement that fits: a search over what longrl's engines can run.

Candidates: engine (trl, verl) x sharding (trl: ddp, zero3; verl: fsdp) x offload (none, optimizer,
params + optimizer; none under ddp) x sequence parallel (1, 2, 4, 8 dividing the GPUs of a node and the
attention heads; verl only) x micro-batch tokens (one sequence, 2 and 4 sequences) x gradient checkpointing
x fused loss (verl: fused output-head kernels; TRL: Liger's kernels, its LM head is always fused) x rollout
tensor parallel (1, 2, 4, 8 dividing the heads and a node) x rollout memory fraction (0.3 ... 0.9). Fields the
caller fixed are kept.

A placement the search picks must leave ``HEADROOM`` (10%) of the GPU's memory unused: that is the memory
model's margin of error, and an out-of-memory error hours into a run costs more than a refusal in seconds.
Only a fully fixed placement (every Parallelism field given) is judged by the bare limit, so that ``auto``
of a fully fixed placement is its ``estimate``.

Among the placements that qualify, the one with the lowest nominal step time (``longrl.plan.cost``) wins
within an engine, and TRL wins over verl whenever a TRL placement qualifies: TRL (ZeRO-3 through
accelerate) is longrl's default engine, the one exercised end to end on a CPU in CI (sharded training,
resume, save), while verl's GPU path can only be checked piecewise without GPUs; verl is chosen when only
its sequence parallelism (or its phase offload) makes the step fit, which is what it is here for (32B at
60K).

A request that fits nowhere gets a reason naming what to add: the smallest number of GPUs (whole nodes of
the same size) that would fit, the longest phase that fits on the GPUs given, the fixed settings that stand
in the way, and the closest placement's peak.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from longrl.plan.memory import Estimate, estimate, placement_problems
from longrl.plan.placement import ENGINE_SHARDING, ENGINES, Engine, Parallelism
from longrl.plan.shape import ModelShape
from longrl.plan.workload import Hardware, Workload

PARALLEL_SIZES = (1, 2, 4, 8)
MICRO_BATCH_SEQUENCES = (1, 2, 4)
MEMORY_FRACTIONS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
OFFLOADS = ((False, False), (False, True), (True, True))  # (params, optimizer)
MAX_NODES = 128
HEADROOM = 0.1  # share of the GPU's memory a searched placement must leave unused
SHORTEST_PHASE = 1024


class Plan(BaseModel):
    """The planner's verdict: the cheapest placement that fits, or why none does."""

    model_config = ConfigDict(extra="forbid")

    fits: bool
    engine: Engine | None = None
    parallelism: Parallelism | None = None
    estimate: Estimate | None = Field(
        None, description="The chosen placement's, or the closest one's when none fits"
    )
    reason: str | None = Field(None, description="When nothing fits: what to add")
    min_gpus: int | None = Field(
        None, description="When nothing fits: the fewest GPUs (whole nodes) that would"
    )
    placements_considered: int = 0


def _check_fixed(fixed: dict[str, Any]) -> None:
    unknown = sorted(set(fixed) - set(Parallelism.model_fields))
    if unknown:
        raise ValueError(
            f"fixed parallelism fields {', '.join(unknown)} do not exist (known: {', '.join(Parallelism.model_fields)})"
        )


def _choices(name: str, fixed: dict[str, Any], options: tuple[Any, ...]) -> tuple[Any, ...]:
    return (fixed[name],) if name in fixed else options


def _candidates(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine, fixed: dict[str, Any]
) -> Iterator[Parallelism]:
    """Placements of ``engine`` that keep ``fixed``; consecutive ones differ in the vLLM share, largest first."""
    rl = workload.kind == "rl"
    offloads = [
        o
        for o in OFFLOADS
        if fixed.get("offload_params", o[0]) == o[0] and fixed.get("offload_optimizer", o[1]) == o[1]
    ]
    if "offload_params" in fixed and "offload_optimizer" in fixed and not offloads:
        offloads = [(fixed["offload_params"], fixed["offload_optimizer"])]
    sequence_parallel = _choices("sequence_parallel", fixed, PARALLEL_SIZES if engine == "verl" else (1,))
    micro_batches = _choices(
        "micro_batch_tokens",
        fixed,
        tuple(None if k == 1 else k * workload.sequence_tokens for k in MICRO_BATCH_SEQUENCES),
    )
    checkpointing = _choices("gradient_checkpointing", fixed, (False, True))
    fused = _choices("fused_loss", fixed, (False, True))
    tensor_parallel = _choices("rollout_tensor_parallel", fixed, PARALLEL_SIZES if rl else (1,))
    fractions = _choices("rollout_memory_fraction", fixed, MEMORY_FRACTIONS if rl else (0.5,))
    unsharded = [(fixed.get("offload_params", False), fixed.get("offload_optimizer", False))]
    for sharding in _choices("sharding", fixed, ENGINE_SHARDING[engine]):
        for (params, optimizer), sp, tokens, ckpt, fuse, tp, fraction in itertools.product(
            unsharded if sharding == "ddp" else offloads,
            sequence_parallel,
            micro_batches,
            checkpointing,
            fused,
            tensor_parallel,
            fractions,
        ):
            yield Parallelism(
                sharding=sharding,
                offload_params=params,
                offload_optimizer=optimizer,
                sequence_parallel=sp,
                micro_batch_tokens=tokens,
                gradient_checkpointing=ckpt,
                fused_loss=fuse,
                rollout_tensor_parallel=tp,
                rollout_memory_fraction=fraction,
            )


def _memory_limit(hardware: Hardware, fixed: dict[str, Any]) -> float:
    everything_fixed = set(Parallelism.model_fields) <= set(fixed)
    return hardware.gpu_memory_gib * (1 if everything_fixed else 1 - HEADROOM)


def _qualifies(result: Estimate, limit: float) -> bool:
    return result.fits and result.peak_gib_per_gpu <= limit


def _search(
    shape: ModelShape,
    workload: Workload,
    hardware: Hardware,
    engines: tuple[Engine, ...],
    fixed: dict[str, Any],
) -> tuple[Estimate | None, Estimate | None, int]:
    """(the cheapest qualifying placement of the first engine that has one, the closest other one, placements
    evaluated)."""
    limit = _memory_limit(hardware, fixed)
    closest: Estimate | None = None
    considered = 0
    for engine in engines:
        best: Estimate | None = None
        settled: set[tuple[Any, ...]] = set()  # placements whose largest qualifying vLLM share is known
        for parallelism in _candidates(shape, workload, hardware, engine, fixed):
            # fractions come largest first, and a larger KV cache only speeds rollouts up
            key = tuple(parallelism.model_dump(exclude={"rollout_memory_fraction"}).values())
            if key in settled or placement_problems(shape, workload, hardware, engine, parallelism):
                continue
            considered += 1
            result = estimate(shape, workload, hardware, engine, parallelism)
            if _qualifies(result, limit):
                best = _cheaper(best, result)
                settled.add(key)
            elif closest is None or _closeness(result) < _closeness(closest):
                closest = result
        if best is not None:
            return best, closest, considered
    return None, closest, considered


def _cheaper(current: Estimate | None, candidate: Estimate) -> Estimate:
    return candidate if current is None or candidate.step_time_s < current.step_time_s else current


def _closeness(result: Estimate) -> tuple[bool, float]:
    """Runnable placements before ones with problems other than their peak, then the lowest peak."""
    return (bool(result.problems), result.peak_gib_per_gpu)


def _engines(engine: Engine | None) -> tuple[Engine, ...]:
    return ENGINES if engine is None else (engine,)


def _fits_somewhere(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine | None, fixed: dict[str, Any]
) -> bool:
    """Whether any placement fits, trying the most memory-frugal settings only (memory falls with each)."""
    frugal: dict[str, Any] = {"gradient_checkpointing": True, "fused_loss": True, "micro_batch_tokens": None}
    if hardware.cpu_memory_gib_per_node is None:  # else offloading may not fit the CPU: try every offload
        frugal.update(offload_params=True, offload_optimizer=True)
    settings = {**frugal, **fixed}
    limit = _memory_limit(hardware, fixed)
    for candidate_engine in _engines(engine):
        for parallelism in _candidates(shape, workload, hardware, candidate_engine, settings):
            if parallelism.sharding == "ddp" and "sharding" not in fixed:
                continue
            if placement_problems(shape, workload, hardware, candidate_engine, parallelism):
                continue
            if _qualifies(estimate(shape, workload, hardware, candidate_engine, parallelism), limit):
                return True
    return False


def _fewest_gpus(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine | None, fixed: dict[str, Any]
) -> int | None:
    def fits(nodes: int) -> bool:
        return _fits_somewhere(shape, workload, hardware.model_copy(update={"nodes": nodes}), engine, fixed)

    high = hardware.nodes * 2
    while high <= MAX_NODES and not fits(high):
        high *= 2
    if high > MAX_NODES:
        return None
    low = high // 2  # does not fit
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high * hardware.gpus_per_node


def _longest_phase(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine | None, fixed: dict[str, Any]
) -> int | None:
    """The longest prompt (RL; SFT: whole sequence) that fits on ``hardware``, to the nearest 1K tokens."""

    def fits(prompt: int) -> bool:
        shorter = workload.model_copy(update={"prompt_tokens": prompt})
        return _fits_somewhere(shape, shorter, hardware, engine, fixed)

    if not fits(SHORTEST_PHASE):
        return None
    low, high = SHORTEST_PHASE, workload.prompt_tokens
    while high - low > 1024:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low // 1000 * 1000


def _layout(result: Estimate) -> str:
    p = result.parallelism
    offload = "+".join(
        k for k, on in (("params", p.offload_params), ("optimizer", p.offload_optimizer)) if on
    )
    layout = (
        f"{result.engine} {p.sharding}, offload {offload or 'none'}, sequence parallel {p.sequence_parallel}"
    )
    if result.rollout_gib is not None:
        layout += f", rollout tensor parallel {p.rollout_tensor_parallel} at {p.rollout_memory_fraction:g}"
    return f"{layout} needs {result.peak_gib_per_gpu:.1f} GiB per GPU in its {result.peak_phase} phase"


def _describe(result: Estimate) -> str:
    problems = f" ({'; '.join(result.problems)})" if result.problems else ""
    if result.fits:
        problems = (
            f", less than the {HEADROOM:.0%} spare the planner keeps for its margin of error (give every "
            "placement field to run it anyway)"
        )
    return _layout(result) + problems


def _reason(
    shape: ModelShape,
    workload: Workload,
    hardware: Hardware,
    engine: Engine | None,
    fixed: dict[str, Any],
    closest: Estimate | None,
) -> tuple[str, int | None]:
    gpus = f"{hardware.gpus} x {hardware.gpu_memory_gib:g} GiB GPUs"
    parts = [
        f"{shape.name} does not fit {workload.kind} at {workload.prompt_tokens} + {workload.response_tokens} tokens on {gpus}"
    ]
    if closest is not None:
        parts.append(f"the closest placement, {_describe(closest)}")
    fewest = _fewest_gpus(shape, workload, hardware, engine, fixed)
    if fewest is not None:
        nodes = fewest // hardware.gpus_per_node
        parts.append(
            f"needs at least {fewest} x {hardware.gpu_memory_gib:g} GiB GPUs ({nodes} node{'s' if nodes > 1 else ''} "
            f"of {hardware.gpus_per_node})"
        )
    longest = _longest_phase(shape, workload, hardware, engine, fixed)
    if longest is not None:
        parts.append(
            f"or a shorter phase: up to ~{longest} prompt tokens"
            + (f" (+ {workload.response_tokens} response)" if workload.response_tokens else "")
            + " fit on these GPUs"
        )
    elif fewest is None:
        parts.append(f"not even {SHORTEST_PHASE} tokens fit: use GPUs with more memory")
    parts.extend(_with_more_cpu_memory(shape, workload, hardware, engine, fixed))
    parts.extend(_without_fixed(shape, workload, hardware, engine, fixed))
    return "; ".join(parts), fewest


def _with_more_cpu_memory(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine | None, fixed: dict[str, Any]
) -> list[str]:
    """What a larger worker pod would allow, when the CPU memory per node is what keeps offloading out."""
    if hardware.cpu_memory_gib_per_node is None:
        return []
    unchecked = hardware.model_copy(update={"cpu_memory_gib_per_node": None})
    best, _, _ = _search(shape, workload, unchecked, _engines(engine), fixed)
    if best is None:
        return []
    return [
        f"or give each node (worker pod) at least {math.ceil(best.cpu_gib_per_node)} GiB of CPU memory instead "
        f"of {hardware.cpu_memory_gib_per_node:g}: then {_layout(best)}"
    ]


def _without_fixed(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine | None, fixed: dict[str, Any]
) -> list[str]:
    if not fixed and engine is None:
        return []
    free_best, _, _ = _search(shape, workload, hardware, ENGINES, {})
    if free_best is None:
        return []
    held = ", ".join([*(f"{k}={v}" for k, v in fixed.items()), *([f"engine={engine}"] if engine else [])])
    return [f"without the fixed settings ({held}) it fits: {_describe(free_best)}"]


def _unrunnable_reason(
    shape: ModelShape,
    workload: Workload,
    hardware: Hardware,
    engine: Engine | None,
    fixed: dict[str, Any],
    example: Estimate | None,
) -> str:
    problems = "; ".join(example.problems) if example is not None else "no placement keeps these settings"
    parts = [f"no engine can run {shape.name} with these settings on {hardware.gpus} GPUs: {problems}"]
    parts.extend(_without_fixed(shape, workload, hardware, engine, fixed))
    return "; ".join(parts)


def auto(
    shape: ModelShape,
    workload: Workload,
    hardware: Hardware,
    engine: Engine | None = None,
    fixed: dict[str, Any] | None = None,
) -> Plan:
    """The cheapest placement of ``workload`` on ``hardware`` that fits, keeping ``fixed`` Parallelism fields
    and, when given, the engine. With every field fixed it is ``estimate`` of that placement."""
    fixed = dict(fixed or {})
    _check_fixed(fixed)
    best, closest, considered = _search(shape, workload, hardware, _engines(engine), fixed)
    if best is not None:
        return Plan(
            fits=True,
            engine=best.engine,
            parallelism=best.parallelism,
            estimate=best,
            placements_considered=considered,
        )
    if closest is None:  # no placement the engines can run keeps these settings
        closest = _first_impossible(shape, workload, hardware, engine, fixed)
        reason, fewest = _unrunnable_reason(shape, workload, hardware, engine, fixed, closest), None
    else:
        reason, fewest = _reason(shape, workload, hardware, engine, fixed, closest)
    return Plan(
        fits=False, estimate=closest, reason=reason, min_gpus=fewest, placements_considered=considered
    )


def _first_impossible(
    shape: ModelShape, workload: Workload, hardware: Hardware, engine: Engine | None, fixed: dict[str, Any]
) -> Estimate | None:
    """An estimate of the first candidate the engines cannot run, so that its problems reach the reason."""
    for candidate_engine in _engines(engine):
        for parallelism in _candidates(shape, workload, hardware, candidate_engine, fixed):
            return estimate(shape, workload, hardware, candidate_engine, parallelism)
    return None
