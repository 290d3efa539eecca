"""What SFT and RL steps share inside a worker: the distributed layer, resuming, the final model,
validation, the result file. The trainer arguments they share are ``longrl.train.arguments``.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from longrl import storage
from longrl.train.arguments import config_fingerprint
from longrl.train.checkpoints import (
    CHECKPOINTS_DIR,
    MODEL_DIR,
    RESULT_FILE,
    latest_checkpoint,
    patient_group,
    wait_for_all_ranks,
)
from longrl.train.config import TrainingConfig
from longrl.train.validation import score_saved_model, vllm_available

logger = logging.getLogger(__name__)


def prepare_distributed(config: TrainingConfig) -> None:
    """Readies this process's distributed layer before any trainer exists (ZeRO-3: DeepSpeed's)."""
    if config.parallelism.sharding == "zero3":
        from longrl.train.engines.trl_deepspeed import init_deepspeed_distributed

        init_deepspeed_distributed(config.ray.use_gpu)


def compact_fused_lm_head_on_cpu() -> None:
    """Makes TRL's fused LM head project only the positions that have a label on CPU too.

    TRL compacts to those positions only where its Triton kernels run (CUDA, XPU); elsewhere it projects
    every position, prompt included, and zeroes the rest afterwards. The values are the same either way,
    but with a long prompt and a short answer on CPU the projection was half of each step (a local SFT
    step: ~0.3 of ~0.6 s). TRL decides this once per forward by its ``_use_triton``, which nothing else in
    ``trl.trainer.utils`` calls; its kernels keep their own.
    """
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton as triton_runs

    def compact(device: torch.device) -> bool:
        return device.type == "cpu" or triton_runs(device)

    trl_utils._use_triton = compact  # wraps the kernels' own decision, so calling this again changes nothing


def check_sharding(trainer: Any, config: TrainingConfig) -> dict[str, Any]:
    """Records what this rank holds (``output_dir/sharding/rank{N}.json``); fails if ZeRO-3 did not shard."""
    from longrl.train.engines.trl_deepspeed import record_sharding

    report = record_sharding(trainer, config.parallelism.sharding, config.output_dir)
    if trainer.is_world_process_zero():
        logger.info(
            "%s: rank 0 holds %d of %d parameter values (%s)",
            config.parallelism.sharding,
            report["local_numel"],
            report["full_numel"],
            report["distributed_type"],
        )
    return report


def resume_point(config: TrainingConfig) -> str | None:
    checkpoint = latest_checkpoint(Path(config.output_dir) / CHECKPOINTS_DIR)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    return checkpoint


def train(trainer: Any, checkpoint: str | None, output_dir: str | Path | None = None) -> str | None:
    """Trains, resuming from ``checkpoint``; returns the checkpoint instead when it already holds the last step.

    ``output_dir``: where this rank's sharding record is, to which the dtypes it trained with are added.

    A step killed after its final checkpoint (while saving the model or validating) has nothing left
    to train, but the Trainer resumed there would train one step more: its state and weights are
    taken from the checkpoint instead.
    """
    from transformers import TrainerState

    if checkpoint is not None:
        state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            logger.info("%s holds the last step (%d): not training again", checkpoint, state.global_step)
            trainer.state = state
            return checkpoint
    trainer.train(resume_from_checkpoint=checkpoint)
    if output_dir is not None:
        from longrl.train.engines.trl_deepspeed import record_precision

        record_precision(trainer, output_dir)
    return None


def copy_checkpoint_model(checkpoint: str, model_dir: Path) -> None:
    """The Hugging Face model files of a checkpoint (rank 0 saved them whole, ZeRO-3 gathered)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    for pattern in ("config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json"):
        for path in Path(checkpoint).glob(pattern):
            shutil.copyfile(path, model_dir / path.name)


def read_validation_rows(config: TrainingConfig) -> list[dict[str, Any]]:
    if not config.validation_file or config.validation_max_examples == 0:
        return []
    rows = pq.read_table(config.validation_file).to_pylist()
    return rows[: config.validation_max_examples]


def release_training_memory(trainer: Any) -> None:
    """Drops the optimizer, its states and the DeepSpeed engine, so validation has the memory.

    Also forgets the process-wide ZeRO-3 setting transformers keeps: with it, loading the saved model
    for validation would partition it again (``zero.Init``), a collective the other ranks never join.
    """
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    trainer.accelerator.free_memory()
    trainer.optimizer = None
    trainer.lr_scheduler = None
    trainer.model_wrapped = trainer.model
    handler = trainer.callback_handler
    handler.optimizer = handler.lr_scheduler = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def validate_saved_model(config: TrainingConfig, model_dir: Path, device: Any) -> dict[str, float]:
    """Scores the saved model: vLLM on GPUs when installed (tensor parallel as rollouts), else transformers."""
    rows = read_validation_rows(config)
    on_vllm = config.ray.use_gpu and vllm_available()
    tensor_parallel = config.parallelism.rollout_tensor_parallel
    if on_vllm and tensor_parallel > torch.cuda.device_count():
        logger.warning(
            "validation: %d GPUs visible, fewer than rollout_tensor_parallel=%d; vLLM uses one",
            torch.cuda.device_count(),
            tensor_parallel,
        )
        tensor_parallel = 1
    return score_saved_model(
        model_dir,
        rows,
        config.validation_max_new_tokens,
        engine="vllm" if on_vllm else "transformers",
        device=device,
        dtype=torch.bfloat16 if config.bf16 else torch.float32,
        tensor_parallel=tensor_parallel,
        memory_fraction=config.parallelism.rollout_memory_fraction,
    )


def finish(
    trainer: Any,
    tokenizer: Any,
    config: TrainingConfig,
    extra: dict[str, Any],
    final_checkpoint: str | None = None,
) -> dict[str, Any]:
    """Saves the final model, scores it on validation data and writes result.json (rank 0); returns the result.

    Every rank takes part in the save (ZeRO-3 gathers the shards), then frees its optimizer; rank 0
    scores the saved directory while the others wait at a barrier. ``final_checkpoint``: the model
    comes from that checkpoint (``train`` found nothing left to train).
    """
    model_dir = Path(config.output_dir) / MODEL_DIR
    if final_checkpoint is None:
        trainer.save_model(str(model_dir))
    elif trainer.is_world_process_zero():
        copy_checkpoint_model(final_checkpoint, model_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(model_dir))
    release_training_memory(trainer)
    waiting = patient_group()
    result: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        metrics = validate_saved_model(config, model_dir, trainer.args.device)
        history = [entry for entry in trainer.state.log_history if "loss" in entry]
        result = {
            "config_fingerprint": config_fingerprint(config),
            "model_dir": str(model_dir),
            "global_step": trainer.state.global_step,
            "parallelism": config.parallelism.model_dump(),
            "validation": metrics,
            "final_logs": history[-1] if history else {},
            **extra,
        }
        storage.write_text(
            str(Path(config.output_dir) / RESULT_FILE), json.dumps(result, indent=2, default=str) + "\n"
        )
    wait_for_all_ranks(waiting)
    return result
