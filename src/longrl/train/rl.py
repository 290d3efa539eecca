"""One curriculum RL phase: GRPO/DAPO with TRL on the phase's band plus retrospective samples.

Micro-batches: ``per_device_train_batch_size`` completions per forward/backward pass; with
``parallelism.micro_batch_tokens``, as many as fit that budget at the phase's longest prompt plus
the longest response (at least one), rounded down so that a worker's share of the step divides
evenly. Rollouts: transformers ``generate`` by default (CPU); with ``use_vllm`` (GPUs), TRL's vLLM
colocate mode -- an engine inside every training process, tensor parallel over groups of
``rollout_tensor_parallel`` neighbouring ranks, at most ``rollout_memory_fraction`` of each GPU, and
asleep (weights and KV cache released) while the policy trains. Colocate rather than TRL's server
mode: it needs no extra GPUs or a ``trl vllm-serve`` process in the RayJob, TRL 1.16 builds its
tensor-parallel groups itself and syncs ZeRO-3 weights rank by rank, and sleep mode gives the memory
back to training; server mode would park GPUs that cannot train.
The fields these settle are computed in ``longrl.train.arguments`` (the driver checks them first).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoTokenizer, TrainerCallback
from trl import GRPOConfig
from trl.rewards import get_soft_overlong_punishment

from longrl.curriculum import DIFFICULTY_FILE, TRAIN_DATA_FILE, DifficultyRecorder, phase_dataset, write_rows
from longrl.rewards import HybridReward, LLMJudge
from longrl.tracking import MetricsSink
from longrl.train.arguments import completions_per_pass, rollout_arguments, trainer_arguments
from longrl.train.callbacks import (
    DifficultyCheckpointCallback,
    MarkCheckpointComplete,
    MetricsCallback,
    gather_difficulty,
    restore_difficulty,
)
from longrl.train.common import (
    check_sharding,
    compact_fused_lm_head_on_cpu,
    finish,
    prepare_distributed,
    resume_point,
    train,
)
from longrl.train.config import RLStepConfig
from longrl.train.dynamic_sampling import DynamicSamplingGRPOTrainer

logger = logging.getLogger(__name__)


class RecordedReward:
    """The hybrid reward, also noting each prompt id's rewards for the phase's difficulty record."""

    __name__ = "hybrid_reward"

    def __init__(self, reward: HybridReward, recorder: DifficultyRecorder) -> None:
        self.reward = reward
        self.recorder = recorder

    async def __call__(self, *args: Any, id: Sequence[str], **kwargs: Any) -> list[float]:  # noqa: A002 - TRL passes the column
        rewards = await self.reward(*args, **kwargs)
        self.recorder.add(id, rewards)
        return rewards


def grpo_arguments(config: RLStepConfig, prompt_tokens: int | None = None) -> GRPOConfig:
    """TRL's GRPOConfig for the phase; ``prompt_tokens``: its longest prompt (sizes micro-batches, vLLM).

    Without ``prompt_tokens``: ``max_prompt_tokens``, else the longest prompt of ``train_file``.
    """
    if prompt_tokens is None:
        from longrl.train.planning import longest_prompt

        prompt_tokens = config.max_prompt_tokens or longest_prompt(config.train_file)
    dapo = config.algorithm == "dapo"
    per_pass = completions_per_pass(config, prompt_tokens)
    per_worker = config.train_batch_prompts * config.num_generations // config.ray.num_workers
    return GRPOConfig(
        **(trainer_arguments(config) | {"per_device_train_batch_size": per_pass}),
        gradient_accumulation_steps=per_worker // per_pass,
        num_generations=config.num_generations,
        temperature=config.temperature,
        top_p=config.top_p,
        max_completion_length=config.max_completion_length,
        beta=config.beta,
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high if dapo else config.epsilon,
        loss_type="dapo" if dapo else "grpo",
        scale_rewards="group",
        reward_weights=[1.0, config.overlong_penalty_factor] if dapo and config.overlong_buffer else [1.0],
        shuffle_dataset=True,
        remove_unused_columns=False,
        **rollout_arguments(config, prompt_tokens),
    )


def longest_prompt_tokens(config: RLStepConfig, rows: list[dict[str, Any]]) -> int:
    if config.max_prompt_tokens is not None:
        return config.max_prompt_tokens
    return max(int(row.get("prompt_tokens") or 0) for row in rows) or 1


def reward_functions(config: RLStepConfig, recorder: DifficultyRecorder) -> list[Any]:
    judge = LLMJudge(config.judge) if config.reward == "hybrid" and config.judge else None
    functions: list[Any] = [RecordedReward(HybridReward(judge), recorder)]
    if config.algorithm == "dapo" and config.overlong_buffer:
        functions.append(get_soft_overlong_punishment(config.max_completion_length, config.overlong_buffer))
    return functions


def run_rl(config: RLStepConfig, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Trains one phase; writes the model, the difficulty record and the data it trained on."""
    out = Path(config.output_dir)
    rows, draw = phase_dataset(
        config.train_file,
        config.retrospective_from,
        config.retrospective_share,
        seed=config.seed + config.phase,
    )
    if not rows:
        raise ValueError(f"phase {config.phase} has no training examples in {config.train_file}")
    prepare_distributed(config)
    compact_fused_lm_head_on_cpu()
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    recorder = DifficultyRecorder()
    sink = MetricsSink(out, config.tracking)
    args = grpo_arguments(config, longest_prompt_tokens(config, rows))  # before the model (ZeRO-3)
    saving_difficulty = DifficultyCheckpointCallback(recorder)
    trainer = DynamicSamplingGRPOTrainer(
        model=config.model,
        reward_funcs=reward_functions(config, recorder),
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[
            MetricsCallback(sink),
            saving_difficulty,
            MarkCheckpointComplete(),
            *callbacks,
        ],
        dynamic_sampling=config.dynamic_sampling,
        generation_batch_prompts=config.generation_batch_prompts,
        max_generation_rounds=config.max_generation_rounds,
    )
    check_sharding(trainer, config)
    if trainer.is_world_process_zero():
        write_rows(rows, out / TRAIN_DATA_FILE)
        sink.log({f"curriculum/{k}": v for k, v in draw.items()}, step=0)
    checkpoint = resume_point(config)
    restore_difficulty(recorder, checkpoint)
    final = train(trainer, checkpoint, config.output_dir)

    merged = gather_difficulty(recorder, saving_difficulty.group)  # rank 0 writes every rank's records
    if merged is not None:
        merged.write(out / DIFFICULTY_FILE, config.phase)
    extra = {"step": f"rl-phase{config.phase}", "curriculum": draw}
    result = finish(trainer, tokenizer, config, extra, final_checkpoint=final)
    if result:
        sink.log(result["validation"], step=trainer.state.global_step)
    return result
