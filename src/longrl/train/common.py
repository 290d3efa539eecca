"""What SFT and RL steps share: trainer arguments, resuming, the final model, validation, the result file."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from longrl.train.checkpoints import CHECKPOINTS_DIR, MODEL_DIR, RESULT_FILE, latest_checkpoint
from longrl.train.config import TrainingConfig
from longrl.train.validation import validation_metrics

logger = logging.getLogger(__name__)


def config_fingerprint(config: TrainingConfig) -> str:
    """Identifies what a step computes (tracking and compute placement aside)."""
    payload = config.model_dump_json(exclude={"tracking", "ray", "output_dir"})
    return hashlib.sha256(payload.encode()).hexdigest()


def trainer_arguments(config: TrainingConfig) -> dict[str, Any]:
    """transformers TrainingArguments fields that every step sets the same way."""
    model_kwargs: dict[str, Any] = {"dtype": "bfloat16" if config.bf16 else "float32"}
    if config.attn_implementation:
        model_kwargs["attn_implementation"] = config.attn_implementation
    return {
        "output_dir": str(Path(config.output_dir) / CHECKPOINTS_DIR),
        "seed": config.seed,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_steps,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "max_steps": config.max_steps,
        "num_train_epochs": config.num_train_epochs,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "logging_steps": config.logging_steps,
        "gradient_checkpointing": config.parallelism.gradient_checkpointing,
        "bf16": config.bf16,
        "use_cpu": not config.ray.use_gpu,
        "report_to": [],
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
        "model_init_kwargs": model_kwargs,
    }


def resume_point(config: TrainingConfig) -> str | None:
    checkpoint = latest_checkpoint(Path(config.output_dir) / CHECKPOINTS_DIR)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    return checkpoint


def read_validation_rows(config: TrainingConfig) -> list[dict[str, Any]]:
    if not config.validation_file or config.validation_max_examples == 0:
        return []
    rows = pq.read_table(config.validation_file).to_pylist()
    return rows[: config.validation_max_examples]


def finish(trainer: Any, tokenizer: Any, config: TrainingConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """Saves the final model, scores it on validation data and writes result.json (rank 0); returns the result."""
    model_dir = Path(config.output_dir) / MODEL_DIR
    trainer.save_model(str(model_dir))
    result: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(model_dir))
        model = trainer.accelerator.unwrap_model(trainer.model)
        metrics = validation_metrics(
            model, tokenizer, read_validation_rows(config), config.validation_max_new_tokens
        )
        history = [entry for entry in trainer.state.log_history if "loss" in entry]
        result = {
            "config_fingerprint": config_fingerprint(config),
            "model_dir": str(model_dir),
            "global_step": trainer.state.global_step,
            "validation": metrics,
            "final_logs": history[-1] if history else {},
            **extra,
        }
        (Path(config.output_dir) / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str) + "\n")
    trainer.accelerator.wait_for_everyone()
    return result
