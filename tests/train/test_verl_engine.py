"""The verl engine as far as a CPU allows: verl's config system, dataset, DAPO reward loop, checkpoint
manager, model merger, loggers and dumps, all real verl code; only ``run_ppo``'s training loop (GPU
workers, vLLM) is replaced, in the end-to-end test, by a stand-in that leaves what it would leave,
written with verl's own writers."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import torch

from longrl.curriculum import DIFFICULTY_FILE, TRAIN_DATA_FILE, DifficultyRecorder, read_difficulty, read_rows
from longrl.data import GenerateConfig, PrepareConfig, generate, prepare
from longrl.rewards import HybridReward, JudgeConfig, LLMJudge
from longrl.tracking import TrackingConfig, read_metrics
from longrl.train.checkpoints import CHECKPOINTS_DIR, MODEL_DIR, RESULT_FILE
from longrl.train.config import RLStepConfig, SFTStepConfig
from longrl.train.engines import TrainingFailed
from longrl.train.engines.verl_config import (
    PhaseData,
    PhaseLayout,
    compose_verl_config,
    hydra_overrides,
    hydra_value,
    phase_overrides,
    validate_verl_config,
)
from tests.support.openai_server import serve_verifier
from tests.train.verl_support import rollout_data, save_fsdp_checkpoint


@pytest.fixture(scope="module")
def prepared(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("verl-data")
    common = {"kinds": ["multihop", "choice", "docmath"], "doc_tokens_min": 16, "doc_tokens_max": 300}
    generate(GenerateConfig(output=str(root / "qa.jsonl"), num_records=40, seed=5, **common))
    prepare(
        PrepareConfig(
            inputs=[str(root / "qa.jsonl")],
            output_dir=str(root / "prep"),
            tokenizer=str(tiny_model_dir),
            phase_max_tokens=[230, 1000],
            validation_fraction=0.15,
        )
    )
    return root / "prep"


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def fsdp_checkpoint(tiny_model_dir, tmp_path_factory):
    """A checkpoint written by verl's FSDPCheckpointManager over 2 gloo processes (FSDP2), and its weights."""
    root = tmp_path_factory.mktemp("verl-checkpoint")
    expected = save_fsdp_checkpoint(tiny_model_dir, root / "actor")
    return root / "actor", torch.load(expected)


def step_config(model: Path, out: Path | str, train_file: Path, **values) -> RLStepConfig:
    base = {
        "model": str(model),
        "output_dir": str(out),
        "train_file": str(train_file),
        "engine": "verl",
        "reward": "rule",
        "parallelism": {"sharding": "fsdp"},
        "ray": {"num_workers": 2, "gpus_per_node": 2, "use_gpu": True},
        "bf16": True,
        "train_batch_prompts": 2,
        "generation_batch_prompts": 2,
        "num_generations": 2,
        "per_device_train_batch_size": 2,
    }
    return RLStepConfig.model_validate({**base, **values})


def composed(config: RLStepConfig, data: PhaseData, recorder: str | None = None, mlflow: bool = False):
    values = phase_overrides(config, data, PhaseLayout(Path(config.output_dir)), recorder, mlflow)
    config = compose_verl_config(hydra_overrides(values))
    validate_verl_config(config)
    return config


