"""How one training step is laid out on its GPUs: what the planner chooses, and part of every step config.

``Parallelism`` is engine-neutral; ``ENGINE_SHARDING`` says which layouts each engine can run:
TRL shards through accelerate's DeepSpeed integration (ZeRO-3) or not at all (DDP) and has no
sequence parallelism (TRL 1.16 refuses it in GRPO); verl runs FSDP with Ulysses sequence
parallelism.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Engine = Literal["trl", "verl"]
EngineChoice = Literal["auto", "trl", "verl"]
Sharding = Literal["ddp", "fsdp", "zero3"]

ENGINES: tuple[Engine, ...] = ("trl", "verl")
ENGINE_SHARDING: dict[str, tuple[str, ...]] = {"trl": ("ddp", "zero3"), "verl": ("fsdp",)}


class Parallelism(BaseModel):
    """Sharding, offload, sequence parallelism, micro-batching and rollout layout of one step."""

    model_config = ConfigDict(extra="forbid")

    sharding: Sharding = Field(
        "ddp",
        description="ddp: a whole copy per GPU; fsdp (verl) / zero3 (TRL via DeepSpeed): parameters, "
        "gradients and optimizer states split over every GPU of the step",
    )
    offload_params: bool = Field(False, description="Keep sharded parameters (and gradients) in CPU memory")
    offload_optimizer: bool = Field(False, description="Keep optimizer states in CPU memory")
    sequence_parallel: int = Field(
        1, ge=1, description="GPUs one sequence is split over (Ulysses; verl only)"
    )
    micro_batch_tokens: int | None = Field(
        None,
        ge=1,
        description="Tokens in one micro-batch of one data-parallel replica (one long sequence, or several "
        "packed); the sequence-parallel group shares them. None: one longest sequence",
    )
    gradient_checkpointing: bool = Field(True, description="Recompute activations in backward")
    fused_loss: bool = Field(
        False, description="Fused linear + cross-entropy (Liger): logits over the vocabulary are never whole"
    )
    rollout_tensor_parallel: int = Field(1, ge=1, description="GPUs one vLLM rollout engine spans (RL)")
    rollout_memory_fraction: float = Field(
        0.5, gt=0, le=1, description="Share of each GPU's memory vLLM may take for rollouts (RL)"
    )


def engine_problems(engine: Engine, parallelism: Parallelism) -> list[str]:
    """Why ``engine`` cannot run ``parallelism`` (empty when it can)."""
    problems = []
    if parallelism.sharding not in ENGINE_SHARDING[engine]:
        problems.append(
            f"engine {engine} runs sharding {' or '.join(ENGINE_SHARDING[engine])}, not {parallelism.sharding}"
        )
    if engine == "trl" and parallelism.sequence_parallel > 1:
        problems.append(
            "engine trl has no sequence parallelism (TRL 1.16 refuses it in GRPO): use engine verl"
        )
    if engine == "trl" and parallelism.offload_params and parallelism.sharding != "zero3":
        problems.append("engine trl offloads parameters only with sharding zero3")
    if engine == "trl" and parallelism.offload_optimizer and parallelism.sharding != "zero3":
        problems.append("engine trl offloads optimizer states only with sharding zero3")
    return problems
