"""The verifier's Deployment and Service, validated against the Kubernetes schemas, and their lifecycle."""

import pytest

from longrl.launchers.schemas import validation_errors
from longrl.serving import (
    ClusterVerifier,
    ClusterVerifierConfig,
    ServingError,
    VerifierConfig,
    build_verifier_objects,
)
from tests.support.fake_kube import FakeKubernetesApi


def test_objects_validate_against_the_kubernetes_schemas() -> None:
    for model in ("Qwen/Qwen2.5-1.5B-Instruct", "s3://longrl/models/verifier"):
        for obj in build_verifier_objects(VerifierConfig(model=model), ClusterVerifierConfig()):
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


def test_start_waits_for_readiness_and_stop_removes_everything() -> None:
    api = FakeKubernetesApi()
    api.ready_after_gets["longrl-verifier"] = 2
    sleeps: list[float] = []
    verifier = ClusterVerifier(
        api, VerifierConfig(model="m"), ClusterVerifierConfig(poll_interval_s=5), sleep=sleeps.append
    )
    assert verifier.start() == "http://longrl-verifier.kubeflow.svc.cluster.local:8000/v1"
    assert sleeps == [5, 5]
    assert {(o["kind"], o["metadata"]["name"]) for o in api.created} == {
        ("Deployment", "longrl-verifier"),
        ("Service", "longrl-verifier"),
    }
    verifier.start()  # a retried step finds its server already there
    verifier.stop()
    verifier.stop()  # and stopping twice is harmless (the exit handler may run after a failed start)
    assert api.objects == {}


def test_not_ready_in_time_is_an_error() -> None:
    api = FakeKubernetesApi()
    api.ready_after_gets["longrl-verifier"] = 10**6
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    verifier = ClusterVerifier(
        api,
        VerifierConfig(model="m"),
        ClusterVerifierConfig(ready_timeout_s=60),
        sleep=sleep,
        clock=lambda: now[0],
    )
    with pytest.raises(ServingError, match="not ready after 60 s"):
        verifier.start()
