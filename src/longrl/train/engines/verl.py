"""The ``verl`` engine: an RL phase trained by verl's PPO trainer (FSDP2, Ulysses sequence parallel,
vLLM rollouts), leaving the same outputs as the ``trl`` engine.

``VerlEngine.run("rl", config)`` runs in the Ray driver (a RayJob's driver, or a local Ray):

1. stages s3:// inputs and outputs (``longrl.train.staging``: pulls earlier checkpoints back);
2. draws the phase's dataset (its band plus retrospective samples, ``longrl.curriculum``), writes
   ``train_data.parquet`` and the verl-layout parquet files (``verl_data``);
3. composes and validates verl's config from the step config (``verl_config``), and writes it
   (``verl/config.yaml``) and the equivalent ``python -m verl.trainer.main_ppo`` command line
   (``verl/command.txt``);
4. checks that every Ray node writes checkpoints where the driver reads them, starts the phase's
   difficulty record (a Ray actor, restored from the checkpoint it resumes from) and runs verl's
   trainer (``verl.trainer.main_ppo.run_ppo`` with its V1 task runner), which resumes by itself
   from ``checkpoints/`` (``resume_mode=auto``);
5. converts the last checkpoint to ``model/`` (verl's model merger, with the tokenizer), writes
   ``difficulty.jsonl``, ``metrics.jsonl`` (verl's per-step metrics; MLflow has them from verl's
   logger), the validation metrics of verl's last-step validation, ``curriculum.json`` and, last,
   ``result.json`` (written atomically; pushed after everything it vouches for).

Only step 4's ``run_ppo`` needs GPUs; everything around it runs, and is tested, on a CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrl import storage
from longrl.curriculum import (
    DIFFICULTY_FILE,
    TRAIN_DATA_FILE,
    DifficultyRecorder,
    phase_dataset,
    write_rows,
    write_sources,
)
from longrl.tracking import MetricsSink
from longrl.train.checkpoints import MODEL_DIR, RESULT_FILE
from longrl.train.config import RLStepConfig, TrainingConfig
from longrl.train.engines import TrainingFailed

logger = logging.getLogger(__name__)

Trainer = Callable[[Any, dict[str, str]], None]
SFT_REFUSAL = "engine verl trains RL phases; SFT uses engine trl (set engine: trl, or auto, for the SFT step)"


def run_verl_trainer(verl_config: Any, env: dict[str, str]) -> None:
    """verl's own entrypoint (``main_ppo.main`` without Hydra's command line) on the connected Ray cluster.

    verl's task runner gets verl's PPO runtime environment plus ``env``; its workers inherit it.
    """
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.utils.device import auto_set_device

    auto_set_device(verl_config)
    runtime_env = get_ppo_ray_runtime_env(verl_config)
    runtime_env.pop("working_dir", None)  # the job's working directory stays as the RayJob set it
    runtime_env["env_vars"].update(env)
    run_ppo(verl_config, task_runner_class=TaskRunnerV1.options(runtime_env=runtime_env))


class VerlEngine:
    name = "verl"

    def __init__(self, trainer: Trainer | None = None) -> None:
        self.trainer = trainer or run_verl_trainer

    def run(self, step: str, config: TrainingConfig) -> dict[str, Any]:
        if step != "rl" or not isinstance(config, RLStepConfig):
            raise ValueError(SFT_REFUSAL)
        from longrl.train.staging import staged

        with staged(config) as (local, _trainer_callbacks):  # verl pushes checkpoints itself
            return run_phase(local, self.trainer)  # type: ignore[arg-type]


def trainer_env(config: RLStepConfig, metric_log: Path, remote_output: str | None) -> dict[str, str]:
    """Environment of verl's task runner: its metrics file, the step's MLflow run, the s3:// output."""
    from longrl.train.engines.verl_checkpoint import REMOTE_OUTPUT_ENV

    env = {"VERL_FILE_LOGGER_PATH": str(metric_log)}
    if config.tracking.run_id:
        env["MLFLOW_RUN_ID"] = config.tracking.run_id
        uri = config.tracking.resolved_uri()
        if uri:
            env["MLFLOW_TRACKING_URI"] = uri
    if remote_output:
        env[REMOTE_OUTPUT_ENV] = remote_output
    return env


@dataclasses.dataclass
class PhaseInputs:
    """What a phase trains and validates on, written where verl reads it."""

    rows: list[dict[str, Any]]
    draw: dict[str, Any]
    validation_rows: list[dict[str, Any]]
    data: Any  # verl_config.PhaseData
    tokenizer: Any


def write_phase_inputs(local: RLStepConfig, layout: Any) -> PhaseInputs:
    """The phase's rows (own band + retrospective draws) as ``train_data.parquet`` and verl parquet."""
    from transformers import AutoTokenizer

    from longrl.train.engines.verl_data import validation_rows_within, write_phase_data

    layout.verl_dir.mkdir(parents=True, exist_ok=True)
    rows, draw = phase_dataset(
        local.train_file, local.retrospective_from, local.retrospective_share, seed=local.seed + local.phase
    )
    if not rows:
        raise ValueError(f"phase {local.phase} has no training examples in {local.train_file}")
    write_rows(rows, layout.output_dir / TRAIN_DATA_FILE)
    tokenizer = AutoTokenizer.from_pretrained(local.model)
    prompt_limit = local.max_prompt_tokens or max(int(row["prompt_tokens"]) for row in rows)
    validation_rows = validation_rows_within(local, prompt_limit)
    data = write_phase_data(rows, validation_rows, layout, tokenizer)
    return PhaseInputs(rows, draw, validation_rows, data, tokenizer)


