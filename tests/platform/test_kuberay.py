"""The RayJob the kuberay launcher builds, validated against KubeRay's CRD; the pod shape from the
pipeline's ``cluster`` parameter; the launcher's watch and cleanup against a fake Kubernetes API
(injected API failures, a real SIGTERM to a launcher in another process); the exit handler's sweep."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from longrl import storage
from longrl.launchers import KubeRayConfig, KubeRayLauncher, LaunchFailed, build_rayjob, rayjob_name
from longrl.launchers.cluster import ClusterShape
from longrl.launchers.kube import RUN_LABEL, TransientApiError, run_labels, sweep_run
from longrl.launchers.kuberay import CONFIG_ENV, job_outcome
from longrl.launchers.schemas import validation_errors
from longrl.rewards import JudgeConfig
from longrl.steps import Placement
from longrl.train.config import TINY_RL, RLStepConfig, SFTStepConfig, with_overrides
from tests.support.fake_kube import FakeKubernetesApi, FileBackedKubernetesApi

REPO = Path(__file__).parents[2]
CRDS = sorted(Path(__file__).parents[1].joinpath("fixtures", "kuberay-crds").glob("*.yaml"))


def rl_config(output_dir: str = "s3://longrl/runs/r1/rl-phase1") -> RLStepConfig:
    return RLStepConfig(
        model="s3://longrl/runs/r1/sft/model",
        output_dir=output_dir,
        train_file="s3://longrl/runs/r1/data/train-phase1.parquet",
        judge=JudgeConfig(base_url="http://verifier.longrl.svc:8000/v1", model="verifier"),
    )


def pods(job):
    """(name, pod template) of the head, every worker group and the submitter."""
    cluster = job["spec"]["rayClusterSpec"]
    yield "head", cluster["headGroupSpec"]["template"]
    for group in cluster["workerGroupSpecs"]:
        yield group["groupName"], group["template"]
    yield "submitter", job["spec"]["submitterPodTemplate"]


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
    assert all(v["name"] != "shared" for v in plain["headGroupSpec"]["template"]["spec"]["volumes"])


def test_validation_catches_mistakes() -> None:
    job = build_rayjob("rl", rl_config(), KubeRayConfig(), "longrl-x")
    job["spec"]["shutdownAfterJobFinish"] = True  # typo: the field ends in "Finishes"
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("groupName")
    job["spec"]["rayClusterSpec"]["authOptions"]["mode"] = "password"  # not a KubeRay auth mode
    errors = validation_errors(job, CRDS)
    assert any("shutdownAfterJobFinish" in e for e in errors)
    assert any("groupName" in e for e in errors)
    assert any("authOptions" in e for e in errors)


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
    assert "suspend" not in spec  # no queue: it starts at once
    workers = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2
    container = workers["template"]["spec"]["containers"][0]
    assert container["image"] == "registry/trainer:1.2.3"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["envFrom"] == [{"secretRef": {"name": "longrl-s3", "optional": True}}]
    assert job["metadata"]["namespace"] == "ml"
    assert "super-secret-value" not in json.dumps(job)  # secrets come from Secrets, not the spec


def test_ray_pods_are_hardened_labelled_and_authenticated() -> None:
    job = build_rayjob("rl", rl_config(), KubeRayConfig(), "longrl-x", labels=run_labels("run-7"))
    assert validation_errors(job, CRDS) == []
    spec = job["spec"]
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}  # Ray token authentication
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert 10001 not in [port["containerPort"] for port in head["ports"]]  # no Ray Client port
    for role, template in pods(job):
        labels = template["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "longrl", role
        assert labels["app.kubernetes.io/component"] == "ray", role
        assert labels[RUN_LABEL] == "run-7", role
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, role
        assert pod["automountServiceAccountToken"] is False, role
        assert {"name": "scratch", "emptyDir": {}} in pod["volumes"], role
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, role
            assert security["capabilities"] == {"drop": ["ALL"]}, role
            assert security["readOnlyRootFilesystem"] is True, role
            assert {"name": "scratch", "mountPath": "/tmp"} in container["volumeMounts"], role
            assert {"name": "HOME", "value": "/tmp/home"} in container["env"], role
            limits = container["resources"]["limits"]
            assert {"cpu", "memory"} <= set(limits) and container["resources"]["requests"] == limits, role
    submitter = spec["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"
    assert "envFrom" not in submitter["containers"][0]  # it only calls the job API: no S3 keys
    assert job["metadata"]["labels"][RUN_LABEL] == "run-7"


def test_secrets_reach_ray_pods_only_from_secrets_and_only_the_keys_they_use() -> None:
    job = build_rayjob("rl", rl_config(), KubeRayConfig(), "longrl-x")
    worker = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    from_secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in worker["env"] if "valueFrom" in e
    }
    # The verifier's Secret also holds VLLM_API_KEY (the server's): the Ray pods take only what they use.
    assert from_secrets == {"LONGRL_JUDGE_API_KEY": "longrl-verifier", "HF_TOKEN": "longrl-verifier"}
    assert all(
        "secretRef" not in ref or ref["secretRef"]["name"] != "longrl-verifier" for ref in worker["envFrom"]
    )
    command_lines = [job["spec"]["entrypoint"]]
    for _, template in pods(job):
        for container in template["spec"]["containers"]:
            command_lines += container.get("command", []) + container.get("args", [])
    assert not any(word in " ".join(command_lines).lower() for word in ("key", "token", "secret", "password"))


# ----- the cluster section (pod shape) --------------------------------------------------------

# The README's worked example: 8 nodes of 8 x 80 GB GPUs behind a taint, InfiniBand, a Kueue queue.
EIGHT_BY_80GB = {
    "worker_cpu": "96",
    "shm_size": "64Gi",
    "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml-training", "effect": "NoSchedule"},
    ],
    "image_pull_secrets": ["ghcr-pull"],
    "priority_class_name": "ml-training-high",
    "env": {"NCCL_IB_HCA": "mlx5", "NCCL_SOCKET_IFNAME": "eth0", "NCCL_DEBUG": "WARN"},
    "kueue_queue": "team-ml",
    "collective_timeout_s": 3600,
}


def eight_by_80gb() -> Placement:
    return Placement(
        launcher="kuberay",
        namespace="ml",
        workers=8,
        gpus_per_worker=8,
        gpu_memory_gib=80,
        worker_memory_gib=1600,
        cluster=EIGHT_BY_80GB,
    )


def test_worked_example_eight_80gb_nodes_with_tolerations_and_a_kueue_queue() -> None:
    placement = eight_by_80gb()
    job = build_rayjob("rl", rl_config(), placement.kuberay("trl"), "longrl-rl-x", labels=run_labels("run-9"))
    assert validation_errors(job, CRDS) == []
    # Kueue: the queue label on the RayJob, created suspended so that the queue decides when it starts.
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-ml"
    assert job["spec"]["suspend"] is True
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == 8
    worker = workers["template"]["spec"]
    limits = worker["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "96", "memory": "1600Gi", "nvidia.com/gpu": "8"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}} in worker["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in worker["containers"][0]["volumeMounts"]
    assert worker["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"name": "NCCL_IB_HCA", "value": "mlx5"} in worker["containers"][0]["env"]
    for role, template in pods(job):
        pod = template["spec"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ], role
        assert pod["imagePullSecrets"] == [{"name": "ghcr-pull"}], role
        assert pod["priorityClassName"] == "ml-training-high", role
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert "nodeSelector" not in head  # the CPU head needs no GPU node
    # The collective timeout reaches the step's config, and from there Ray Train's TorchConfig.
    ray = placement.ray()
    assert ray["num_workers"] == 64 and ray["collective_timeout_s"] == 3600


def test_the_collective_timeout_reaches_ray_trains_torch_config() -> None:
    from longrl.train.engines.trl import torch_config

    config = rl_config()
    assert torch_config(config).timeout_s == 1800  # unset: Ray Train's default
    timed = rl_config().model_copy(
        update={"ray": config.ray.model_copy(update={"collective_timeout_s": 3600})}
    )
    assert torch_config(timed).timeout_s == 3600


def test_the_cluster_parameter_is_checked_key_by_key() -> None:
    with pytest.raises(ValidationError, match="tolerationz"):
        Placement(cluster={"tolerationz": []})
    with pytest.raises(ValidationError, match="effekt"):
        Placement(cluster={"tolerations": [{"key": "gpu", "effekt": "NoSchedule"}]})
    with pytest.raises(ValidationError, match="not a Kubernetes quantity"):
        ClusterShape(shm_size="64 GB")
    with pytest.raises(ValidationError, match="looks like a secret"):
        ClusterShape(env={"AWS_SECRET_ACCESS_KEY": "x"})
    with pytest.raises(ValidationError, match="set by longrl"):
        ClusterShape(env={"RAY_AUTH_MODE": "disabled"})
    assert Placement().cluster == ClusterShape()  # {} (the pipeline's default) changes nothing


def test_the_pipeline_threads_one_cluster_parameter_to_every_step_that_makes_pods() -> None:
    import inspect

    from components import finish_pipeline, plan_training, start_verifier, train_rl_phase, train_sft
    from pipelines.longrl_pipeline import PARAMETERS, longrl_pipeline

    assert "cluster" in PARAMETERS
    assert inspect.signature(longrl_pipeline.pipeline_func).parameters["cluster"].default == {}
    for component in (plan_training, train_sft, train_rl_phase, start_verifier):
        assert "cluster" in component.component_spec.inputs, component.name
    assert "launcher" in finish_pipeline.component_spec.inputs  # the exit handler sweeps RayJobs too


# ----- the launcher: outcomes, cleanup, API failures -------------------------------------------


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
        ({"jobDeploymentStatus": "Suspended"}, None),  # waiting in a Kueue queue
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


def launcher(api, logs=None, sleep=lambda s: None, clock=time.monotonic, **config):
    return KubeRayLauncher(
        api,
        KubeRayConfig(namespace="ml", poll_interval_s=0.01, **config),
        sleep=sleep,
        log=(logs.append if logs is not None else lambda line: None),
        clock=clock,
    )


def test_success_streams_the_log_returns_the_result_and_deletes_the_finished_job(s3_endpoint) -> None:
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
    # Its GPUs are given back at once, not after KubeRay's TTL.
    assert api.deleted == [("RayJob", "ml", name)] and api.objects == {}
    assert f"deleted RayJob ml/{name}: finished and its result read" in logs


def test_failure_deletes_the_job_and_says_why() -> None:
    api = FakeKubernetesApi()
    api.status_script["j"] = [
        {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": "OOMKilled"}
    ]
    logs: list[str] = []
    with pytest.raises(LaunchFailed, match="RayJob ml/j failed: OOMKilled"):
        launcher(api, logs).run("rl", rl_config(), "j")
    assert api.deleted == [("RayJob", "ml", "j")]
    assert "deleted RayJob ml/j: the job failed" in logs


def test_cancel_deletes_the_job() -> None:
    api = FakeKubernetesApi()
    api.status_script["j"] = [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}]

    def cancelled(_seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launcher(api, sleep=cancelled).run("rl", rl_config(), "j")
    assert api.deleted == [("RayJob", "ml", "j")]


def test_transient_api_errors_while_watching_never_delete_the_running_job(s3_endpoint) -> None:
    storage.write_text("s3://longrl/runs/r1/rl-phase1/result.json", json.dumps({"global_step": 3}))
    api = FakeKubernetesApi()
    api.status_script["j"] = [
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
    ]
    # An API server restart mid-watch: 503s, a dropped connection, throttling.
    api.fail("create", TransientApiError("create RayJob j: HTTP 503 Service Unavailable"))
    api.fail("get", TransientApiError("get RayJob ml/j: HTTP 503 Service Unavailable"), times=3)
    api.fail("get", TransientApiError("get RayJob ml/j: ProtocolError: Connection reset by peer"), times=2)
    api.fail("get", TransientApiError("get RayJob ml/j: HTTP 429 Too Many Requests"), times=2)
    sleeps: list[float] = []
    logs: list[str] = []
    assert launcher(api, logs, sleep=sleeps.append).run("rl", rl_config(), "j") == {"global_step": 3}
    assert api.calls.count("create") == 2 and len(api.created) == 1
    assert sum("Kubernetes API unavailable" in line for line in logs) == 8
    assert sleeps[1:5] == [0.01, 0.02, 0.04, 0.08]  # backoff, not a tight loop
    # The only deletion is the finished one, after its result was read.
    assert api.deleted == [("RayJob", "ml", "j")]
    assert [line for line in logs if line.startswith("deleted")] == [
        "deleted RayJob ml/j: finished and its result read"
    ]


def test_an_api_that_stays_down_fails_the_step_but_leaves_the_job_running() -> None:
    api = FakeKubernetesApi()
    api.status_script["j"] = [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}]
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    api.fail("get", times=10**6)
    with pytest.raises(LaunchFailed, match="did not answer for 120 s.*left running"):
        launcher(api, sleep=sleep, clock=lambda: now[0], api_retry_timeout_s=120).run("rl", rl_config(), "j")
    assert api.deleted == [] and ("RayJob", "ml", "j") in api.objects  # a retried step re-attaches


def test_a_definite_api_error_is_not_retried() -> None:
    api = FakeKubernetesApi()
    api.fail("get", PermissionError("get RayJob ml/j: HTTP 403 Forbidden"))
    with pytest.raises(PermissionError):
        launcher(api).run("rl", rl_config(), "j")
    assert api.calls.count("get") == 1


def test_real_api_errors_are_classified() -> None:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import ProtocolError

    from longrl.launchers.kube import AlreadyExists, NotFound, _translated_errors

    for error, expected in [
        (ApiException(status=503, reason="Service Unavailable"), TransientApiError),
        (ApiException(status=429, reason="Too Many Requests"), TransientApiError),
        (ApiException(status=500, reason="Internal Server Error"), TransientApiError),
        (
            ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")),
            TransientApiError,
        ),
        (ConnectionRefusedError(111, "Connection refused"), TransientApiError),
        (ApiException(status=404, reason="Not Found"), NotFound),
        (ApiException(status=409, reason="Conflict"), AlreadyExists),
        (ApiException(status=403, reason="Forbidden"), ApiException),
    ]:
        with pytest.raises(expected):
            with _translated_errors("get RayJob ml/j"):
                raise error


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
    assert len(api.created) == 2
    assert api.deleted == [("RayJob", "ml", "j"), ("RayJob", "ml", "j")]  # the failed one, the finished one


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


# ----- SIGTERM: a launcher in another process ----------------------------------------------------

LAUNCHER_PROCESS = """
import sys
from longrl.launchers import KubeRayConfig, KubeRayLauncher
from longrl.train.config import RLStepConfig
from tests.support.fake_kube import FileBackedKubernetesApi

