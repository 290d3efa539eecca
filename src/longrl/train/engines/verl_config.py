"""The verl configuration of one RL phase, composed by verl's own config system from ``RLStepConfig``.

verl reads its trainer configuration with Hydra: ``verl/trainer/config/ppo_trainer.yaml`` and its
component files, with ``key=value`` overrides on top (what ``python -m verl.trainer.main_ppo
key=value ...`` does). ``phase_overrides`` turns a step config into such overrides, mirroring the
official QwenLong-L1 launch (``scripts/rl_4nodes_dapo.sh``) and verl's DAPO recipes;
``compose_verl_config`` composes them the way ``verl.trainer.main_ppo`` does (struct mode: a key
verl does not know is an error; keys verl documents as extensions start with ``+``), and
``validate_verl_config`` runs verl's own checks (``verl.utils.config.validate_config`` and the
dataclass configs the workers build). The mapping, field by field, is in the README ("verl engine").

verl 0.9.1 runs DAPO's group filtering only in its V1 trainer (``trainer.use_v1``, the default),
which keeps up to ``max_inflight_gen_batches`` train batches of prompts in generation and refills
what it filters out; ``max_num_gen_batches`` is set as the official script does but V1 ignores it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

from longrl.train.checkpoints import CHECKPOINTS_DIR
from longrl.train.config import RLStepConfig

CONFIG_NAME = "ppo_trainer"
REWARD_FUNCTION = "pkg://longrl.train.engines.verl_reward"
REWARD_FUNCTION_NAME = "compute_score"
CHECKPOINT_CALLBACK = "longrl.train.engines.verl_checkpoint.PhaseCheckpointCallback"
FILTER_GROUPS_METRIC = "acc"  # the official script's choice: DAPO drops groups of equal accuracy
VERL_DIR = "verl"
# verl's per-step metric logs live with the checkpoints: they are pushed with each checkpoint and
# pulled back with them, so a step resumed on another node keeps its earlier attempts' metrics.
METRIC_LOGS_DIR = "verl_metrics"


@dataclasses.dataclass(frozen=True)
class PhaseLayout:
    """Where a phase's verl run reads and writes, under the step's (local) output directory."""

    output_dir: Path

    @property
    def checkpoints(self) -> Path:
        return self.output_dir / CHECKPOINTS_DIR  # verl's global_step_N directories

    @property
    def verl_dir(self) -> Path:
        return self.output_dir / VERL_DIR

    @property
    def train_file(self) -> Path:
        return self.verl_dir / "train.parquet"

    @property
    def validation_file(self) -> Path:
        return self.verl_dir / "validation.parquet"

    @property
    def rollout_dumps(self) -> Path:
        return self.verl_dir / "rollouts"

    @property
    def validation_dumps(self) -> Path:
        return self.verl_dir / "validation"

    @property
    def metric_logs(self) -> Path:
        return self.checkpoints / METRIC_LOGS_DIR

    @property
    def config_file(self) -> Path:
        return self.verl_dir / "config.yaml"

    @property
    def command_file(self) -> Path:
        return self.verl_dir / "command.txt"


@dataclasses.dataclass(frozen=True)
class PhaseData:
    """What verl needs to know about the phase's data (written by ``verl_data``)."""

    train_rows: int
    longest_prompt_tokens: int
    validation_rows: int


@dataclasses.dataclass(frozen=True)
class GpuLayout:
    nodes: int
    gpus_per_node: int

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