def difficulty_recorder_name(output_dir: str) -> str:
    # The same name on every attempt of a step: verl logs its whole config to the step's MLflow run,
    # which refuses a parameter whose value changes.
    return f"longrl-difficulty-{hashlib.sha256(output_dir.encode()).hexdigest()[:16]}"


def verl_run_config(local: RLStepConfig, inputs: PhaseInputs, layout: Any, recorder: str) -> Any:
    """verl's config for the phase, validated by verl, written next to the phase as YAML and command line."""
    from omegaconf import OmegaConf

    from longrl.train.engines.verl_config import (
        command_line,
        compose_verl_config,
        hydra_overrides,
        phase_overrides,
        validate_verl_config,
    )

    values = phase_overrides(
        local, inputs.data, layout, recorder=recorder, mlflow=bool(local.tracking.run_id)
    )
    verl_config = compose_verl_config(hydra_overrides(values))
    validate_verl_config(verl_config)
    layout.command_file.write_text(command_line(values) + "\n")
    layout.config_file.write_text(OmegaConf.to_yaml(verl_config))
    return verl_config


def check_checkpoints_shared(layout: Any) -> None:
    from longrl.train.engines.verl_checkpoint import shared_directory_problems

    problems = shared_directory_problems(layout.checkpoints)
    if problems:
        raise TrainingFailed(
            f"verl writes checkpoints from every node into {layout.checkpoints}, which is not shared by "
            "all Ray nodes of this job (mount a ReadWriteMany volume there, or set LONGRL_CACHE_DIR to "
            "one for s3:// outputs): " + "; ".join(problems)
        )


def train(
    local: RLStepConfig, verl_config: Any, layout: Any, recorder: str, remote: str | None, trainer: Trainer
) -> dict[str, tuple[float, int]]:
    """Runs verl's trainer with the phase's difficulty record alive (restored when it resumes); returns
    the record's state."""
    import ray

    from longrl.train.engines.verl_checkpoint import latest_checkpoint, load_difficulty_state
    from longrl.train.engines.verl_logs import attempt_log_path
    from longrl.train.engines.verl_reward import difficulty_state, start_difficulty_actor

    env = trainer_env(local, attempt_log_path(layout.metric_logs), remote)
    actor = start_difficulty_actor(recorder, load_difficulty_state(latest_checkpoint(layout.checkpoints)))
    try:
        trainer(verl_config, env)
        return difficulty_state(actor)
    except Exception as exc:
        raise TrainingFailed(f"rl phase {local.phase} failed in verl's trainer: {exc}") from exc
    finally:
        ray.kill(actor)


def final_checkpoint(layout: Any) -> Path:
    from longrl.train.engines.verl_checkpoint import latest_checkpoint

    final = latest_checkpoint(layout.checkpoints)
    if final is None:
        raise TrainingFailed(
            f"verl finished without a checkpoint in {layout.checkpoints} (trainer.save_freq saves the last step)"
        )
    return final


def validation_of(inputs: PhaseInputs, layout: Any, global_step: int) -> dict[str, float]:
    """longrl's validation metrics of the answers verl gave at its last-step validation."""
    from longrl.train.engines.verl_logs import validation_from_dump

    if not inputs.validation_rows:
        return {}
    dump = layout.validation_dumps / f"{global_step}.jsonl"
    if not dump.is_file():
        raise TrainingFailed(f"verl did not validate step {global_step}: {dump} is missing")
    return validation_from_dump(dump, inputs.validation_rows, inputs.tokenizer)


def run_phase(local: RLStepConfig, trainer: Trainer) -> dict[str, Any]:
    """Trains one phase with verl in ``local.output_dir`` (its staged copy: ``local.as_given`` keeps s3://)."""
    from longrl.train.arguments import config_fingerprint
    from longrl.train.engines.verl_checkpoint import convert_checkpoint, global_step_of
    from longrl.train.engines.verl_config import PhaseLayout
    from longrl.train.engines.verl_logs import append_metrics, training_metrics

    layout = PhaseLayout(Path(local.output_dir))
    inputs = write_phase_inputs(local, layout)
    sink = MetricsSink(layout.output_dir, local.tracking)
    sink.log({f"curriculum/{key}": value for key, value in inputs.draw.items()}, step=0)
    original = local.as_given
    recorder = difficulty_recorder_name(original.output_dir)
    verl_config = verl_run_config(local, inputs, layout, recorder)
    check_checkpoints_shared(layout)
    remote = original.output_dir if storage.is_s3(original.output_dir) else None
    state = train(local, verl_config, layout, recorder, remote, trainer)

    final = final_checkpoint(layout)
    global_step = global_step_of(final)
    model_dir = convert_checkpoint(final, layout.output_dir / MODEL_DIR, local.model)
    record = DifficultyRecorder()
    record.merge(state)
    record.write(layout.output_dir / DIFFICULTY_FILE, local.phase)
    metrics = training_metrics(layout.metric_logs)
    append_metrics(layout.output_dir, metrics)
    validation = validation_of(inputs, layout, global_step)
    if validation:
        sink.log(validation, step=global_step)
    result = {
        "config_fingerprint": config_fingerprint(original),
        "model_dir": storage.join(original.output_dir, MODEL_DIR) if remote else str(model_dir),
        "global_step": global_step,
        "engine": "verl",
        "parallelism": local.parallelism.model_dump(),
        "validation": validation,
        "final_logs": metrics[-1] if metrics else {},
        "step": f"rl-phase{local.phase}",
        "curriculum": inputs.draw,
    }
    write_sources(str(layout.output_dir), original.retrospective_from)
    storage.write_text(str(layout.output_dir / RESULT_FILE), json.dumps(result, indent=2, default=str) + "\n")
    return result
