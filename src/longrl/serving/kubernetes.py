"""A verifier on the cluster: a vLLM Deployment and its Service, created, awaited and torn down.

When the model is an ``s3://`` URI an init container (the pipeline image) copies it into a
shared volume first, with the read-only keys of ``model_secret``; the server itself holds no S3
keys, and a Hugging Face token only when it pulls a hub model. Both objects carry the pipeline
run's label: a start that is cancelled deletes them on the spot, and the pipeline's exit handler
deletes them (and sweeps anything else the run left) whatever happened before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from longrl import storage
from longrl.launchers.cluster import (
    JOBS_NAMESPACE,
    SCRATCH_ENV,
    SCRATCH_VOLUME,
    SCRATCH_VOLUME_MOUNT,
    ClusterShape,
    container_security_context,
    pod_security_context,
    scheduling,
)
from longrl.launchers.kube import (
    COMPONENT_LABEL,
    PART_OF_LABEL,
    AlreadyExists,
    KubernetesApi,
    NotFound,
    Terminated,
    terminated_as_exception,
    with_retries,
)
from longrl.serving.config import VerifierConfig
from longrl.serving.local import ServingError

PORT = 8000
MODEL_MOUNT = "/models"
# Any non-root user: the images' files are world-readable and everything written goes to volumes.
VERIFIER_UID = VERIFIER_GID = 1000
LOADER_CPU, LOADER_MEMORY = "1", "4Gi"
# Flags that would put a secret on the server's command line (visible in the pod spec and `ps`).
SECRET_FLAGS = ("--api-key", "--hf-token")


class ClusterVerifierConfig(BaseModel):
    """Where and on what the verifier runs in the cluster."""

    namespace: str = Field(
        JOBS_NAMESPACE, description="Namespace of the Deployment and Service: the RayJobs'"
    )
    name: str = Field("longrl-verifier", description="Name of the Deployment and the Service")
    image: str = Field("vllm/vllm-openai:v0.32.0", description="vLLM server image")
    loader_image: str = Field("ghcr.io/longrl/pipeline:0.1.0", description="Image that copies an s3:// model")
    gpus: int = Field(1, ge=0, description="GPUs for the server")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of a GPU")
    cpu: str = Field("4", description="CPU request/limit")
    memory: str = Field("32Gi", description="Memory request/limit")
    cluster: ClusterShape = Field(
        default_factory=ClusterShape,
        description="Pod shape shared with the Ray pods (tolerations, nodeSelector, pull secrets, priority, /dev/shm)",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels of both objects and the pod (the pipeline run's)"
    )
    api_key_secret: str = Field(
        "longrl-verifier",
        description="Secret with VLLM_API_KEY (the key clients must send) and HF_TOKEN (for a gated hub model); "
        "optional",
    )
    model_secret: str = Field(
        "longrl-s3-verifier",
        description="Secret with read-only S3 keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "LONGRL_S3_ENDPOINT_URL) for the init container that copies an s3:// model; only that container gets it",
    )
    service_account: str | None = Field("longrl-verifier", description="ServiceAccount of the server pod")
    ready_timeout_s: float = Field(1800.0, gt=0, description="Give up if not ready by then")
    poll_interval_s: float = Field(10.0, gt=0, description="Seconds between readiness checks")

    @property
    def base_url(self) -> str:
        """The Service's OpenAI API base URL, inside the cluster."""
        return f"http://{self.name}.{self.namespace}.svc.cluster.local:{PORT}/v1"


def _selector(config: ClusterVerifierConfig) -> dict[str, str]:
    """The Deployment's selector (immutable, so only what never changes)."""
    return {
        "app.kubernetes.io/name": "longrl",
        COMPONENT_LABEL: "verifier",
        "app.kubernetes.io/instance": config.name,
    }


def _labels(config: ClusterVerifierConfig) -> dict[str, str]:
    """Labels of the objects and the pod (a NetworkPolicy selects the pod by part-of + component)."""
    return {**_selector(config), PART_OF_LABEL: "longrl", **config.labels}