def gpu_layout(config: RLStepConfig) -> GpuLayout:
    """Nodes x GPUs per node from ``ray``: one Ray worker per GPU, whole nodes."""
    workers = config.ray.num_workers
    per_node = min(config.ray.gpus_per_node, workers)
    if workers % per_node:
        raise ValueError(
            f"ray.num_workers ({workers}) must fill whole nodes of ray.gpus_per_node ({per_node}) GPUs "
            "for verl (trainer.nnodes x trainer.n_gpus_per_node)"
        )
    layout = GpuLayout(nodes=workers // per_node, gpus_per_node=per_node)
    parallelism = config.parallelism
    if layout.gpus % parallelism.sequence_parallel:
        raise ValueError(
            f"parallelism.sequence_parallel ({parallelism.sequence_parallel}) must divide the step's "
            f"{layout.gpus} GPUs"
        )
    tensor_parallel = parallelism.rollout_tensor_parallel
    if tensor_parallel > per_node or per_node % tensor_parallel:
        raise ValueError(
            f"parallelism.rollout_tensor_parallel ({tensor_parallel}) must divide the GPUs of one node "
            f"({per_node}): a vLLM engine does not span nodes here"
        )
    return layout


def prompt_length(config: RLStepConfig, data: PhaseData) -> int:
    return config.max_prompt_tokens or data.longest_prompt_tokens


def tokens_per_gpu(config: RLStepConfig, data: PhaseData) -> int:
    """verl's ``ppo_max_token_len_per_gpu``: a replica's micro-batch tokens over its sequence-parallel GPUs.

    verl packs ``ppo_max_token_len_per_gpu x ulysses_sequence_parallel_size`` tokens into one
    micro-batch of a sequence-parallel group, and a sequence never spans micro-batches.
    """
    sequence = prompt_length(config, data) + config.max_completion_length
    budget = config.parallelism.micro_batch_tokens or sequence
    if budget < sequence:
        raise ValueError(
            f"parallelism.micro_batch_tokens ({budget}) is shorter than one sequence of this phase "
            f"({prompt_length(config, data)} prompt + {config.max_completion_length} response tokens): "
            "verl's dynamic batching keeps a sequence in one micro-batch; raise it or set it to null"
        )
    return math.ceil(budget / config.parallelism.sequence_parallel)


def training_length(config: RLStepConfig, data: PhaseData) -> dict[str, Any]:
    """``trainer.total_epochs`` and ``trainer.total_training_steps`` (verl counts epochs in whole batches)."""
    steps_per_epoch = data.train_rows // config.train_batch_prompts
    if steps_per_epoch == 0:
        raise ValueError(
            f"phase {config.phase} has {data.train_rows} training prompts, fewer than train_batch_prompts "
            f"({config.train_batch_prompts}): verl trains whole batches"
        )
    if config.max_steps > 0:
        return {
            "trainer.total_epochs": math.ceil(config.max_steps / steps_per_epoch),
            "trainer.total_training_steps": config.max_steps,
        }
    epochs = config.num_train_epochs
    steps = None if float(epochs).is_integer() else max(1, round(epochs * steps_per_epoch))
    return {"trainer.total_epochs": math.ceil(epochs), "trainer.total_training_steps": steps}


def _optimizer_schedule(config: RLStepConfig) -> str:
    if config.lr_scheduler_type not in ("constant", "cosine"):
        raise ValueError(
            f"lr_scheduler_type {config.lr_scheduler_type!r}: verl's optimizer schedules are constant or cosine"
        )
    return config.lr_scheduler_type


def _algorithm(config: RLStepConfig) -> dict[str, Any]:
    dapo = config.algorithm == "dapo"
    return {
        "algorithm.adv_estimator": "grpo",
        "critic.enable": False,  # GRPO: group baselines, no value model
        "algorithm.norm_adv_by_std_in_grpo": True,
        "algorithm.use_kl_in_reward": False,
        "algorithm.kl_ctrl.kl_coef": 0.0,
        "algorithm.filter_groups.enable": dapo,
        "algorithm.filter_groups.metric": FILTER_GROUPS_METRIC,
        "algorithm.filter_groups.max_num_gen_batches": config.max_generation_rounds,
        "algorithm.filter_groups.max_inflight_gen_batches": math.ceil(
            config.generation_batch_prompts / config.train_batch_prompts
        ),
        "actor_rollout_ref.actor.loss_agg_mode": "token-mean" if dapo else "seq-mean-token-mean",
        "actor_rollout_ref.actor.clip_ratio": config.epsilon,
        "actor_rollout_ref.actor.clip_ratio_low": config.epsilon,
        "actor_rollout_ref.actor.clip_ratio_high": config.epsilon_high if dapo else config.epsilon,
        "actor_rollout_ref.actor.entropy_coeff": 0.0,
        "actor_rollout_ref.actor.use_kl_loss": config.beta > 0,
        "actor_rollout_ref.actor.kl_loss_coef": config.beta,
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
        "actor_rollout_ref.actor.ppo_epochs": 1,
        # One optimizer step per train batch, as RLStepConfig defines a step (the official script
        # took 4 mini-batches of 32 prompts per batch of 128).
        "actor_rollout_ref.actor.ppo_mini_batch_size": config.train_batch_prompts,
    }


def _optimizer(config: RLStepConfig) -> dict[str, Any]:
    return {
        "actor_rollout_ref.actor.optim.lr": config.learning_rate,
        "actor_rollout_ref.actor.optim.lr_scheduler_type": _optimizer_schedule(config),
        "actor_rollout_ref.actor.optim.lr_warmup_steps": config.warmup_steps,
        "actor_rollout_ref.actor.optim.weight_decay": config.weight_decay,
        "actor_rollout_ref.actor.optim.clip_grad": config.max_grad_norm,
        "actor_rollout_ref.actor.grad_clip": config.max_grad_norm,
    }


def _model(config: RLStepConfig) -> dict[str, Any]:
    parallelism = config.parallelism
    values: dict[str, Any] = {
        "actor_rollout_ref.model.path": config.model,
        "actor_rollout_ref.model.use_remove_padding": True,
        "actor_rollout_ref.model.enable_gradient_checkpointing": parallelism.gradient_checkpointing,
        "actor_rollout_ref.model.use_fused_kernels": parallelism.fused_loss,
    }
    if config.attn_implementation:
        values["+actor_rollout_ref.model.override_config.attn_implementation"] = config.attn_implementation
    return values


def _sharding(config: RLStepConfig, data: PhaseData) -> dict[str, Any]:
    parallelism = config.parallelism
    if parallelism.sharding != "fsdp":
        raise ValueError(f"engine verl shards with fsdp, not parallelism.sharding={parallelism.sharding}")
    budget = tokens_per_gpu(config, data)
    sp = parallelism.sequence_parallel
    values: dict[str, Any] = {
        "actor_rollout_ref.actor.strategy": "fsdp2",
        "actor_rollout_ref.actor.fsdp_config.param_offload": parallelism.offload_params,
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload": parallelism.offload_optimizer,
        "actor_rollout_ref.actor.fsdp_config.seed": config.seed,
        "actor_rollout_ref.actor.ulysses_sequence_parallel_size": sp,
        "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size": sp,
        "actor_rollout_ref.actor.use_dynamic_bsz": True,
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": budget,
        "actor_rollout_ref.actor.data_loader_seed": config.seed,
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz": True,
        "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": budget,
        "actor_rollout_ref.ref.fsdp_config.param_offload": parallelism.offload_params,
        "actor_rollout_ref.ref.ulysses_sequence_parallel_size": sp,
        "actor_rollout_ref.ref.log_prob_use_dynamic_bsz": True,
        "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": budget,
    }
    if not config.bf16:  # verl's default is bf16 compute over fp32 master weights
        values["+actor_rollout_ref.actor.fsdp_config.mixed_precision"] = {
            "param_dtype": "fp32",
            "reduce_dtype": "fp32",
            "buffer_dtype": "fp32",
        }
        values["actor_rollout_ref.rollout.dtype"] = "float32"
    return values


def _rollout(config: RLStepConfig, data: PhaseData) -> dict[str, Any]:
    parallelism = config.parallelism
    return {
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.n": config.num_generations,
        "actor_rollout_ref.rollout.temperature": config.temperature,
        "actor_rollout_ref.rollout.top_p": config.top_p,
        "actor_rollout_ref.rollout.top_k": -1,
        "actor_rollout_ref.rollout.seed": config.seed,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": parallelism.rollout_tensor_parallel,
        "actor_rollout_ref.rollout.gpu_memory_utilization": parallelism.rollout_memory_fraction,
        "actor_rollout_ref.rollout.enable_chunked_prefill": True,
        "actor_rollout_ref.rollout.enforce_eager": False,
        "actor_rollout_ref.rollout.max_model_len": prompt_length(config, data) + config.max_completion_length,
        # Validation answers greedily, as longrl's validation does.
        "actor_rollout_ref.rollout.val_kwargs.do_sample": False,
        "actor_rollout_ref.rollout.val_kwargs.temperature": 0.0,
        "actor_rollout_ref.rollout.val_kwargs.top_p": 1.0,
        "actor_rollout_ref.rollout.val_kwargs.top_k": -1,
        "actor_rollout_ref.rollout.val_kwargs.n": 1,
    }


def _data(config: RLStepConfig, data: PhaseData, layout: PhaseLayout) -> dict[str, Any]:
    max_prompt = prompt_length(config, data)
    validation = layout.validation_file if data.validation_rows else layout.train_file
    return {
        "data.train_files": str(layout.train_file),
        # verl builds a validation loader even when it never validates: the train file stands in then.
        "data.val_files": str(validation),
        "data.prompt_key": "prompt",
        "data.max_prompt_length": max_prompt,
        "data.max_response_length": config.max_completion_length,
        "data.train_batch_size": config.train_batch_prompts,
        "data.filter_overlong_prompts": data.longest_prompt_tokens > max_prompt,
        "data.truncation": "error",
        "data.shuffle": True,
        "data.seed": config.seed + config.phase,
    }


def _reward(config: RLStepConfig, recorder: str | None) -> dict[str, Any]:
    dapo = config.algorithm == "dapo"
    overlong = dapo and config.overlong_buffer > 0
    judge = config.judge.model_dump_json() if config.reward == "hybrid" and config.judge else None
    return {
        "reward.reward_manager.name": "dapo",
        "reward.custom_reward_function.path": REWARD_FUNCTION,
        "reward.custom_reward_function.name": REWARD_FUNCTION_NAME,
        "+reward.custom_reward_function.reward_kwargs.judge": judge,
        "+reward.custom_reward_function.reward_kwargs.difficulty_recorder": recorder,
        "+reward.reward_kwargs.overlong_buffer_cfg.enable": overlong,
        "+reward.reward_kwargs.overlong_buffer_cfg.len": config.overlong_buffer if overlong else 0,
        "+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor": config.overlong_penalty_factor,
        "+reward.reward_kwargs.overlong_buffer_cfg.log": overlong,
        "+reward.reward_kwargs.max_resp_len": config.max_completion_length,
    }


def _trainer(config: RLStepConfig, data: PhaseData, layout: PhaseLayout, mlflow: bool) -> dict[str, Any]:
    gpus = gpu_layout(config)
    validate = data.validation_rows > 0
    return {
        "trainer.device": "cuda",
        "trainer.nnodes": gpus.nodes,
        "trainer.n_gpus_per_node": gpus.gpus_per_node,
        **({"actor_rollout_ref.nccl_timeout": t} if (t := config.ray.collective_timeout_s) else {}),
        "trainer.project_name": config.tracking.experiment,
        "trainer.experiment_name": config.tracking.run_name or f"rl-phase{config.phase}",
        "trainer.logger": ["console", "file", *(["mlflow"] if mlflow else [])],
        "trainer.default_local_dir": str(layout.checkpoints),
        "trainer.resume_mode": "auto",
        "trainer.save_freq": config.save_steps,
        "trainer.max_actor_ckpt_to_keep": config.save_total_limit,
        "trainer.test_freq": config.save_steps if validate else -1,
        "trainer.val_before_train": False,
        "trainer.rollout_data_dir": str(layout.rollout_dumps),
        "trainer.validation_data_dir": str(layout.validation_dumps),
        "trainer.checkpoint_callback_class": CHECKPOINT_CALLBACK,
        "trainer.use_v1": True,
        "trainer.v1.trainer_mode": "sync",
        **training_length(config, data),
    }


def phase_overrides(
    config: RLStepConfig,
    data: PhaseData,
    layout: PhaseLayout,
    recorder: str | None = None,
    mlflow: bool = False,
) -> dict[str, Any]:
    """verl config keys (``+`` marks keys verl lets a run add) and values for one RL phase.

    ``recorder`` names the Ray actor that keeps the phase's difficulty record; ``mlflow`` adds
    verl's MLflow logger (it attaches to the run named by ``MLFLOW_RUN_ID``).
    """
    return {
        **_data(config, data, layout),
        **_model(config),
        **_algorithm(config),
        **_optimizer(config),
        **_sharding(config, data),
        **_rollout(config, data),
        **_reward(config, recorder),
        **_trainer(config, data, layout, mlflow),
    }


_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "null", "nan", "inf"}


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar (strings quoted, so paths and JSON pass unchanged)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _RESERVED:
            return value
        if "${" in value:
            raise ValueError(f"{value!r}: '${{' would be read as an interpolation by verl's config system")
        # Backslashes right before a quote (or the end) are escapes in Hydra's quoted strings.
        escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value).replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Hydra form for {type(value).__name__} {value!r}")


