"""The verifier's Deployment and Service, validated against the Kubernetes schemas: hardened, given only
the secrets it uses, shaped by the pipeline's ``cluster`` parameter; their lifecycle, including a real
SIGTERM to a start in another process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from longrl.launchers.cluster import ClusterShape
from longrl.launchers.kube import RUN_LABEL, run_labels
from longrl.launchers.schemas import validation_errors
from longrl.serving import (
    ClusterVerifier,
    ClusterVerifierConfig,
    ServingError,
    VerifierConfig,
    build_verifier_objects,
)
from tests.support.fake_kube import FakeKubernetesApi, FileBackedKubernetesApi

REPO = Path(__file__).parents[2]
SHAPE = ClusterShape(
    node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    image_pull_secrets=["ghcr-pull"],
    priority_class_name="ml-serving",
    shm_size="8Gi",
)


def test_objects_validate_against_the_kubernetes_schemas() -> None:
    for model in ("Qwen/Qwen2.5-1.5B-Instruct", "s3://longrl/models/verifier"):
        for cluster in (
            ClusterVerifierConfig(),
            ClusterVerifierConfig(cluster=SHAPE, labels=run_labels("r")),
        ):
            for obj in build_verifier_objects(VerifierConfig(model=model), cluster):
                assert validation_errors(obj) == [], obj["kind"]


def test_validation_catches_mistakes() -> None:
    deployment, _ = build_verifier_objects(VerifierConfig(model="m"), ClusterVerifierConfig())
    deployment["spec"]["template"]["spec"]["containers"][0]["port"] = 8000  # not a container field
    assert any("port" in error for error in validation_errors(deployment))


def test_server_arguments_and_model_loading() -> None:
    verifier = VerifierConfig(
        model="s3://longrl/models/verifier", max_model_len=16384, extra_args=["--enforce-eager"]
    )
    deployment, service = build_verifier_objects(verifier, ClusterVerifierConfig(namespace="ml", gpus=2))
    pod = deployment["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["args"][:2] == ["serve", "/models/verifier"]
    assert "--served-model-name" in server["args"] and "verifier" in server["args"]
    assert server["args"][server["args"].index("--max-model-len") + 1] == "16384"
    assert server["args"][-1] == "--enforce-eager"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert server["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    (fetch,) = pod["initContainers"]
    assert fetch["command"] == [
        "python",
        "-m",
        "longrl.storage",
        "copy",
        "s3://longrl/models/verifier",
        "/models/verifier",
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["metadata"]["namespace"] == "ml"
    hub, _ = build_verifier_objects(
        VerifierConfig(model="Qwen/Qwen2.5-1.5B-Instruct"), ClusterVerifierConfig()
    )
    assert "initContainers" not in hub["spec"]["template"]["spec"]


def secret_refs(container: dict) -> dict[str, str]:
    """Environment variable -> Secret, whole Secrets as '*'."""
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container.get("env", [])
        if "valueFrom" in e
    }
    refs.update(
        {f"*{ref['secretRef']['name']}": ref["secretRef"]["name"] for ref in container.get("envFrom", [])}
    )
    return refs


def test_the_server_gets_no_s3_keys_and_a_hub_token_only_for_a_hub_model() -> None:
    s3_model, _ = build_verifier_objects(
        VerifierConfig(model="s3://longrl/models/verifier"), ClusterVerifierConfig()
    )
    pod = s3_model["spec"]["template"]["spec"]
    assert secret_refs(pod["containers"][0]) == {"VLLM_API_KEY": "longrl-verifier"}
    # Only the init container that copies the model reads S3, with the read-only role's keys.
    assert secret_refs(pod["initContainers"][0]) == {"*longrl-s3-verifier": "longrl-s3-verifier"}
    hub_model, _ = build_verifier_objects(
        VerifierConfig(model="Qwen/Qwen2.5-1.5B-Instruct"), ClusterVerifierConfig()
    )
    server = hub_model["spec"]["template"]["spec"]["containers"][0]
    assert secret_refs(server) == {"VLLM_API_KEY": "longrl-verifier", "HF_TOKEN": "longrl-verifier"}
    secrets = {name for c in (*pod["containers"], *pod["initContainers"]) for name in secret_refs(c).values()}
    assert "longrl-s3" not in secrets  # the pipeline's read-write keys are nowhere in the verifier
    assert hub_model["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_secrets_never_go_on_the_command_line() -> None:
    with pytest.raises(ServingError, match="secret on the command line"):
        build_verifier_objects(
            VerifierConfig(model="m", extra_args=["--api-key", "k"]), ClusterVerifierConfig()
        )
    with pytest.raises(ServingError, match="secret on the command line"):
        build_verifier_objects(
            VerifierConfig(model="m", extra_args=["--hf-token=hf_x"]), ClusterVerifierConfig()
        )


def test_the_pod_is_hardened_and_labelled_for_network_policies() -> None:
    deployment, service = build_verifier_objects(
        VerifierConfig(model="s3://longrl/models/verifier"), ClusterVerifierConfig(labels=run_labels("run-3"))
    )
    template = deployment["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "longrl"
    assert labels["app.kubernetes.io/component"] == "verifier"
    for obj in (deployment, service):
        assert obj["metadata"]["labels"][RUN_LABEL] == "run-3"  # the exit handler's sweep finds them
    assert RUN_LABEL not in deployment["spec"]["selector"]["matchLabels"]  # a selector is immutable
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "scratch", "emptyDir": {}} in pod["volumes"]
    for container in (*pod["containers"], *pod["initContainers"]):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert {"name": "HOME", "value": "/tmp/home"} in container["env"], container["name"]
        limits = container["resources"]["limits"]
        assert {"cpu", "memory"} <= set(limits) and container["resources"]["requests"] == limits


def test_the_cluster_shape_places_the_server() -> None:
    deployment, _ = build_verifier_objects(VerifierConfig(model="m"), ClusterVerifierConfig(cluster=SHAPE))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert pod["priorityClassName"] == "ml-serving"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]


def test_start_waits_for_readiness_and_stop_removes_everything() -> None:
    api = FakeKubernetesApi()
    api.ready_after_gets["longrl-verifier"] = 2
    sleeps: list[float] = []
    logs: list[str] = []
    verifier = ClusterVerifier(
        api,
        VerifierConfig(model="m"),
        ClusterVerifierConfig(poll_interval_s=5),
        sleep=sleeps.append,
        log=logs.append,
    )
    assert verifier.start() == "http://longrl-verifier.longrl-jobs.svc.cluster.local:8000/v1"
    assert sleeps == [5, 5]
    assert {(o["kind"], o["metadata"]["name"]) for o in api.created} == {
        ("Deployment", "longrl-verifier"),
        ("Service", "longrl-verifier"),
    }
    verifier.start()  # a retried step finds its server already there
    verifier.stop()
    verifier.stop()  # and stopping twice is harmless (the exit handler may run after a failed start)
    assert api.objects == {}
    assert "deleted Deployment longrl-jobs/longrl-verifier: the pipeline run is over" in logs


def test_transient_api_errors_while_waiting_are_retried() -> None:
    api = FakeKubernetesApi()
    api.ready_after_gets["longrl-verifier"] = 1
    api.fail("get", times=3)
    verifier = ClusterVerifier(api, VerifierConfig(model="m"), ClusterVerifierConfig(), sleep=lambda s: None)
    verifier.start()
    assert ("Deployment", "longrl-jobs", "longrl-verifier") in api.objects and api.deleted == []


def test_not_ready_in_time_is_an_error_and_leaves_nothing_behind() -> None:
    api = FakeKubernetesApi()
    api.ready_after_gets["longrl-verifier"] = 10**6
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    logs: list[str] = []
    verifier = ClusterVerifier(
        api,
        VerifierConfig(model="m"),
        ClusterVerifierConfig(ready_timeout_s=60),
        sleep=sleep,
        clock=lambda: now[0],
        log=logs.append,
    )
    with pytest.raises(ServingError, match="not ready after 60 s"):
        verifier.start()
    assert api.objects == {}
    assert any(
        line.startswith("deleted Deployment longrl-jobs/longrl-verifier: the start failed") for line in logs
    )


START_PROCESS = """
import sys
from longrl.serving import ClusterVerifier, ClusterVerifierConfig, VerifierConfig
from tests.support.fake_kube import FileBackedKubernetesApi

api = FileBackedKubernetesApi(sys.argv[1])
api.ready_after_gets["longrl-verifier"] = 10**6  # never ready
ClusterVerifier(
    api, VerifierConfig(model="m"), ClusterVerifierConfig(namespace="ml", poll_interval_s=0.05),
    log=lambda line: print(line, flush=True),
).start()
"""


def test_a_terminated_start_deletes_the_deployment_and_service_and_says_so(tmp_path) -> None:
    state = tmp_path / "cluster.json"
    process = subprocess.Popen(
        [sys.executable, "-c", START_PROCESS, str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    service = ("Service", "ml", "longrl-verifier")
    try:
        deadline = time.monotonic() + 60
        while service not in FileBackedKubernetesApi(state).objects and process.poll() is None:
            assert time.monotonic() < deadline, "the verifier was never created"
            time.sleep(0.05)
        time.sleep(0.3)  # waiting for readiness now
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "deleted Deployment ml/longrl-verifier: the start was terminated (SIGTERM)" in output
    assert "deleted Service ml/longrl-verifier: the start was terminated (SIGTERM)" in output
    assert FileBackedKubernetesApi(state).objects == {}