config = RLStepConfig(model="s3://b/m", output_dir="s3://b/o", train_file="s3://b/t", reward="rule")
KubeRayLauncher(
    FileBackedKubernetesApi(sys.argv[1]),
    KubeRayConfig(namespace="ml", poll_interval_s=0.05),
    log=lambda line: print(line, flush=True),
).run("rl", config, "longrl-rl-sigterm")
"""


def wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_a_terminated_launcher_deletes_its_rayjob_and_says_so(tmp_path) -> None:
    state = tmp_path / "cluster.json"
    cluster = FileBackedKubernetesApi(state)
    cluster.status_script["longrl-rl-sigterm"] = [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}]
    cluster.save()
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER_PROCESS, str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    try:
        key = ("RayJob", "ml", "longrl-rl-sigterm")
        wait_for(lambda: key in FileBackedKubernetesApi(state).objects or process.poll() is not None)
        time.sleep(0.3)  # watching now
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "created RayJob ml/longrl-rl-sigterm" in output
    assert "deleted RayJob ml/longrl-rl-sigterm: the launcher was terminated (SIGTERM)" in output
    after = FileBackedKubernetesApi(state)
    assert key not in after.objects and after.deleted == [key]


# ----- the exit handler's sweep ------------------------------------------------------------------


def run_objects(api: FakeKubernetesApi, run_id: str) -> None:
    from longrl.serving import ClusterVerifierConfig, VerifierConfig, build_verifier_objects

    api.create(
        build_rayjob("rl", rl_config(), KubeRayConfig(namespace="ml"), f"rl-{run_id}", run_labels(run_id))
    )
    verifier = ClusterVerifierConfig(namespace="ml", name=f"verifier-{run_id}", labels=run_labels(run_id))
    for obj in build_verifier_objects(VerifierConfig(model="m"), verifier):
        api.create(obj)


def test_the_sweep_deletes_everything_of_its_run_and_nothing_else() -> None:
    api = FakeKubernetesApi()
    run_objects(api, "run-a")
    run_objects(api, "run-b")
    api.fail("list_objects", times=2)  # a flaky API server does not stop the sweep
    logs: list[str] = []
    deleted = sweep_run(api, "ml", "run-a", log=logs.append, sleep=lambda s: None)
    assert sorted(deleted) == ["Deployment/verifier-run-a", "RayJob/rl-run-a", "Service/verifier-run-a"]
    assert {name for (_, _, name) in api.objects} == {"rl-run-b", "verifier-run-b"}
    assert "deleted RayJob ml/rl-run-a: its pipeline run run-a has ended" in logs


def test_the_exit_handler_stops_the_verifier_and_sweeps_the_run(monkeypatch) -> None:
    from longrl import steps
    from longrl.launchers import kube

    api = FakeKubernetesApi()
    run_id = "7f3e9c2a-0b1d-4c5e-9f8a-1234567890ab"  # a KFP run id
    monkeypatch.setenv(steps.RUN_ID_ENV, run_id)
    api.create(build_rayjob("rl", rl_config(), KubeRayConfig(namespace="ml"), "orphan", run_labels(run_id)))
    run_objects(api, "another-run")
    monkeypatch.setattr(kube, "RealKubernetesApi", lambda: api)
    steps.end_run_step("none", "ml", "kuberay")
    assert ("RayJob", "ml", "orphan") not in api.objects
    assert len(api.objects) == 3  # the other run's RayJob, Deployment and Service