def hydra_overrides(values: dict[str, Any]) -> list[str]:
    return [f"{key}={hydra_value(value)}" for key, value in values.items()]


def verl_config_dir() -> str:
    import verl.trainer

    return str(Path(verl.trainer.__file__).parent / "config")


def compose_verl_config(overrides: list[str]) -> Any:
    """verl's trainer config with ``overrides``, composed as ``verl.trainer.main_ppo`` composes it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=verl_config_dir(), version_base=None):
        return compose(config_name=CONFIG_NAME, overrides=overrides)


def validate_verl_config(config: Any) -> None:
    """verl's own checks of a composed config: ``validate_config``, the dataclass configs its workers
    build from it (model, rollout, algorithm), and the reward manager's registration.

    Raises what verl raises (ValueError / AssertionError / omegaconf and Hydra errors), naming the key.
    """
    from verl.trainer.ppo.reward import resolve_reward_manager_cls
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    validate_config(
        config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
    )
    for section in (
        config.algorithm,
        config.actor_rollout_ref.model,
        config.actor_rollout_ref.rollout,
        config.actor_rollout_ref.rollout.checkpoint_engine,
    ):
        omega_conf_to_dataclass(section)
    resolve_reward_manager_cls(config)


def command_line(values: dict[str, Any]) -> str:
    """The same run as a shell command (for reproducing a phase by hand)."""
    import shlex

    return "python -m verl.trainer.main_ppo \\\n    " + " \\\n    ".join(
        shlex.quote(item) for item in hydra_overrides(values)
    )
