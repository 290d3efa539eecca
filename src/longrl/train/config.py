"""Typed configs of the training steps, shared by the CLI, the KFP components and the Ray entrypoint.

Defaults are the recipe's values for full-size runs (QwenLong-L1 / DAPO: group size 8,
temperature 0.7, top-p 0.95, learning rate 2e-6, 128 prompts per step drawn from generation
batches of 384, 10K-token responses, clip 0.2/0.28, no KL, a 1000-token overlong buffer with
penalty factor 1.0). ``TINY_SFT`` and ``TINY_RL`` shrink them for the tiny model on a CPU.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from longrl.cli import merge_options
from longrl.plan.placement import EngineChoice, Parallelism, engine_problems
from longrl.rewards.judge import JudgeConfig
from longrl.tracking import TrackingConfig


class RayResources(BaseModel):
    """How many workers a step has and what hardware they sit on (the planner's view of the GPUs)."""

    model_config = ConfigDict(extra="forbid")

    num_workers: int = Field(1, ge=1, description="Ray Train workers: one per GPU (or one CPU process)")
    use_gpu: bool = Field(False, description="Give each worker a GPU")
    gpus_per_node: int = Field(8, ge=1, description="GPUs of one node (worker pod); with use_gpu")
    gpu_memory_gib: float = Field(
        80.0, gt=0, description="Memory one GPU offers, in GiB (80 for an H100 80GB)"
    )
    cpu_memory_gib_per_node: float | None = Field(
        None,
        gt=0,
        description="CPU memory of one node (worker pod) for offloaded states and model loading; None: unchecked",
    )
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker")
    max_failures: int = Field(
        1, ge=0, description="Times Ray restarts a failed worker group (it resumes from the last checkpoint)"
    )
    collective_timeout_s: int | None = Field(
        None, ge=1, description="Timeout of collective operations in seconds; None: the engine's default"
    )


class TrainingConfig(BaseModel):
    """What every training step has: where from, where to, how fast, how to checkpoint and track."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Checkpoint to start from: a Hugging Face directory")
    output_dir: str = Field(description="Where checkpoints, the final model and metrics go")
    seed: int = Field(42, description="Seed of data order, sampling and initialisation")
    learning_rate: float = Field(description="Peak learning rate")
    lr_scheduler_type: str = Field("constant", description="transformers learning-rate schedule")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm")
    per_device_train_batch_size: int = Field(description="Sequences per forward/backward pass per worker")
    max_steps: int = Field(-1, description="Optimizer steps; -1: run num_train_epochs")
    num_train_epochs: float = Field(1.0, gt=0, description="Passes over the data when max_steps is -1")
    save_steps: int = Field(
        50, ge=1, description="Checkpoint every this many steps (a killed step resumes there)"
    )
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept")
    logging_steps: int = Field(1, ge=1, description="Log metrics every this many steps")
    engine: EngineChoice = Field(
        "auto",
        description="trl (ZeRO-3/DDP through accelerate), verl (FSDP + Ulysses sequence parallel), or auto: "
        "the planner picks the cheapest that fits (on CPU: trl)",
    )
    parallelism: Parallelism = Field(
        default_factory=Parallelism,
        description="Sharding, offload, sequence parallel, micro-batch tokens, rollout layout; with engine "
        "auto the planner fills in the fields not given",
    )
    bf16: bool = Field(False, description="bfloat16 mixed precision (GPU)")
    attn_implementation: str | None = Field(
        None, description="e.g. flash_attention_2 on GPU; None: transformers' default"
    )
    validation_file: str | None = Field(None, description="Prepared validation parquet scored after training")
    validation_max_examples: int = Field(64, ge=0, description="Validation examples scored (0: skip)")
    validation_max_new_tokens: int = Field(512, ge=1, description="Token budget of a validation answer")
    ray: RayResources = Field(default_factory=RayResources)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    # The config as the step was given it, when this one is its local stand-in (s3:// inputs and
    # outputs staged to local paths): what the step's result is identified by.
    _staged_from: TrainingConfig | None = PrivateAttr(None)

    def staged_copy(self, local_paths: dict[str, Any]) -> TrainingConfig:
        """This config with s3:// locations replaced by their local copies; it still identifies as this one."""
        local = self.model_copy(update=local_paths)
        local._staged_from = self._staged_from or self
        return local

    @property
    def as_given(self) -> TrainingConfig:
        return self._staged_from or self

    @model_validator(mode="after")
    def _engine_runs_parallelism(self) -> TrainingConfig:
        if self.engine != "auto":
            problems = engine_problems(self.engine, self.parallelism)
            if problems:
                raise ValueError("; ".join(problems))
        return self


class SFTStepConfig(TrainingConfig):
    """Warm-up SFT: imitate reasoning responses, loss on the response only."""

    train_file: str = Field(description="Prepared SFT parquet (prompt, completion)")
    learning_rate: float = Field(
        1e-5, gt=0, description="Peak learning rate (the paper does not state its SFT value)"
    )
    lr_scheduler_type: str = Field("cosine", description="transformers learning-rate schedule")
    per_device_train_batch_size: int = Field(
        1, ge=1, description="Sequences per forward/backward pass per worker"
    )
    gradient_accumulation_steps: int = Field(16, ge=1, description="Micro-batches per optimizer step")
    num_train_epochs: float = Field(2.0, gt=0, description="Passes over the SFT data")
    max_length: int = Field(
        30_720, ge=16, description="Longest prompt + response in tokens (inputs up to 20K)"
    )


class RLStepConfig(TrainingConfig):
    """One curriculum RL phase: GRPO or DAPO on the phase's length band plus retrospective samples."""

    phase: int = Field(1, ge=1, description="Curriculum phase number")
    train_file: str = Field(description="The phase's prepared parquet (train-phase{k}.parquet)")
    retrospective_from: list[str] = Field(
        default_factory=list,
        description="Output directories of earlier phases: their difficulty records and datasets feed "
        "difficulty-aware retrospective sampling",
    )
    retrospective_share: float = Field(
        0.25, ge=0, le=1, description="Hard earlier-phase examples added, as a share of this phase's dataset"
    )
    algorithm: Literal["grpo", "dapo"] = Field(
        "dapo", description="GRPO, or DAPO (clip-higher, dynamic sampling, overlong shaping)"
    )
    learning_rate: float = Field(2e-6, gt=0, description="Peak learning rate")
    per_device_train_batch_size: int = Field(
        8, ge=1, description="Completions per forward/backward pass per worker"
    )
    num_generations: int = Field(8, ge=2, description="Group size: responses sampled per prompt")
    train_batch_prompts: int = Field(128, ge=1, description="Prompts (groups) per optimizer step")
    generation_batch_prompts: int = Field(
        384, ge=1, description="Prompts generated per dynamic-sampling round (>= train_batch_prompts)"
    )
    max_generation_rounds: int = Field(
        3,
        ge=1,
        description="Dynamic sampling: most generation rounds to fill a batch with informative groups",
    )
    temperature: float = Field(0.7, gt=0, description="Rollout sampling temperature")
    top_p: float = Field(0.95, gt=0, le=1, description="Rollout nucleus sampling")
    max_completion_length: int = Field(10_240, ge=1, description="Longest response in tokens")
    epsilon: float = Field(0.2, gt=0, description="Lower clip range")
    epsilon_high: float = Field(
        0.28, gt=0, description="Upper clip range (DAPO clip-higher; GRPO uses epsilon)"
    )
    beta: float = Field(0.0, ge=0, description="KL coefficient (0: no reference model)")
    overlong_buffer: int = Field(1000, ge=0, description="DAPO overlong buffer in tokens (0: off)")
    overlong_penalty_factor: float = Field(1.0, ge=0, description="Weight of the overlong penalty")
    reward: Literal["hybrid", "rule"] = Field(
        "hybrid", description="hybrid: rule + LLM judge; rule: rule only"
    )
    judge: JudgeConfig | None = Field(None, description="The served verifier (required for reward=hybrid)")
    max_prompt_tokens: int | None = Field(
        None, ge=1, description="Longest prompt of the phase in tokens; None: the longest in its data"
    )
    use_vllm: bool = Field(
        False,
        description="Roll out with vLLM on the GPUs (parallelism.rollout_tensor_parallel, "
        "rollout_memory_fraction); CPU: transformers generate",
    )

    @property
    def dynamic_sampling(self) -> bool:
        return self.algorithm == "dapo"

    @model_validator(mode="after")
    def _consistent(self) -> RLStepConfig:
        if self.reward == "hybrid" and self.judge is None:
            raise ValueError(
                "reward=hybrid needs a judge (the verifier endpoint); use reward=rule to train without one"
            )
        if self.generation_batch_prompts < self.train_batch_prompts:
            raise ValueError("generation_batch_prompts must be >= train_batch_prompts")
        completions = self.train_batch_prompts * self.num_generations
        per_pass = self.per_device_train_batch_size * self.ray.num_workers
        if completions % per_pass:
            raise ValueError(
                f"train_batch_prompts x num_generations ({completions}) must be a multiple of "
                f"per_device_train_batch_size x workers ({per_pass})"
            )
        if (completions // self.ray.num_workers) % self.num_generations:
            raise ValueError(
                "each worker must hold whole groups: train_batch_prompts must divide by the worker count"
            )
        return self

    @property
    def gradient_accumulation_steps(self) -> int:
        completions = self.train_batch_prompts * self.num_generations
        return completions // (self.per_device_train_batch_size * self.ray.num_workers)


def with_overrides(config_type: type[BaseModel], preset: dict[str, Any], values: dict[str, Any]) -> Any:
    """A config from a preset, then explicit values on top (nested sections merged)."""
    return config_type.model_validate(merge_options(preset, values))


# CPU presets for the tiny model: seconds per step instead of hours.
TINY_SFT: dict[str, Any] = {
    "learning_rate": 3e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 5,
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 1,
    "num_train_epochs": 8,
    "max_length": 1024,
    "save_steps": 50,
    "parallelism": {"gradient_checkpointing": False},
    "validation_max_new_tokens": 96,
}
TINY_RL: dict[str, Any] = {
    "learning_rate": 5e-4,
    "per_device_train_batch_size": 32,
    "num_generations": 8,
    "train_batch_prompts": 4,
    "generation_batch_prompts": 4,
    "max_generation_rounds": 3,
    "max_completion_length": 96,
    "overlong_buffer": 16,
    "max_steps": 30,
    "save_steps": 10,
    "parallelism": {"gradient_checkpointing": False},
    "validation_max_new_tokens": 96,
    "reward": "rule",
}
# GPU presets for full-size runs: bf16 with flash-attention, vLLM rollouts, checkpoints every 5 steps
# (the official QwenLong-L1 run saves every 5 steps; a phase of ~1.6K prompts at 128 per step is
# ~12 steps an epoch) and up to 10 generation rounds for DAPO's group filtering, as in that run.
# Engine and parallelism are left to the planner (engine auto).
PAPER_SFT: dict[str, Any] = {
    "bf16": True,
    "attn_implementation": "flash_attention_2",
    "save_steps": 50,
}
PAPER_RL: dict[str, Any] = {
    "bf16": True,
    "attn_implementation": "flash_attention_2",
    "use_vllm": True,
    "save_steps": 5,
    "save_total_limit": 3,
    "max_generation_rounds": 10,
}
PRESETS = {"tiny": {"sft": TINY_SFT, "rl": TINY_RL}, "paper": {"sft": PAPER_SFT, "rl": PAPER_RL}}
