"""One curriculum RL phase: GRPO/DAPO with TRL on the phase's band plus retrospective samples."""

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
from longrl.train.callbacks import DifficultyCheckpointCallback, MetricsCallback, restore_difficulty
from longrl.train.common import finish, resume_point, trainer_arguments
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


def grpo_arguments(config: RLStepConfig) -> GRPOConfig:
    dapo = config.algorithm == "dapo"
    return GRPOConfig(
        **trainer_arguments(config),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
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
        use_vllm=config.use_vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=config.parallelism.rollout_memory_fraction,
        vllm_tensor_parallel_size=config.parallelism.rollout_tensor_parallel,
        shuffle_dataset=True,
        remove_unused_columns=False,
    )


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
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    recorder = DifficultyRecorder()
    sink = MetricsSink(out, config.tracking)
    trainer = DynamicSamplingGRPOTrainer(
        model=config.model,
        reward_funcs=reward_functions(config, recorder),
        args=grpo_arguments(config),
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[MetricsCallback(sink), DifficultyCheckpointCallback(recorder), *callbacks],
        dynamic_sampling=config.dynamic_sampling,
        generation_batch_prompts=config.generation_batch_prompts,
        max_generation_rounds=config.max_generation_rounds,
    )
    if trainer.is_world_process_zero():
        write_rows(rows, out / TRAIN_DATA_FILE)
        sink.log({f"curriculum/{k}": v for k, v in draw.items()}, step=0)
    checkpoint = resume_point(config)
    restore_difficulty(recorder, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)

    from accelerate.utils import gather_object

    states = gather_object([recorder.state()])
    if trainer.is_world_process_zero():
        merged = DifficultyRecorder()
        for state in states:
            merged.merge(state)
        merged.write(out / DIFFICULTY_FILE, config.phase)
    result = finish(trainer, tokenizer, config, {"step": f"rl-phase{config.phase}", "curriculum": draw})
    if result:
        sink.log(result["validation"], step=trainer.state.global_step)
    return result
