"""Small step configs on the tiny model and the ``data`` fixture's files, shared by the training tests."""

from longrl.train.config import TINY_RL, TINY_SFT, RLStepConfig, SFTStepConfig, with_overrides


def sft_config(tiny_model_dir, data, out, **overrides):
    values = {
        "model": str(tiny_model_dir),
        "output_dir": str(out),
        "train_file": str(data / "sft/train-phase1.parquet"),
        "validation_file": str(data / "rl/validation.parquet"),
        "validation_max_examples": 4,
        "max_steps": 4,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
    } | overrides
    return with_overrides(SFTStepConfig, TINY_SFT, values)


def rl_config(model, data, out, phase, **overrides):
    values = {
        "model": str(model),
        "output_dir": str(out),
        "phase": phase,
        "train_file": str(data / f"rl/train-phase{phase}.parquet"),
        "validation_file": str(data / "rl/validation.parquet"),
        "validation_max_examples": 4,
        "max_steps": 3,
        "max_completion_length": 24,
        "overlong_buffer": 8,
        "per_device_train_batch_size": 16,
        "train_batch_prompts": 2,
        "generation_batch_prompts": 2,
        "num_generations": 8,
    } | overrides
    return with_overrides(RLStepConfig, TINY_RL, values)
