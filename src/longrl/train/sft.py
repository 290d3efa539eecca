"""Warm-up SFT with TRL's SFTTrainer: prompt/completion pairs, loss on the completion only.

Micro-batches: ``per_device_train_batch_size`` sequences, each cut at ``max_length``; or, with
``parallelism.micro_batch_tokens``, one row of sequences packed up to that many tokens (TRL's
best-fit-decreasing packing, padding-free: sequences keep their own positions and do not attend to
each other), so a micro-batch holds a token budget rather than a sequence count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
from transformers import AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

from longrl.tracking import MetricsSink
from longrl.train.arguments import trainer_arguments
from longrl.train.callbacks import MarkCheckpointComplete, MetricsCallback
from longrl.train.common import (
    check_sharding,
    compact_fused_lm_head_on_cpu,
    finish,
    prepare_distributed,
    resume_point,
    train,
)
from longrl.train.config import SFTStepConfig


def sft_dataset(train_file: str) -> datasets.Dataset:
    dataset = datasets.Dataset.from_parquet(train_file)
    missing = {"prompt", "completion"} - set(dataset.column_names)
    if missing:
        raise ValueError(
            f"{train_file} has no {sorted(missing)} column(s): prepare it with 'longrl.data prepare --sft'"
        )
    return dataset.select_columns(["prompt", "completion"])


def sft_batching(config: SFTStepConfig) -> dict[str, Any]:
    """SFTConfig fields of one micro-batch: whole sequences, or sequences packed to a token budget."""
    tokens = config.parallelism.micro_batch_tokens
    if tokens is None:
        return {"packing": False, "max_length": config.max_length}
    if tokens < config.max_length:
        raise ValueError(
            f"parallelism.micro_batch_tokens ({tokens}) is below max_length ({config.max_length}): the longest "
            "sequence would not fit one micro-batch. Raise micro_batch_tokens or lower max_length"
        )
    return {
        "packing": True,
        "packing_strategy": "bfd",
        "padding_free": True,
        "max_length": tokens,
        "per_device_train_batch_size": 1,
    }


def sft_arguments(config: SFTStepConfig, eos_token: str | None) -> SFTConfig:
    return SFTConfig(
        **(
            trainer_arguments(config)
            | {
                "gradient_accumulation_steps": config.gradient_accumulation_steps,
                "completion_only_loss": True,
                "eos_token": eos_token,
            }
            | sft_batching(config)
        )
    )


def run_sft(config: SFTStepConfig, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Trains, saves ``output_dir/model`` and returns the step's result (also in result.json)."""
    prepare_distributed(config)
    compact_fused_lm_head_on_cpu()
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    args = sft_arguments(config, tokenizer.eos_token)  # before the model: ZeRO-3 partitions it at load
    sink = MetricsSink(config.output_dir, config.tracking)
    trainer = SFTTrainer(
        model=config.model,
        args=args,
        train_dataset=sft_dataset(config.train_file),
        processing_class=tokenizer,
        callbacks=[MetricsCallback(sink), MarkCheckpointComplete(), *callbacks],
    )
    check_sharding(trainer, config)
    final = train(trainer, resume_point(config), config.output_dir)
    result = finish(trainer, tokenizer, config, {"step": "sft"}, final_checkpoint=final)
    if result:
        sink.log(result["validation"], step=trainer.state.global_step)
    return result
