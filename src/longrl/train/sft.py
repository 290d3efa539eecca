"""Warm-up SFT with TRL's SFTTrainer: prompt/completion pairs, loss on the completion only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
from transformers import AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

from longrl.tracking import MetricsSink
from longrl.train.callbacks import MetricsCallback
from longrl.train.common import finish, resume_point, trainer_arguments
from longrl.train.config import SFTStepConfig


def sft_dataset(train_file: str) -> datasets.Dataset:
    dataset = datasets.Dataset.from_parquet(train_file)
    missing = {"prompt", "completion"} - set(dataset.column_names)
    if missing:
        raise ValueError(
            f"{train_file} has no {sorted(missing)} column(s): prepare it with 'longrl.data prepare --sft'"
        )
    return dataset.select_columns(["prompt", "completion"])


def run_sft(config: SFTStepConfig, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Trains, saves ``output_dir/model`` and returns the step's result (also in result.json)."""
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    args = SFTConfig(
        **trainer_arguments(config),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_length=config.max_length,
        completion_only_loss=True,
        packing=False,
        eos_token=tokenizer.eos_token,
    )
    sink = MetricsSink(config.output_dir, config.tracking)
    trainer = SFTTrainer(
        model=config.model,
        args=args,
        train_dataset=sft_dataset(config.train_file),
        processing_class=tokenizer,
        callbacks=[MetricsCallback(sink), *callbacks],
    )
    trainer.train(resume_from_checkpoint=resume_point(config))
    result = finish(trainer, tokenizer, config, {"step": "sft"})
    if result:
        sink.log(result["validation"], step=trainer.state.global_step)
    return result
