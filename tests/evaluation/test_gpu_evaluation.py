"""Evaluation with launcher=kuberay: a GPU RayJob (vLLM, tensor parallel, YaRN past the native context).

The RayJob is built by the kuberay launcher, validated against KubeRay's CRDs and watched through a
fake Kubernetes API; the YaRN override is checked against vLLM's own model config. The GPU run
itself needs a GPU node (see the report of the device check in the README)."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from longrl import storage
from longrl.evaluation.generation import GenerationConfig, rope_overrides, tensor_parallel_for
from longrl.evaluation.on_ray import ENTRYPOINT, sized_for_model
from longrl.evaluation.run import EvalConfig
from longrl.launchers.kuberay import CONFIG_ENV
from longrl.launchers.schemas import validation_errors
from longrl.steps import RUN_ID_ENV, Placement, run_evaluation
from tests.support.fake_kube import FakeKubernetesApi

CRDS = sorted(Path(__file__).parents[1].joinpath("fixtures", "kuberay-crds").glob("*.yaml"))


@pytest.fixture
def long_context_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with Qwen2.5's RoPE base (1e6), which YaRN must keep."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["rope_parameters"] = {"rope_theta": 1_000_000.0, "rope_type": "default"}
    (model / "config.json").write_text(json.dumps(config))
    return model


def test_yarn_keeps_the_models_own_rope_base(long_context_model) -> None:
    generation = GenerationConfig()
    assert rope_overrides(str(long_context_model), generation, 30_000) == {}
    overrides = rope_overrides(str(long_context_model), generation, 130_000)
    assert overrides == {
        "rope_parameters": {
            "rope_theta": 1_000_000.0,
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 32_768,
        },
        "max_position_embeddings": 131_072,
    }


@pytest.mark.slow
def test_vllm_takes_the_yarn_override_with_the_base_kept(long_context_model) -> None:
    import os

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm.config import ModelConfig

    overrides = rope_overrides(str(long_context_model), GenerationConfig(), 130_000)
    config = ModelConfig(model=str(long_context_model), hf_overrides=overrides, max_model_len=130_000)
    assert config.hf_config.rope_parameters["rope_type"] == "yarn"
    assert config.hf_config.rope_parameters["rope_theta"] == 1_000_000.0
    assert config.max_model_len == 130_000  # past the native 32K, which vLLM refuses without YaRN
    with pytest.raises(Exception, match="max_model_len"):
        ModelConfig(model=str(long_context_model), max_model_len=130_000)


def test_tensor_parallel_size_divides_the_attention_heads() -> None:
    assert tensor_parallel_for(28, 4, 8) == 4  # Qwen2.5-7B on an 8-GPU node
    assert tensor_parallel_for(40, 8, 8) == 8  # Qwen2.5-32B
    assert tensor_parallel_for(2, 1, 1) == 1
    assert tensor_parallel_for(12, 2, 8) == 4  # 2 key/value heads, each replicated on 2 GPUs
    assert tensor_parallel_for(7, 7, 8) == 1


def eval_config(**generation) -> EvalConfig:
    return EvalConfig(
        model="s3://longrl/kfp/run/rl2/.longrl-data/model/model",
        output_dir="s3://longrl/kfp/run/evaluate/.longrl-data/evaluation",
        benchmarks={"hotpotqa": "s3://longrl/data/eval/hotpotqa.jsonl"},
        generation=GenerationConfig(**generation),
    )


def test_the_tensor_parallel_size_is_cut_to_the_models_heads(s3_endpoint) -> None:
    config = eval_config(tensor_parallel_size=8)
    storage.write_text(
        storage.join(config.model, "config.json"),
        json.dumps({"num_attention_heads": 28, "num_key_value_heads": 4}),
    )
    assert sized_for_model(config).generation.tensor_parallel_size == 4


def test_with_kuberay_the_evaluation_is_a_gpu_rayjob_on_one_worker_pod(s3_endpoint, monkeypatch) -> None:
    api = FakeKubernetesApi()
    monkeypatch.setattr("longrl.launchers.kube.RealKubernetesApi", lambda: api)
    monkeypatch.setenv(RUN_ID_ENV, "run-123")
    config = eval_config(tensor_parallel_size=8)
    summary = {"model": "candidate", "average": 0.5, "benchmarks": {"hotpotqa": {"score": 0.5}}}
    storage.write_text(storage.join(config.output_dir, "metrics.json"), json.dumps(summary))
    api.status_script = {}
    placement = Placement(
        launcher="kuberay",
        namespace="ml",
        image="trainer:1",
        workers=4,
        gpus_per_worker=8,
        worker_memory_gib=900,
    )
    created: list[dict] = []

    def create_finished(obj):
        created.append(obj)
        api.status_script[obj["metadata"]["name"]] = [
            {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
        ]
        return FakeKubernetesApi.create(api, obj)

    monkeypatch.setattr(api, "create", create_finished)
    monkeypatch.setattr("time.sleep", lambda seconds: None)

    assert run_evaluation(config, placement) == summary
    (job,) = created
    assert validation_errors(job, CRDS) == []
    spec = job["spec"]
    assert spec["entrypoint"] == ENTRYPOINT
    sent = json.loads(yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"][CONFIG_ENV])
    assert EvalConfig.model_validate(sent) == config
    (group,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == 1  # one node serves the model, whatever training used
    (worker,) = group["template"]["spec"]["containers"]
    assert worker["image"] == "trainer:1"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert job["metadata"]["labels"]
    assert api.objects == {}  # deleted once its result was read


def test_without_kuberay_the_evaluation_stays_in_the_step(monkeypatch) -> None:
    ran = []
    monkeypatch.setattr("longrl.steps.evaluate", lambda config: ran.append(config) or {"average": 0.0})
    config = eval_config()
    assert run_evaluation(config, Placement(launcher="local")) == {"average": 0.0}
    assert run_evaluation(config, None) == {"average": 0.0}
    assert ran == [config, config]
