"""What the planner is asked about: one step's sequences, and the GPUs it gets."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Workload(BaseModel):
    """One training step: SFT on whole sequences, or RL with rollouts of ``response_tokens``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sft", "rl"]
    prompt_tokens: int = Field(ge=1, description="Longest prompt (SFT: longest prompt + response)")
    response_tokens: int = Field(0, ge=0, description="Longest response (RL rollouts)")
    temperature: float = Field(
        0.7,
        gt=0,
        description="Rollout sampling temperature (verl keeps temperature-scaled logits unless it is 1)",
    )
    sequences_per_step: int | None = Field(
        None,
        ge=1,
        description="Sequences per optimizer step, for the cost model only; None: 1024 for RL (128 prompts x 8 "
        "completions), 128 for SFT",
    )

    @property
    def sequence_tokens(self) -> int:
        return self.prompt_tokens + self.response_tokens

    @property
    def step_sequences(self) -> int:
        return self.sequences_per_step or (1024 if self.kind == "rl" else 128)


class Hardware(BaseModel):
    """The GPUs of one step: ``nodes`` x ``gpus_per_node``, each offering ``gpu_memory_gib``."""

    model_config = ConfigDict(extra="forbid")

    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(8, ge=1)
    gpu_memory_gib: float = Field(80.0, gt=0)
    cpu_memory_gib_per_node: float | None = Field(
        None,
        gt=0,
        description="CPU memory one node (pod) offers for offloaded states and loading; None: unchecked",
    )

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node