# The official QwenLong-L1 launch (Tongyi-Zhiwen/QwenLong-L1, scripts/rl_4nodes_dapo.sh): its keys
# (verl 0.9.1 names where verl renamed them) and values, which the same settings in longrl must give.
OFFICIAL = {
    "data.max_prompt_length": 60000,
    "data.max_response_length": 10000,
    "data.train_batch_size": 128,
    "actor_rollout_ref.rollout.n": 8,
    "algorithm.adv_estimator": "grpo",
    "algorithm.kl_ctrl.kl_coef": 0.0,
    "actor_rollout_ref.actor.kl_loss_coef": 0.0,
    "actor_rollout_ref.actor.clip_ratio_low": 0.2,
    "actor_rollout_ref.actor.clip_ratio_high": 0.2,
    "algorithm.filter_groups.enable": True,
    "algorithm.filter_groups.max_num_gen_batches": 10,
    "algorithm.filter_groups.metric": "acc",
    "actor_rollout_ref.model.use_remove_padding": True,
    "actor_rollout_ref.actor.use_dynamic_bsz": True,
    "actor_rollout_ref.ref.log_prob_use_dynamic_bsz": True,
    "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz": True,
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": 10000,
    "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": 10000,
    "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": 10000,
    "actor_rollout_ref.model.enable_gradient_checkpointing": True,
    "actor_rollout_ref.actor.optim.lr": 2e-6,
    "actor_rollout_ref.actor.ppo_epochs": 1,
    "actor_rollout_ref.actor.fsdp_config.param_offload": True,
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload": True,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",  # use_token_level_loss=True
    "actor_rollout_ref.actor.ulysses_sequence_parallel_size": 8,
    "actor_rollout_ref.rollout.gpu_memory_utilization": 0.5,
    "actor_rollout_ref.rollout.tensor_model_parallel_size": 4,
    "actor_rollout_ref.rollout.enable_chunked_prefill": True,
    "actor_rollout_ref.rollout.enforce_eager": False,
    "actor_rollout_ref.rollout.top_k": -1,
    "actor_rollout_ref.rollout.top_p": 0.95,
    "actor_rollout_ref.rollout.temperature": 0.7,
    "actor_rollout_ref.ref.fsdp_config.param_offload": True,
    "actor_rollout_ref.ref.ulysses_sequence_parallel_size": 8,
    "reward.reward_kwargs.overlong_buffer_cfg.enable": True,  # custom_reward_function.overlong_buffer.*
    "reward.reward_kwargs.overlong_buffer_cfg.len": 1000,
    "reward.reward_kwargs.overlong_buffer_cfg.penalty_factor": 1.0,
    "trainer.n_gpus_per_node": 8,
    "trainer.nnodes": 4,
    "trainer.test_freq": 5,
    "trainer.save_freq": 5,
    "trainer.resume_mode": "auto",
    "trainer.total_epochs": 30,
}


def official_step(model: Path, out: Path, judge: JudgeConfig) -> RLStepConfig:
    return step_config(
        model,
        out,
        out / "train.parquet",
        reward="hybrid",
        judge=judge,
        train_batch_prompts=128,
        generation_batch_prompts=384,
        num_generations=8,
        per_device_train_batch_size=8,
        epsilon_high=0.2,  # the official run clipped symmetrically
        max_generation_rounds=10,
        max_prompt_tokens=60000,
        max_completion_length=10000,
        save_steps=5,
        num_train_epochs=30,
        parallelism={
            "sharding": "fsdp",
            "offload_params": True,
            "offload_optimizer": True,
            "sequence_parallel": 8,
            "micro_batch_tokens": 80000,
            "rollout_tensor_parallel": 4,
            "rollout_memory_fraction": 0.5,
        },
        ray={"num_workers": 32, "gpus_per_node": 8, "use_gpu": True},
    )


def test_official_launch_configuration_composes_and_validates_through_verl(tiny_model_dir, tmp_path):
    from omegaconf import OmegaConf

    judge = JudgeConfig(base_url="http://verifier:8000/v1", model="Qwen2.5-1.5B-Instruct")
    config = composed(
        official_step(tiny_model_dir, tmp_path, judge),
        PhaseData(train_rows=1600, longest_prompt_tokens=59000, validation_rows=64),
    )
    for key, value in OFFICIAL.items():
        assert OmegaConf.select(config, key) == value, key
    # verl's own dataclass view of the actor: Ulysses reaches the engine config verl's FSDP engine reads
    from verl.utils.config import omega_conf_to_dataclass

    actor = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    assert (actor.strategy, actor.fsdp_config.ulysses_sequence_parallel_size) == ("fsdp2", 8)
    assert config.algorithm.filter_groups.max_inflight_gen_batches == 3  # 384 prompts in generation
    assert config.actor_rollout_ref.actor.use_kl_loss is False
    assert config.actor_rollout_ref.rollout.max_model_len == 70000
    assert JudgeConfig.model_validate_json(config.reward.custom_reward_function.reward_kwargs.judge) == judge
    assert config.reward.custom_reward_function.path == "pkg://longrl.train.engines.verl_reward"
    assert config.trainer.checkpoint_callback_class.endswith("PhaseCheckpointCallback")


