"""The RayJob the kuberay launcher builds, validated against KubeRay's CRD, and the launcher's
watch/cleanup behaviour against a fake Kubernetes API."""

import json
from pathlib import Path

import pytest
import yaml

from longrl import storage
from longrl.launchers import KubeRayConfig, KubeRayLauncher, LaunchFailed, build_rayjob, rayjob_name
from longrl.launchers.kuberay import CONFIG_ENV, job_outcome
from longrl.launchers.schemas import validation_errors
from longrl.rewards import JudgeConfig
from longrl.train.config import TINY_RL, RLStepConfig, SFTStepConfig, with_overrides
from tests.support.fake_kube import FakeKubernetesApi

CRDS = sorted(Path(__file__).parents[1].joinpath("fixtures", "kuberay-crds").glob("*.yaml"))


def rl_config(output_dir: str = "s3://longrl/runs/r1/rl-phase1") -> RLStepConfig:
    return RLStepConfig(
        model="s3://longrl/runs/r1/sft/model",
        output_dir=output_dir,
        train_file="s3://longrl/runs/r1/data/train-phase1.parquet",
        judge=JudgeConfig(base_url="http://verifier.longrl.svc:8000/v1", model="verifier"),
    )


def test_rayjob_validates_against_the_kuberay_crd() -> None:
    job = build_rayjob("rl", rl_config(), KubeRayConfig(), rayjob_name("run-1", "rl-phase1"))
    assert validation_errors(job, CRDS) == []


def test_a_shared_volume_is_mounted_on_every_pod_and_holds_the_cache() -> None:
    from longrl.launchers.kuberay import SHARED_MOUNT

    job = build_rayjob("rl", rl_config(), KubeRayConfig(shared_volume_claim="longrl-shared"), "longrl-x")
    assert validation_errors(job, CRDS) == []
    cluster = job["spec"]["rayClusterSpec"]
    for group in (cluster["headGroupSpec"], *cluster["workerGroupSpecs"]):
        pod = group["template"]["spec"]
        assert {"name": "shared", "persistentVolumeClaim": {"claimName": "longrl-shared"}} in pod["volumes"]
        container = pod["containers"][0]
        assert {"name": "shared", "mountPath": SHARED_MOUNT} in container["volumeMounts"]
        assert {"name": "LONGRL_CACHE_DIR", "value": f"{SHARED_MOUNT}/cache"} in container["env"]
    plain = build_rayjob("rl", rl_config(), KubeRayConfig(), "longrl-x")["spec"]["rayClusterSpec"]
    assert "volumes" not in plain["headGroupSpec"]["template"]["spec"]


def test_validation_catches_mistakes() -> None:
    job = build_rayjob("rl", rl_config(), KubeRayConfig(), "longrl-x")
    job["spec"]["shutdownAfterJobFinish"] = True  # typo: the field ends in "Finishes"
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("groupName")
    errors = validation_errors(job, CRDS)
    assert any("shutdownAfterJobFinish" in e for e in errors)
    assert any("groupName" in e for e in errors)


def test_rayjob_runs_the_same_entrypoint_with_the_config_in_its_runtime_env(monkeypatch) -> None:
    monkeypatch.setenv("LONGRL_JUDGE_API_KEY", "super-secret-value")
    config = rl_config()
    kuberay = KubeRayConfig(namespace="ml", image="registry/trainer:1.2.3")
    kuberay.workers.replicas, kuberay.workers.gpus = 2, 8
    job = build_rayjob("rl", config, kuberay, "longrl-rl-abc")
    spec = job["spec"]
    assert spec["entrypoint"] == f"python -m longrl.train rl --config env:{CONFIG_ENV}"
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert RLStepConfig.model_validate_json(env[CONFIG_ENV]) == config
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] == 3600
    assert spec["activeDeadlineSeconds"] == 48 * 3600 and spec["backoffLimit"] == 0
    workers = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2
    container = workers["template"]["spec"]["containers"][0]
    assert container["image"] == "registry/trainer:1.2.3"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"secretRef": {"name": "longrl-s3", "optional": True}} in container["envFrom"]
    assert job["metadata"]["namespace"] == "ml"
    assert "super-secret-value" not in json.dumps(job)  # secrets come from Secrets, not the spec


