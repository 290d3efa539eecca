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

    @property
    def sequence_tokens(self) -> int:
        return self.prompt_tokens + self.response_tokens


class Hardware(BaseModel):
    """The GPUs of one step: ``nodes`` x ``gpus_per_node``, each offering ``gpu_memory_gib``."""

    model_config = ConfigDict(extra="forbid")

    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(8, ge=1)
    gpu_memory_gib: float = Field(80.0, gt=0)

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node