def test_unknown_keys_and_invalid_values_fail_in_verls_config_system(tiny_model_dir, tmp_path):
    from hydra.errors import ConfigCompositionException, InstantiationException

    config = step_config(tiny_model_dir, tmp_path, tmp_path / "train.parquet")
    data = PhaseData(train_rows=8, longest_prompt_tokens=300, validation_rows=0)
    values = phase_overrides(config, data, PhaseLayout(tmp_path))
    with pytest.raises(ConfigCompositionException, match="ulysses_sequence_paralel_size"):
        compose_verl_config(
            [*hydra_overrides(values), "actor_rollout_ref.actor.ulysses_sequence_paralel_size=2"]
        )
    bad = compose_verl_config([*hydra_overrides(values), "actor_rollout_ref.actor.loss_agg_mode=token-avg"])
    with pytest.raises((ValueError, InstantiationException), match="loss_agg_mode"):
        validate_verl_config(bad)
    bad = compose_verl_config([*hydra_overrides(values), "reward.reward_manager.name=dapo2"])
    with pytest.raises(ValueError, match="dapo2"):
        validate_verl_config(bad)
    short = config.model_copy(
        update={"parallelism": config.parallelism.model_copy(update={"micro_batch_tokens": 1000})}
    )
    with pytest.raises(ValueError, match="micro_batch_tokens"):
        phase_overrides(short, data, PhaseLayout(tmp_path))
    odd = config.model_copy(
        update={"parallelism": config.parallelism.model_copy(update={"sequence_parallel": 3})}
    )
    with pytest.raises(ValueError, match="sequence_parallel"):
        phase_overrides(odd, data, PhaseLayout(tmp_path))


def test_step_config_variants_reach_verl(tiny_model_dir, tmp_path):
    data = PhaseData(train_rows=9, longest_prompt_tokens=300, validation_rows=0)
    grpo = composed(
        step_config(tiny_model_dir, tmp_path, tmp_path / "t", algorithm="grpo", num_train_epochs=2), data
    )
    assert grpo.algorithm.filter_groups.enable is False
    assert grpo.actor_rollout_ref.actor.clip_ratio_high == 0.2
    assert grpo.actor_rollout_ref.actor.loss_agg_mode == "seq-mean-token-mean"
    assert grpo.reward.reward_kwargs.overlong_buffer_cfg.enable is False
    assert (grpo.trainer.total_epochs, grpo.trainer.total_training_steps) == (2, None)
    assert grpo.trainer.test_freq == -1  # no validation rows
    kl = composed(
        step_config(
            tiny_model_dir,
            tmp_path,
            tmp_path / "t",
            beta=0.04,
            bf16=False,
            num_train_epochs=1.5,
            attn_implementation="sdpa",
            parallelism={"sharding": "fsdp", "fused_loss": True},
        ),
        data,
    )
    assert (kl.actor_rollout_ref.actor.use_kl_loss, kl.actor_rollout_ref.actor.kl_loss_coef) == (True, 0.04)
    assert kl.actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype == "fp32"
    assert kl.actor_rollout_ref.rollout.dtype == "float32"
    assert kl.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert kl.actor_rollout_ref.model.use_fused_kernels is True
    assert (kl.trainer.total_epochs, kl.trainer.total_training_steps) == (2, 6)  # 1.5 x 4 batches
    steps = composed(step_config(tiny_model_dir, tmp_path, tmp_path / "t", max_steps=10), data)
    assert (steps.trainer.total_epochs, steps.trainer.total_training_steps) == (3, 10)
    with pytest.raises(ValueError, match="lr_scheduler_type"):
        phase_overrides(
            step_config(tiny_model_dir, tmp_path, tmp_path / "t", lr_scheduler_type="linear"),
            data,
            PhaseLayout(tmp_path),
        )


