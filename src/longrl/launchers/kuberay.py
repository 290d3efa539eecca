"""The ``kuberay`` launcher: a step as a KubeRay ``RayJob`` (ray.io/v1), watched to the end.

The RayJob runs the same entrypoint as a laptop (``python -m longrl.train <step>``) on a Ray
cluster made for it: a CPU head that runs the driver and a GPU worker group for Ray Train. The
step's config travels in the job's runtime environment (``LONGRL_STEP_CONFIG``); credentials
come from Kubernetes Secrets as environment variables, never from the config. The launcher
creates the job under a name derived from the pipeline run and step (a retried component finds
its job again), follows ``jobStatus``/``jobDeploymentStatus`` to a terminal state while
streaming the driver's log, and deletes what it made when the step fails or is cancelled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import yaml
from pydantic import BaseModel, Field

from longrl import storage
from longrl.launchers.kube import AlreadyExists, KubernetesApi, NotFound
from longrl.train.checkpoints import RESULT_FILE
from longrl.train.config import TrainingConfig

logger = logging.getLogger(__name__)

API_VERSION = "ray.io/v1"
KIND = "RayJob"
CONFIG_ENV = "LONGRL_STEP_CONFIG"
TERMINAL_JOB_STATUSES = {"SUCCEEDED", "FAILED", "STOPPED"}
TERMINAL_DEPLOYMENT_STATUSES = {"Complete", "Failed", "ValidationFailed"}


TRL_IMAGE = "ghcr.io/longrl/trainer:0.1.0"
SHARED_MOUNT = "/mnt/longrl-shared"
VERL_IMAGE = "ghcr.io/longrl/trainer-verl:0.1.0"


class LaunchFailed(RuntimeError):
    """The step's job failed, was stopped or could not be started."""


class WorkerGroup(BaseModel):
    """The Ray worker pods that run Ray Train."""

    replicas: int = Field(1, ge=1, description="Worker pods")
    cpu: str = Field("8", description="CPU request/limit per worker pod")
    memory: str = Field("64Gi", description="Memory request/limit per worker pod")
    gpus: int = Field(1, ge=0, description="GPUs per worker pod")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of a GPU")
    shm_size: str = Field("16Gi", description="Size of /dev/shm (NCCL, dataloaders)")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector for worker pods")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Tolerations for worker pods")