def test_names_are_stable_and_valid() -> None:
    name = rayjob_name("pipeline-run-0f3c", "RL phase 2")
    assert name == rayjob_name("pipeline-run-0f3c", "RL phase 2")
    assert name != rayjob_name("pipeline-run-0f3d", "RL phase 2")
    assert name.startswith("longrl-rl-phase-2-") and len(name) <= 40
    assert all(c.isalnum() or c == "-" for c in name) and name == name.lower()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ({}, None),
        ({"jobDeploymentStatus": "Initializing"}, None),
        ({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, None),
        ({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, "succeeded"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "SUCCEEDED"}, "succeeded"),
        ({"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}, "failed"),
        ({"jobDeploymentStatus": "ValidationFailed"}, "failed"),
        ({"jobDeploymentStatus": "Running", "jobStatus": "STOPPED"}, "failed"),
    ],
)
def test_job_outcome(status, outcome) -> None:
    assert job_outcome(status) == outcome


def launcher(api, logs=None, sleep=lambda s: None):
    return KubeRayLauncher(
        api,
        KubeRayConfig(namespace="ml", poll_interval_s=0.01),
        sleep=sleep,
        log=(logs.append if logs is not None else lambda line: None),
    )


def test_success_streams_the_driver_log_and_returns_the_result(s3_endpoint) -> None:
    config = rl_config()
    storage.write_text("s3://longrl/runs/r1/rl-phase1/result.json", json.dumps({"global_step": 30}))
    api = FakeKubernetesApi()
    name = "longrl-rl-x"
    api.status_script[name] = [
        {"jobDeploymentStatus": "Initializing"},
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
    ]
    api.pods[f"job-name={name}"] = [{"metadata": {"name": f"{name}-submitter"}}]
    api.logs[f"{name}-submitter"] = ["step 1 reward 0.1", "step 2 reward 0.3"]
    logs: list[str] = []
    result = launcher(api, logs).run("rl", config, name)
    assert result == {"global_step": 30}
    assert [c["metadata"]["name"] for c in api.created] == [name]
    assert f"[{name}] step 2 reward 0.3" in logs
    assert any("deployment=Complete job=SUCCEEDED" in line for line in logs)
    assert api.deleted == []  # success: KubeRay's TTL cleans up


def test_failure_deletes_the_job_and_says_why() -> None:
    api = FakeKubernetesApi()
    api.status_script["j"] = [
        {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": "OOMKilled"}
    ]
    with pytest.raises(LaunchFailed, match="RayJob ml/j failed: OOMKilled"):
        launcher(api).run("rl", rl_config(), "j")
    assert api.deleted == [("RayJob", "ml", "j")]


def test_cancel_deletes_the_job() -> None:
    api = FakeKubernetesApi()
    api.status_script["j"] = [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}]

    def cancelled(_seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launcher(api, sleep=cancelled).run("rl", rl_config(), "j")
    assert api.deleted == [("RayJob", "ml", "j")]


def test_a_retried_component_reattaches_to_its_running_job(s3_endpoint) -> None:
    storage.write_text("s3://longrl/runs/r1/rl-phase1/result.json", "{}")
    api = FakeKubernetesApi()
    api.create(build_rayjob("rl", rl_config(), KubeRayConfig(namespace="ml"), "j"))
    api.status_script["j"] = [
        {"jobStatus": "RUNNING"},
        {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
    ]
    assert launcher(api).run("rl", rl_config(), "j") == {}
    assert len(api.created) == 1


def test_a_failed_earlier_attempt_is_replaced(s3_endpoint) -> None:
    storage.write_text("s3://longrl/runs/r1/rl-phase1/result.json", "{}")
    api = FakeKubernetesApi()
    api.create(build_rayjob("rl", rl_config(), KubeRayConfig(namespace="ml"), "j"))
    api.status_script["j"] = [{"jobStatus": "FAILED"}]

    original_create = api.create

    def create_and_succeed(obj):
        created = original_create(obj)
        api.status_script["j"] = [{"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]
        return created

    api.create = create_and_succeed
    assert launcher(api).run("rl", rl_config(), "j") == {}
    assert api.deleted == [("RayJob", "ml", "j")] and len(api.created) == 2


def test_local_output_dirs_are_refused() -> None:
    with pytest.raises(LaunchFailed, match="must write to s3://"):
        launcher(FakeKubernetesApi()).run("rl", rl_config(output_dir="/tmp/out"), "j")


def test_sft_jobs_validate_too() -> None:
    config = with_overrides(
        SFTStepConfig, {}, {"model": "s3://b/m", "output_dir": "s3://b/o", "train_file": "s3://b/t"}
    )
    assert validation_errors(build_rayjob("sft", config, KubeRayConfig(), "longrl-sft-1"), CRDS) == []
    tiny = with_overrides(
        RLStepConfig, TINY_RL, {"model": "s3://b/m", "output_dir": "s3://b/o", "train_file": "s3://b/t"}
    )
    assert validation_errors(build_rayjob("rl", tiny, KubeRayConfig(), "longrl-rl-1"), CRDS) == []