def test_values_pass_verls_override_grammar_unchanged():
    values = [
        "/data/a b/c:d.parquet",
        "it's a \"quote\" \\ and \\' back",
        "trailing backslash \\",
        '{"base_url": "http://verifier:8000/v1", "model": "m"}',
        "true",
        "123",
        "token-mean",
        None,
        True,
        2e-6,
        10000,
        ["console", "file"],
        {"param_dtype": "fp32", "reduce_dtype": "fp32"},
    ]
    config = compose_verl_config([f"+trainer.probe_{i}={hydra_value(v)}" for i, v in enumerate(values)])
    from omegaconf import OmegaConf

    for i, value in enumerate(values):
        got = OmegaConf.to_container(config.trainer)[f"probe_{i}"]
        assert got == value and type(got) is type(value), (value, got)
    with pytest.raises(ValueError, match="interpolation"):
        hydra_value("${oc.env:HOME}")


def test_verl_dataset_gives_the_trl_engines_prompt_tokens(prepared, tiny_model_dir, tiny_tokenizer, tmp_path):
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    from longrl.data.schema import canonical_fields
    from longrl.train.engines.verl_data import chat_messages_of, validation_rows_within, write_phase_data

    rows = read_rows(prepared / "train-phase1.parquet")
    validation = read_rows(prepared / "validation.parquet")
    layout = PhaseLayout(tmp_path)
    data = write_phase_data(rows, validation, layout, tiny_tokenizer)
    assert (data.train_rows, data.validation_rows) == (len(rows), len(validation))
    assert data.longest_prompt_tokens == max(r["prompt_tokens"] for r in rows)
    config = composed(step_config(tiny_model_dir, tmp_path, prepared / "train-phase1.parquet"), data)
    dataset = create_rl_dataset(config.data.train_files, config.data, tiny_tokenizer, None, is_train=True)
    builder = create_continuous_token_builder(tiny_tokenizer, hf_model_type="qwen2")
    assert len(dataset) == len(rows)
    for row, item in zip(rows, dataset, strict=True):
        # the prompt the rollout generates from, token for token what TRL tokenizes from `prompt`
        ids = builder.build_initial_tokens(item["raw_prompt"])
        assert list(ids) == tiny_tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        assert item["extra_info"]["id"] == row["id"] and item["extra_info"]["split"] == "train"
        assert item["reward_model"]["ground_truth"] == row["answer"]
        assert item["data_source"] == row["data_source"]
    # longrl's own reader of verl-layout data (how DocQA-RL-1.6K is read) gets the example back
    back = canonical_fields(read_rows(layout.train_file)[0])
    assert (back["id"], back["question"], back["answer"]) == (
        rows[0]["id"],
        rows[0]["question"],
        rows[0]["answer"],
    )
    # verl validates on the validation rows that fit the phase's prompt length
    limit = sorted(r["prompt_tokens"] for r in validation)[len(validation) // 2]
    within = validation_rows_within(
        step_config(
            tiny_model_dir, tmp_path, prepared / "x", validation_file=str(prepared / "validation.parquet")
        ),
        limit,
    )
    assert within == [r for r in validation if r["prompt_tokens"] <= limit][:64] and len(within) < len(
        validation
    )
    foreign = {**rows[0], "prompt": "<|im_start|>user\n" + rows[0]["prompt"].split("user\n", 1)[1]}
    foreign["prompt"] = foreign["prompt"].replace("<think>\n", "")
    with pytest.raises(ValueError, match="chat template"):
        chat_messages_of(foreign, tiny_tokenizer)


def responses(row: dict) -> list[str]:
    """Answers in the published formats: right, wrong, unanswered, and right after long reasoning."""
    truth = row["answer"]
    right = (
        f"The correct answer is {truth}." if truth.startswith("(") else f"Therefore, the answer is {truth}."
    )
    return [
        f"The text says so.\n</think>\n{right}",
        "I looked at the text.\n</think>\nTherefore, the answer is Elsewhere.",
        "Still reading the document",
        "Reading the text closely, section by section, fact by fact, and again. " + f"\n</think>\n{right}",
    ]


def score_through_verl(config, dataset, tokenizer) -> list[tuple[dict, str, list[int], dict]]:
    """Every response of ``responses`` for every row, scored by verl's RewardLoopWorker (DAPO manager)."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    worker = RewardLoopWorker(config)
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2")
    scored = []
    for item in dataset:
        prompt_ids = list(builder.build_initial_tokens(item["raw_prompt"]))
        for text in responses({"answer": item["reward_model"]["ground_truth"]}):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            assert tokenizer.decode(ids, skip_special_tokens=True) == text
            out = worker.loop.run_until_complete(worker.compute_score(rollout_data(item, prompt_ids, ids)))
            scored.append((item, text, ids, out))
    return scored


@pytest.mark.parametrize("reward", ["rule", "hybrid"])
def test_verls_dapo_reward_manager_scores_like_longrls_reward(
    reward, prepared, tiny_model_dir, tiny_tokenizer, tmp_path, ray_local
):
    import ray
    from trl.rewards import get_soft_overlong_punishment
    from verl.trainer.ppo.utils import create_rl_dataset

    from longrl.train.engines.verl_data import write_phase_data
    from longrl.train.engines.verl_reward import difficulty_state, start_difficulty_actor

    pool = read_rows(prepared / "train-phase1.parquet") + read_rows(prepared / "train-phase2.parquet")
    by_source = {row["data_source"]: row for row in pool}
    rows = sorted(by_source.values(), key=lambda row: row["id"])  # one example of each kind
    assert len(rows) == 4
    layout = PhaseLayout(tmp_path)
    data = write_phase_data(rows, [], layout, tiny_tokenizer)
    with serve_verifier() as (url, script):
        judge = JudgeConfig(base_url=url, model="verifier") if reward == "hybrid" else None
        # the judge calls "Elsewhere" right for one free-text example: the hybrid reward rescues it
        free_text = next(row for row in rows if "choice" not in row["data_source"])
        script.synonyms.add(("elsewhere", free_text["answer"].lower()))
        config = step_config(
            tiny_model_dir,
            tmp_path,
            prepared / "train-phase1.parquet",
            reward=reward,
            judge=judge,
            max_completion_length=48,
            overlong_buffer=16,
            overlong_penalty_factor=0.5,
        )
        recorder = f"test-recorder-{reward}"
        actor = start_difficulty_actor(recorder, None)
        verl_config = composed(config, data, recorder=recorder)
        dataset = create_rl_dataset(
            verl_config.data.train_files, verl_config.data, tiny_tokenizer, None, True
        )
        scored = score_through_verl(verl_config, dataset, tiny_tokenizer)
        direct = HybridReward(LLMJudge(judge) if judge else None)
        overlong = get_soft_overlong_punishment(48, 16)
        expected_record = DifficultyRecorder()
        rescued = 0
        for item, text, ids, out in scored:
            row = next(r for r in rows if r["id"] == item["extra_info"]["id"])
            breakdown = asyncio.run(direct.score(row["data_source"], text, row["answer"], row["question"]))
            penalty = 0.5 * overlong([ids])[0]
            assert out["reward_score"] == pytest.approx(breakdown.hybrid + penalty)
            assert out["reward_extra_info"]["acc"] == breakdown.hybrid
            assert out["reward_extra_info"]["rule_reward"] == breakdown.rule
            rescued += out["reward_extra_info"]["judge_rescued"]
            expected_record.add([row["id"]], [breakdown.hybrid])
        assert rescued == (1 if reward == "hybrid" else 0)
        assert any(out["reward_score"] < out["reward_extra_info"]["acc"] for *_, out in scored)  # overlong
        assert difficulty_state(actor) == expected_record.state()
        ray.kill(actor)


@pytest.mark.slow
def test_verl_checkpoint_converts_to_a_loadable_hugging_face_model(fsdp_checkpoint, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from longrl.train.engines.verl_checkpoint import CheckpointNotShared, convert_checkpoint

    actor, expected = fsdp_checkpoint
    assert json.loads((actor / "fsdp_config.json").read_text()) == {"FSDP_version": 2, "world_size": 2}
    checkpoint = tmp_path / "global_step_1"
    shutil.copytree(actor, checkpoint / "actor")
    model_dir = convert_checkpoint(checkpoint, tmp_path / "model", str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert AutoTokenizer.from_pretrained(model_dir).chat_template
    weights = model.state_dict()
    assert set(weights) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name], tensor.to(torch.bfloat16), rtol=0, atol=0, msg=name)
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert not torch.equal(
        original["model.embed_tokens.weight"].bfloat16(), weights["model.embed_tokens.weight"]
    )
    (checkpoint / "actor" / "model_world_size_2_rank_1.pt").unlink()
    with pytest.raises(CheckpointNotShared, match="rank_1"):
        convert_checkpoint(checkpoint, tmp_path / "model2", str(tiny_model_dir))


def test_sft_is_refused_with_the_engine_to_use(tiny_model_dir, tmp_path):
    from longrl.train.engines.verl import VerlEngine

    config = SFTStepConfig(model=str(tiny_model_dir), output_dir=str(tmp_path), train_file="x.parquet")
    with pytest.raises(ValueError, match="SFT uses engine trl"):
        VerlEngine().run("sft", config)


def test_verls_trainer_entrypoint_imports():
    """What ``run_verl_trainer`` calls on the GPU cluster is importable here (V1 needs TransferQueue)."""
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.v1 import get_trainer_cls

    assert callable(run_ppo) and hasattr(TaskRunnerV1, "options")
    assert get_trainer_cls("sync").__name__ == "PPOTrainerSync"


class StandInTrainer:
    """Leaves what verl's trainer leaves after ``steps`` (verl's writers, reward loop and callback)."""

    def __init__(
        self,
        monkeypatch,
        tokenizer,
        actor_dir: Path,
        steps: list[int],
        answers_right: bool,
        fail_after: bool = False,
        validation_outputs: list[str] | None = None,
    ) -> None:
        self.monkeypatch, self.tokenizer, self.actor_dir = monkeypatch, tokenizer, actor_dir
        self.steps, self.answers_right, self.fail_after = steps, answers_right, fail_after
        self.validation_outputs = validation_outputs
        self.recorded = DifficultyRecorder()
        self.configs = []

    def __call__(self, config, env: dict[str, str]) -> None:
        from omegaconf import OmegaConf
        from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
        from verl.trainer.ppo.checkpoint_callback import build_checkpoint_callback
        from verl.trainer.ppo.utils import create_rl_dataset
        from verl.trainer.ppo.v1.trainer_base import PPOTrainer
        from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
        from verl.utils.tracking import Tracking

        self.configs.append(config)
        for key, value in env.items():  # what verl's task runner gets through its runtime env
            self.monkeypatch.setenv(key, value)
        tracking = Tracking(
            project_name=config.trainer.project_name,
            experiment_name=config.trainer.experiment_name,
            default_backend=[b for b in config.trainer.logger if b != "console"],
            config=OmegaConf.to_container(config, resolve=True),
        )
        worker = RewardLoopWorker(config)
        builder = create_continuous_token_builder(self.tokenizer, hf_model_type="qwen2")
        train = create_rl_dataset(config.data.train_files, config.data, self.tokenizer, None, True)
        checkpoints = Path(config.trainer.default_local_dir)
        callback = build_checkpoint_callback(config)
        for step in self.steps:
            scores = []
            for item in train:
                prompt = list(builder.build_initial_tokens(item["raw_prompt"]))
                text = responses({"answer": item["reward_model"]["ground_truth"]})[
                    0 if self.answers_right else 1
                ]
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [
                    self.tokenizer.eos_token_id
                ]
                for _ in range(config.actor_rollout_ref.rollout.n):
                    out = worker.loop.run_until_complete(
                        worker.compute_score(rollout_data(item, prompt, ids))
                    )
                    self.recorded.add([item["extra_info"]["id"]], [out["reward_extra_info"]["acc"]])
                    scores.append(out["reward_score"])
            tracking.log(
                {"critic/score/mean": sum(scores) / len(scores), "actor/pg_loss": 0.1 * step}, step=step
            )
            checkpoint = checkpoints / f"global_step_{step}"
            shutil.copytree(self.actor_dir, checkpoint / "actor")
            (checkpoints / "latest_checkpointed_iteration.txt").write_text(str(step))
            callback.on_save(trainer=None, global_step=step, checkpoint_dir=str(checkpoint))
        if self.fail_after:
            tracking.finish(exit_code=1)
            raise RuntimeError("a GPU node was lost")
        validation = create_rl_dataset(config.data.val_files, config.data, self.tokenizer, None, False)
        inputs, infos = [], {}
        for item, output in zip(validation, self.validation_outputs, strict=True):
            prompt = list(builder.build_initial_tokens(item["raw_prompt"]))
            inputs.append(self.tokenizer.decode(prompt, skip_special_tokens=True))
            ids = self.tokenizer(output, add_special_tokens=False)["input_ids"]
            out = worker.loop.run_until_complete(worker.compute_score(rollout_data(item, prompt, ids)))
            for key, value in out["reward_extra_info"].items():
                infos.setdefault(key, []).append(value)
        PPOTrainer._write_generations(
            inputs,
            self.validation_outputs,
            [None] * len(inputs),
            infos["acc"],
            infos,
            config.trainer.validation_data_dir,
            self.steps[-1],
        )
        tracking.finish()


@pytest.mark.slow
def test_engine_leaves_the_trl_engines_outputs_in_s3_and_resumes_on_a_fresh_node(
    prepared, tiny_model_dir, tiny_tokenizer, fsdp_checkpoint, tmp_path, ray_local, monkeypatch, s3_endpoint
):
    from mlflow import MlflowClient
    from transformers import AutoModelForCausalLM

    from longrl import storage
    from longrl.train.engines.verl import VerlEngine
    from longrl.train.staging import local_output_dir
    from longrl.train.validation import score_completions

    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))

    # an earlier phase to draw retrospective samples from
    earlier = tmp_path / "phase1"
    phase1 = read_rows(prepared / "train-phase1.parquet")
    record = DifficultyRecorder()
    record.add([r["id"] for r in phase1], [0.0] * len(phase1))
    record.write(earlier / DIFFICULTY_FILE, 1)
    shutil.copy(prepared / "train-phase1.parquet", earlier / TRAIN_DATA_FILE)

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("verl-test")).info.run_id
    uri = "s3://longrl/runs/phase2"
    limit = max(r["prompt_tokens"] for r in read_rows(prepared / "train-phase2.parquet"))
    validation_rows = [r for r in read_rows(prepared / "validation.parquet") if r["prompt_tokens"] <= limit][
        :3
    ]
    config = step_config(
        tiny_model_dir,
        uri,
        prepared / "train-phase2.parquet",
        phase=2,
        retrospective_from=[str(earlier)],
        retrospective_share=0.5,
        validation_file=str(prepared / "validation.parquet"),
        validation_max_examples=3,
        max_steps=2,
        save_steps=1,
        generation_batch_prompts=4,
        max_completion_length=64,
        overlong_buffer=16,
        tracking=TrackingConfig(tracking_uri=tracking_uri, run_id=run_id, experiment="verl-test"),
    )
    actor_dir, expected = fsdp_checkpoint

    first = StandInTrainer(
        monkeypatch, tiny_tokenizer, actor_dir, steps=[1], answers_right=True, fail_after=True
    )
    with pytest.raises(TrainingFailed, match="GPU node was lost"):
        VerlEngine(trainer=first).run("rl", config)
    # verl's checkpoint, the difficulty record with it, then the tracker naming it went to the store
    pushed = set(storage.list_files(f"{uri}/{CHECKPOINTS_DIR}"))
    assert {"latest_checkpointed_iteration.txt", "global_step_1/difficulty_state.json"} <= pushed
    assert "global_step_1/actor/model_world_size_2_rank_1.pt" in pushed
    assert not storage.exists(f"{uri}/{RESULT_FILE}")
    shutil.rmtree(local_output_dir(uri))  # the step restarts on a fresh node: only the store remains

    answers = [f"Hmm.\n</think>\nTherefore, the answer is {r['answer']}." for r in validation_rows[:2]] + [
        "no idea"
    ]
    second = StandInTrainer(
        monkeypatch, tiny_tokenizer, actor_dir, steps=[2], answers_right=False, validation_outputs=answers
    )
    result = VerlEngine(trainer=second).run("rl", config)
    out = tmp_path / "downloaded"
    storage.copy_tree(uri, str(out))

    # the same result keys as the trl engine's result.json, and the files the next phase reads
    assert json.loads((out / RESULT_FILE).read_text()) == result
    assert {
        "config_fingerprint",
        "model_dir",
        "global_step",
        "validation",
        "final_logs",
        "step",
        "curriculum",
        "parallelism",
    } <= set(result)
    from longrl.train.arguments import config_fingerprint

    assert result["config_fingerprint"] == config_fingerprint(config)
    assert result["global_step"] == 2 and result["step"] == "rl-phase2"
    assert result["model_dir"] == f"{uri}/{MODEL_DIR}"
    assert result["curriculum"]["retrospective_drawn"] > 0
    trained = read_rows(out / TRAIN_DATA_FILE)
    assert any(r["retrospective"] for r in trained)
    assert json.loads((out / "curriculum.json").read_text()) == {"retrospective_from": [str(earlier)]}
    # difficulty: the first attempt's rewards (restored from its checkpoint) and the second's
    both = DifficultyRecorder()
    both.merge(first.recorded.state())
    both.merge(second.recorded.state())
    difficulty = read_difficulty(out / DIFFICULTY_FILE)
    assert set(difficulty) == {r["id"] for r in trained}
    for prompt_id, row in difficulty.items():
        total, n = both.state()[prompt_id]
        assert (row["samples"], row["mean_reward"]) == (n, pytest.approx(total / n))
        assert row["phase"] == 2
    # validation: verl's dump scored as the trl engine scores its validation answers
    assert result["validation"] == pytest.approx(score_completions(validation_rows, answers, tiny_tokenizer))
    assert result["validation"]["val/accuracy"] == pytest.approx(2 / 3)
    # the model: verl's checkpoint merged, loadable, with the tokenizer
    model = AutoModelForCausalLM.from_pretrained(out / MODEL_DIR)
    for name, tensor in expected.items():
        torch.testing.assert_close(model.state_dict()[name], tensor.bfloat16(), rtol=0, atol=0)
    assert (out / MODEL_DIR / "tokenizer.json").is_file()
    # metrics.jsonl: curriculum (each attempt), verl's steps of both attempts, validation
    lines = read_metrics(out)
    assert [m["step"] for m in lines if "actor/pg_loss" in m] == [1, 2]
    assert any("curriculum/retrospective_drawn" in m for m in lines)
    assert lines[-1]["val/accuracy"] == pytest.approx(2 / 3)
    assert result["final_logs"]["actor/pg_loss"] == pytest.approx(0.2)
    # the step's MLflow run: verl's own MLflow logger attached to it, and longrl's validation
    history = client.get_metric_history(run_id, "actor/pg_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2))]
    assert client.get_metric_history(run_id, "val/accuracy")[-1].value == pytest.approx(2 / 3)
    # the verl config of the run, for reproducing it by hand
    assert "verl.trainer.main_ppo" in (out / "verl" / "command.txt").read_text()
    assert second.configs[0].trainer.default_local_dir == str(local_output_dir(uri) / CHECKPOINTS_DIR)