class KubeRayConfig(BaseModel):
    """Where and how a step's RayJob runs."""

    namespace: str = Field(
        "kubeflow", description="Namespace of the RayJob: the pipeline's (KFP standalone: kubeflow)"
    )
    image: str = Field(TRL_IMAGE, description="Trainer image (longrl, torch, vLLM, Ray; the trl engine's)")
    image_pull_policy: str = Field("IfNotPresent", description="imagePullPolicy of the Ray pods")
    service_account: str | None = Field("longrl-ray", description="ServiceAccount of the Ray pods")
    ray_version: str = Field("2.60.0", description="Ray version in the image")
    head_cpu: str = Field("4", description="CPU of the head pod (runs the driver, not training)")
    head_memory: str = Field("16Gi", description="Memory of the head pod")
    workers: WorkerGroup = Field(default_factory=WorkerGroup)
    secret_env: list[str] = Field(
        default_factory=lambda: ["longrl-s3", "longrl-verifier"],
        description="Secrets whose keys become environment variables of every Ray pod (optional Secrets)",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra plain environment variables")
    shared_volume_claim: str | None = Field(
        None,
        description=f"ReadWriteMany PersistentVolumeClaim mounted at {SHARED_MOUNT} on the head and every worker "
        "and used as longrl's cache (step staging): verl on several nodes writes checkpoint shards there",
    )
    active_deadline_seconds: int = Field(48 * 3600, ge=60, description="Fail the job after this long")
    ttl_seconds_after_finished: int = Field(
        3600, ge=0, description="Delete the finished RayJob after this long"
    )
    poll_interval_s: float = Field(10.0, gt=0, description="Seconds between status checks")
    delete_on_failure: bool = Field(
        True, description="Delete the RayJob (and its cluster) when the step fails"
    )


def rayjob_name(pipeline_run_id: str, step: str) -> str:
    """A stable DNS-1123 name: the same pipeline run and step always give the same name."""
    slug = re.sub(r"[^a-z0-9-]+", "-", step.lower()).strip("-")[:20].strip("-") or "step"
    digest = hashlib.sha256(f"{pipeline_run_id}/{step}".encode()).hexdigest()[:10]
    return f"longrl-{slug}-{digest}"


def _env(kuberay: KubeRayConfig) -> list[dict[str, Any]]:
    env = dict(kuberay.env)
    if kuberay.shared_volume_claim:
        env.setdefault("LONGRL_CACHE_DIR", f"{SHARED_MOUNT}/cache")
    return [{"name": name, "value": value} for name, value in sorted(env.items())]


def _shared_volume(kuberay: KubeRayConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) of the shared volume, when there is one."""
    if not kuberay.shared_volume_claim:
        return [], []
    volume = {"name": "shared", "persistentVolumeClaim": {"claimName": kuberay.shared_volume_claim}}
    return [volume], [{"name": "shared", "mountPath": SHARED_MOUNT}]


def _env_from(kuberay: KubeRayConfig) -> list[dict[str, Any]]:
    return [{"secretRef": {"name": name, "optional": True}} for name in kuberay.secret_env]


def _resources(cpu: str, memory: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    amounts = {"cpu": cpu, "memory": memory, **(extra or {})}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _pod_spec(kuberay: KubeRayConfig, container: dict[str, Any], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [container], **extra}
    if kuberay.service_account:
        spec["serviceAccountName"] = kuberay.service_account
    return spec


def build_rayjob(
    step: str,
    config: TrainingConfig,
    kuberay: KubeRayConfig,
    name: str,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The RayJob that runs ``python -m longrl.train <step>`` with ``config`` on a fresh Ray cluster."""
    labels = {"app.kubernetes.io/name": "longrl", "app.kubernetes.io/component": step, **(labels or {})}
    workers = kuberay.workers
    gpu = {workers.gpu_resource: str(workers.gpus)} if workers.gpus else {}
    shared_volumes, shared_mounts = _shared_volume(kuberay)
    head = {
        "name": "ray-head",
        "image": kuberay.image,
        "imagePullPolicy": kuberay.image_pull_policy,
        "resources": _resources(kuberay.head_cpu, kuberay.head_memory),
        "ports": [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ],
        "env": _env(kuberay),
        "envFrom": _env_from(kuberay),
    }
    if shared_mounts:
        head["volumeMounts"] = shared_mounts
    worker = {
        "name": "ray-worker",
        "image": kuberay.image,
        "imagePullPolicy": kuberay.image_pull_policy,
        "resources": _resources(workers.cpu, workers.memory, gpu),
        "env": _env(kuberay),
        "envFrom": _env_from(kuberay),
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, *shared_mounts],
    }
    worker_pod = _pod_spec(
        kuberay,
        worker,
        volumes=[
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": workers.shm_size}},
            *shared_volumes,
        ],
    )
    if workers.node_selector:
        worker_pod["nodeSelector"] = dict(workers.node_selector)
    if workers.tolerations:
        worker_pod["tolerations"] = list(workers.tolerations)
    runtime_env = {"env_vars": {CONFIG_ENV: config.model_dump_json()}}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": kuberay.namespace, "labels": labels},
        "spec": {
            "entrypoint": f"python -m longrl.train {step} --config env:{CONFIG_ENV}",
            "runtimeEnvYAML": yaml.safe_dump(runtime_env, sort_keys=True),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": kuberay.ttl_seconds_after_finished,
            "activeDeadlineSeconds": kuberay.active_deadline_seconds,
            "backoffLimit": 0,
            "submissionMode": "K8sJobMode",
            "rayClusterSpec": {
                "rayVersion": kuberay.ray_version,
                "headGroupSpec": {
                    # The head runs the driver only; training happens on the workers.
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": _pod_spec(
                            kuberay, head, **({"volumes": shared_volumes} if shared_volumes else {})
                        ),
                    },
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "trainers",
                        "replicas": workers.replicas,
                        "minReplicas": workers.replicas,
                        "maxReplicas": workers.replicas,
                        "rayStartParams": {},
                        "template": {"metadata": {"labels": labels}, "spec": worker_pod},
                    }
                ],
            },
        },
    }


def job_outcome(status: dict[str, Any]) -> str | None:
    """'succeeded', 'failed', or None while the job is still going."""
    job, deployment = status.get("jobStatus"), status.get("jobDeploymentStatus")
    if job == "SUCCEEDED":
        return "succeeded"
    if job in TERMINAL_JOB_STATUSES or deployment in ("Failed", "ValidationFailed"):
        return "failed"
    if deployment == "Complete":  # finished, but the job status was never seen as SUCCEEDED
        return "failed"
    return None


