"""A verifier on the cluster: a vLLM Deployment and its Service, created, awaited and torn down.

When the model is an ``s3://`` URI an init container (the pipeline image) copies it into a
shared volume first; credentials come from Secrets. The pipeline deletes both objects in an exit
handler, so a failed run leaves no GPU server behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from longrl import storage
from longrl.launchers.kube import AlreadyExists, KubernetesApi, NotFound
from longrl.serving.config import VerifierConfig
from longrl.serving.local import ServingError

PORT = 8000
MODEL_MOUNT = "/models"


class ClusterVerifierConfig(BaseModel):
    """Where and on what the verifier runs in the cluster."""

    namespace: str = Field("kubeflow", description="Namespace of the Deployment and Service: the pipeline's")
    name: str = Field("longrl-verifier", description="Name of the Deployment and the Service")
    image: str = Field("vllm/vllm-openai:v0.32.0", description="vLLM server image")
    loader_image: str = Field("ghcr.io/longrl/pipeline:0.1.0", description="Image that copies an s3:// model")
    gpus: int = Field(1, ge=0, description="GPUs for the server")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of a GPU")
    cpu: str = Field("4", description="CPU request/limit")
    memory: str = Field("32Gi", description="Memory request/limit")
    secret_env: list[str] = Field(
        default_factory=lambda: ["longrl-s3", "longrl-verifier"],
        description="Secrets whose keys become environment variables (S3 credentials, HF_TOKEN, VLLM_API_KEY)",
    )
    service_account: str | None = Field("longrl-verifier", description="ServiceAccount of the server pod")
    ready_timeout_s: float = Field(1800.0, gt=0, description="Give up if not ready by then")
    poll_interval_s: float = Field(10.0, gt=0, description="Seconds between readiness checks")

    @property
    def base_url(self) -> str:
        """The Service's OpenAI API base URL, inside the cluster."""
        return f"http://{self.name}.{self.namespace}.svc.cluster.local:{PORT}/v1"


def _labels(config: ClusterVerifierConfig) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "longrl",
        "app.kubernetes.io/component": "verifier",
        "app.kubernetes.io/instance": config.name,
    }


def build_verifier_objects(verifier: VerifierConfig, cluster: ClusterVerifierConfig) -> list[dict[str, Any]]:
    """The Deployment and Service that serve ``verifier`` with vLLM's OpenAI API on port 8000."""
    labels = _labels(cluster)
    from_s3 = storage.is_s3(verifier.model)
    model_path = f"{MODEL_MOUNT}/verifier" if from_s3 else verifier.model
    env_from = [{"secretRef": {"name": name, "optional": True}} for name in cluster.secret_env]
    limits: dict[str, Any] = {"cpu": cluster.cpu, "memory": cluster.memory}
    if cluster.gpus:
        limits[cluster.gpu_resource] = str(cluster.gpus)
    server = {
        "name": "vllm",
        "image": cluster.image,
        # the image's entrypoint is the OpenAI server; `vllm serve` takes the same arguments
        "command": ["vllm"],
        "args": verifier.serve_args(model_path, PORT, "0.0.0.0"),
        "ports": [{"containerPort": PORT, "name": "http"}],
        "envFrom": env_from,
        "resources": {"requests": dict(limits), "limits": dict(limits)},
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "httpGet": {"path": "/health", "port": PORT},
            "periodSeconds": 10,
            "failureThreshold": int(cluster.ready_timeout_s // 10),
        },
        "volumeMounts": [
            {"name": "models", "mountPath": MODEL_MOUNT},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod: dict[str, Any] = {
        "containers": [server],
        "volumes": [{"name": "models", "emptyDir": {}}, {"name": "dshm", "emptyDir": {"medium": "Memory"}}],
    }
    if cluster.service_account:
        pod["serviceAccountName"] = cluster.service_account
    if from_s3:
        pod["initContainers"] = [
            {
                "name": "fetch-model",
                "image": cluster.loader_image,
                "command": ["python", "-m", "longrl.storage", "copy", verifier.model, model_path],
                "envFrom": env_from,
                "volumeMounts": [{"name": "models", "mountPath": MODEL_MOUNT}],
            }
        ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": cluster.name, "namespace": cluster.namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": cluster.name, "namespace": cluster.namespace, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]},
    }
    return [deployment, service]


class ClusterVerifier:
    """Creates the verifier's objects, waits for readiness, and deletes them again."""

    def __init__(
        self,
        api: KubernetesApi,
        verifier: VerifierConfig,
        cluster: ClusterVerifierConfig,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.verifier = verifier
        self.cluster = cluster
        self.sleep = sleep
        self.clock = clock

    @property
    def base_url(self) -> str:
        return self.cluster.base_url

    def start(self) -> str:
        for obj in build_verifier_objects(self.verifier, self.cluster):
            try:
                self.api.create(obj)
            except AlreadyExists:
                pass  # a retried step: the server is already there
        self._wait_ready()
        return self.base_url

    def _wait_ready(self) -> None:
        deadline = self.clock() + self.cluster.ready_timeout_s
        while self.clock() < deadline:
            deployment = self.api.get("apps/v1", "Deployment", self.cluster.namespace, self.cluster.name)
            status = deployment.get("status") or {}
            if (status.get("readyReplicas") or 0) >= deployment["spec"].get("replicas", 1):
                return
            self.sleep(self.cluster.poll_interval_s)
        raise ServingError(
            f"verifier {self.cluster.namespace}/{self.cluster.name} not ready after {self.cluster.ready_timeout_s:.0f} s"
        )

    def stop(self) -> None:
        for api_version, kind in (("v1", "Service"), ("apps/v1", "Deployment")):
            try:
                self.api.delete(api_version, kind, self.cluster.namespace, self.cluster.name)
            except NotFound:
                pass