def _secret_env(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": name, "optional": True}}}


def _is_hub_model(model: str) -> bool:
    return not storage.is_s3(model) and not model.startswith(("/", "."))


def build_verifier_objects(verifier: VerifierConfig, cluster: ClusterVerifierConfig) -> list[dict[str, Any]]:
    """The Deployment and Service that serve ``verifier`` with vLLM's OpenAI API on port 8000."""
    secret_flags = [arg for arg in verifier.extra_args if arg.split("=", 1)[0] in SECRET_FLAGS]
    if secret_flags:
        raise ServingError(
            f"verifier extra_args {secret_flags} would put a secret on the command line: "
            f"the server reads VLLM_API_KEY and HF_TOKEN from the {cluster.api_key_secret} Secret"
        )
    labels, shape = _labels(cluster), cluster.cluster
    from_s3 = storage.is_s3(verifier.model)
    model_path = f"{MODEL_MOUNT}/verifier" if from_s3 else verifier.model
    limits: dict[str, Any] = {"cpu": cluster.cpu, "memory": cluster.memory}
    if cluster.gpus:
        limits[cluster.gpu_resource] = str(cluster.gpus)
    env = [*SCRATCH_ENV, _secret_env("VLLM_API_KEY", cluster.api_key_secret)]
    if _is_hub_model(verifier.model):
        env.append(_secret_env("HF_TOKEN", cluster.api_key_secret))
    security = container_security_context(shape)
    server = {
        "name": "vllm",
        "image": cluster.image,
        # the image's entrypoint is the OpenAI server; `vllm serve` takes the same arguments
        "command": ["vllm"],
        "args": verifier.serve_args(model_path, PORT, "0.0.0.0"),
        "ports": [{"containerPort": PORT, "name": "http"}],
        "env": env,
        "resources": {"requests": dict(limits), "limits": dict(limits)},
        "securityContext": security,
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
            SCRATCH_VOLUME_MOUNT,
            {"name": "models", "mountPath": MODEL_MOUNT},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod: dict[str, Any] = {
        "containers": [server],
        "volumes": [
            SCRATCH_VOLUME,
            {"name": "models", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shape.shm_size}},
        ],
        "securityContext": pod_security_context(VERIFIER_UID, VERIFIER_GID),
        # It needs no Kubernetes API: no token in the pod.
        "automountServiceAccountToken": False,
        **scheduling(shape, gpu_pod=cluster.gpus > 0),
    }
    if cluster.service_account:
        pod["serviceAccountName"] = cluster.service_account
    if from_s3:
        loader_resources = {"cpu": LOADER_CPU, "memory": LOADER_MEMORY}
        pod["initContainers"] = [
            {
                "name": "fetch-model",
                "image": cluster.loader_image,
                "command": ["python", "-m", "longrl.storage", "copy", verifier.model, model_path],
                "env": list(SCRATCH_ENV),
                "envFrom": [{"secretRef": {"name": cluster.model_secret}}],
                "resources": {"requests": dict(loader_resources), "limits": dict(loader_resources)},
                "securityContext": security,
                "volumeMounts": [SCRATCH_VOLUME_MOUNT, {"name": "models", "mountPath": MODEL_MOUNT}],
            }
        ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": cluster.name, "namespace": cluster.namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _selector(cluster)},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": cluster.name, "namespace": cluster.namespace, "labels": labels},
        "spec": {
            "selector": _selector(cluster),
            "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
        },
    }
    return [deployment, service]


class ClusterVerifier:
    """Creates the verifier's objects, waits for readiness, and deletes them again.

    A start that does not end ready (cancelled by SIGTERM, not ready in time) deletes what it
    created and says so; once ready, the server outlives the step on purpose (the training steps
    use it) until ``stop`` (the pipeline's exit handler).
    """

    def __init__(
        self,
        api: KubernetesApi,
        verifier: VerifierConfig,
        cluster: ClusterVerifierConfig,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = print,
    ) -> None:
        self.api = api
        self.verifier = verifier
        self.cluster = cluster
        self.sleep = sleep
        self.clock = clock
        self.log = log

    @property
    def base_url(self) -> str:
        return self.cluster.base_url

    def start(self) -> str:
        objects = build_verifier_objects(self.verifier, self.cluster)
        with terminated_as_exception(self.log):
            try:
                for obj in objects:
                    try:
                        with_retries(lambda obj=obj: self.api.create(obj), sleep=self.sleep)
                        self.log(f"created {obj['kind']} {self.cluster.namespace}/{self.cluster.name}")
                    except AlreadyExists:
                        pass  # a retried step: the server is already there
                self._wait_ready()
            except BaseException as exc:
                if isinstance(exc, Terminated):
                    why = f"the start was terminated ({exc.signal_name})"
                else:
                    why = f"the start failed ({type(exc).__name__}: {exc})"
                self.stop(why)
                raise
        return self.base_url

    def _wait_ready(self) -> None:
        deadline = self.clock() + self.cluster.ready_timeout_s
        while self.clock() < deadline:
            deployment = with_retries(
                lambda: self.api.get("apps/v1", "Deployment", self.cluster.namespace, self.cluster.name),
                sleep=self.sleep,
            )
            status = deployment.get("status") or {}
            if (status.get("readyReplicas") or 0) >= deployment["spec"].get("replicas", 1):
                return
            self.sleep(self.cluster.poll_interval_s)
        raise ServingError(
            f"verifier {self.cluster.namespace}/{self.cluster.name} not ready after {self.cluster.ready_timeout_s:.0f} s"
        )

    def stop(self, why: str = "the pipeline run is over") -> None:
        for api_version, kind in (("v1", "Service"), ("apps/v1", "Deployment")):
            try:
                with_retries(
                    lambda api_version=api_version, kind=kind: self.api.delete(
                        api_version, kind, self.cluster.namespace, self.cluster.name
                    ),
                    sleep=self.sleep,
                )
            except NotFound:
                continue
            self.log(f"deleted {kind} {self.cluster.namespace}/{self.cluster.name}: {why}")