class KubeRayLauncher:
    """Runs training steps as RayJobs through a ``KubernetesApi``."""

    def __init__(
        self,
        api: KubernetesApi,
        kuberay: KubeRayConfig,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = print,
    ) -> None:
        self.api = api
        self.kuberay = kuberay
        self.sleep = sleep
        self.log = log

    def run(
        self, step: str, config: TrainingConfig, name: str, labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Creates (or re-attaches to) the step's RayJob, waits for it, returns the step's result."""
        if not storage.is_s3(config.output_dir):
            raise LaunchFailed(
                f"output_dir {config.output_dir} is local to this pod: a RayJob must write to s3:// storage"
            )
        job = build_rayjob(step, config, self.kuberay, name, labels)
        namespace = self.kuberay.namespace
        self._create_or_attach(job)
        try:
            status = self._wait(name)
        except (
            BaseException
        ):  # cancelled (SIGTERM/KeyboardInterrupt) or our own failure: leave nothing behind
            self._delete(name, "the launcher was interrupted")
            raise
        if job_outcome(status) != "succeeded":
            reason = status.get("message") or status.get("reason") or status.get("jobStatus") or "unknown"
            if self.kuberay.delete_on_failure:
                self._delete(name, "the job failed")
            raise LaunchFailed(f"RayJob {namespace}/{name} failed: {reason}")
        return json.loads(storage.read_text(storage.join(config.output_dir, RESULT_FILE)))

    def _create_or_attach(self, job: dict[str, Any]) -> None:
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        try:
            self.api.create(job)
            self.log(f"created RayJob {namespace}/{name}")
            return
        except AlreadyExists:
            existing = self.api.get(API_VERSION, KIND, namespace, name)
        if job_outcome(existing.get("status") or {}) == "failed":
            self.log(f"RayJob {namespace}/{name} exists and failed earlier: replacing it (the step resumes)")
            self._delete(name, "replacing a failed attempt")
            self._wait_gone(name)
            self.api.create(job)
        else:
            self.log(f"re-attached to RayJob {namespace}/{name}")

    def _wait(self, name: str) -> dict[str, Any]:
        namespace = self.kuberay.namespace
        last: tuple[Any, Any] | None = None
        streamer: threading.Thread | None = None
        while True:
            status = self.api.get(API_VERSION, KIND, namespace, name).get("status") or {}
            current = (status.get("jobDeploymentStatus"), status.get("jobStatus"))
            if current != last:
                self.log(f"RayJob {name}: deployment={current[0] or '-'} job={current[1] or '-'}")
                last = current
            if streamer is None:
                streamer = self._start_log_stream(name)
            if job_outcome(status) is not None:
                if streamer is not None:
                    streamer.join(timeout=30)
                return status
            self.sleep(self.kuberay.poll_interval_s)

    def _start_log_stream(self, name: str) -> threading.Thread | None:
        """Follows the driver's log (the submitter pod's output) in the background, once the pod exists."""
        pods = self.api.list_pods(self.kuberay.namespace, f"job-name={name}")
        if not pods:
            return None
        pod = pods[0]["metadata"]["name"]

        def follow() -> None:
            try:
                for line in self.api.stream_pod_log(self.kuberay.namespace, pod):
                    self.log(f"[{name}] {line}")
            except Exception as exc:  # noqa: BLE001 - losing the log must not fail the step
                logger.warning("stopped following the log of %s: %s", pod, exc)

        thread = threading.Thread(target=follow, name=f"log-{name}", daemon=True)
        thread.start()
        return thread

    def _delete(self, name: str, why: str) -> None:
        try:
            self.api.delete(API_VERSION, KIND, self.kuberay.namespace, name)
            self.log(f"deleted RayJob {self.kuberay.namespace}/{name}: {why}")
        except NotFound:
            pass

    def _wait_gone(self, name: str, attempts: int = 60) -> None:
        for _ in range(attempts):
            try:
                self.api.get(API_VERSION, KIND, self.kuberay.namespace, name)
            except NotFound:
                return
            self.sleep(self.kuberay.poll_interval_s)
        raise LaunchFailed(f"RayJob {self.kuberay.namespace}/{name} was not deleted in time")
