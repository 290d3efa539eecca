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
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field

from longrl import storage
from longrl.launchers.cluster import (
    JOBS_NAMESPACE,
    KUEUE_QUEUE_LABEL,
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
    TransientApiError,
    terminated_as_exception,
    with_retries,
)
from longrl.train.config import TrainingConfig

logger = logging.getLogger(__name__)
T = TypeVar("T")

API_VERSION = "ray.io/v1"
KIND = "RayJob"
CONFIG_ENV = "LONGRL_STEP_CONFIG"
TERMINAL_JOB_STATUSES = {"SUCCEEDED", "FAILED", "STOPPED"}
TERMINAL_DEPLOYMENT_STATUSES = {"Complete", "Failed", "ValidationFailed"}


STEP_LABEL = "longrl.io/step"
TRL_IMAGE = "ghcr.io/longrl/trainer:0.1.0"
SHARED_MOUNT = "/mnt/longrl-shared"
VERL_IMAGE = "ghcr.io/longrl/trainer-verl:0.1.0"


class LaunchFailed(RuntimeError):
    """The step's job failed, was stopped or could not be started."""


class WorkerGroup(BaseModel):
    """The Ray worker pods that run Ray Train (their CPUs, shared memory and placement: ``ClusterShape``)."""

    replicas: int = Field(1, ge=1, description="Worker pods")
    memory: str = Field("64Gi", description="Memory request/limit per worker pod")
    gpus: int = Field(1, ge=0, description="GPUs per worker pod")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of a GPU")


# The Ray images' user (rayproject/ray: ray, uid 1000, group users 100).
RAY_UID, RAY_GID = 1000, 100
SUBMITTER_CPU, SUBMITTER_MEMORY = "500m", "1Gi"


class KubeRayConfig(BaseModel):
    """Where and how a step's RayJob runs."""

    namespace: str = Field(
        JOBS_NAMESPACE,
        description="Namespace of the RayJob: where manifests/base lets the pipeline create it",
    )
    image: str = Field(TRL_IMAGE, description="Trainer image (longrl, torch, vLLM, Ray; the trl engine's)")
    image_pull_policy: str = Field("IfNotPresent", description="imagePullPolicy of the Ray pods")
    service_account: str | None = Field("longrl-ray", description="ServiceAccount of the Ray pods")
    ray_version: str = Field("2.60.0", description="Ray version in the image")
    workers: WorkerGroup = Field(default_factory=WorkerGroup)
    cluster: ClusterShape = Field(default_factory=ClusterShape)
    secret_env: list[str] = Field(
        default_factory=lambda: ["longrl-s3"],
        description="Secrets whose keys all become environment variables of every Ray pod (the S3 keys of "
        "the training role); optional Secrets",
    )
    secret_keys: dict[str, str] = Field(
        default_factory=lambda: {"LONGRL_JUDGE_API_KEY": "longrl-verifier", "HF_TOKEN": "longrl-verifier"},
        description="Single keys from Secrets: environment variable (= key) -> Secret name; optional",
    )
    token_auth: bool = Field(
        True,
        description="Ray token authentication (KubeRay authOptions: a generated token guards the dashboard, "
        "job API and GCS)",
    )
    shared_volume_claim: str | None = Field(
        None,
        description=f"ReadWriteMany PersistentVolumeClaim mounted at {SHARED_MOUNT} on the head and every worker "
        "and used as longrl's cache (step staging): verl on several nodes writes checkpoint shards there",
    )
    active_deadline_seconds: int = Field(48 * 3600, ge=60, description="Fail the job after this long")
    ttl_seconds_after_finished: int = Field(
        3600,
        ge=0,
        description="KubeRay deletes a finished job's cluster after this long (a backstop: the launcher deletes "
        "the RayJob as soon as it has read the result)",
    )
    poll_interval_s: float = Field(10.0, gt=0, description="Seconds between status checks")
    api_retry_timeout_s: float = Field(
        900.0,
        gt=0,
        description="How long the watch keeps retrying an unreachable API server; then the step fails and "
        "leaves the job running (a retried step re-attaches)",
    )
    delete_on_failure: bool = Field(
        True, description="Delete the RayJob (and its cluster) when the step fails"
    )


def rayjob_name(pipeline_run_id: str, step: str) -> str:
    """A stable DNS-1123 name: the same pipeline run and step always give the same name."""
    slug = re.sub(r"[^a-z0-9-]+", "-", step.lower()).strip("-")[:20].strip("-") or "step"
    digest = hashlib.sha256(f"{pipeline_run_id}/{step}".encode()).hexdigest()[:10]
    return f"longrl-{slug}-{digest}"


def _env(kuberay: KubeRayConfig) -> list[dict[str, Any]]:
    env = dict(kuberay.cluster.env)
    if kuberay.shared_volume_claim:
        env["LONGRL_CACHE_DIR"] = f"{SHARED_MOUNT}/cache"
    plain = [{"name": name, "value": value} for name, value in sorted(env.items())]
    from_secrets = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for key, secret in sorted(kuberay.secret_keys.items())
    ]
    return [*SCRATCH_ENV, *plain, *from_secrets]


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


def _container(kuberay: KubeRayConfig, name: str, resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": kuberay.image,
        "imagePullPolicy": kuberay.image_pull_policy,
        "resources": resources,
        "securityContext": container_security_context(kuberay.cluster),
        **extra,
    }


def _pod_spec(
    kuberay: KubeRayConfig,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    gpu_pod: bool,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [SCRATCH_VOLUME, *volumes],
        "securityContext": pod_security_context(RAY_UID, RAY_GID),
        # Ray pods never call the Kubernetes API: no token in them.
        "automountServiceAccountToken": False,
        **scheduling(kuberay.cluster, gpu_pod),
        **extra,
    }
    if kuberay.service_account:
        spec["serviceAccountName"] = kuberay.service_account
    return spec


def rayjob_labels(step: str, labels: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of the RayJob and its pods (a NetworkPolicy selects the Ray pods by part-of + component)."""
    return {
        "app.kubernetes.io/name": "longrl",
        PART_OF_LABEL: "longrl",
        COMPONENT_LABEL: "ray",
        STEP_LABEL: re.sub(r"[^A-Za-z0-9_.-]+", "-", step)[:63],
        **(labels or {}),
    }


def build_rayjob(
    step: str,
    config: TrainingConfig,
    kuberay: KubeRayConfig,
    name: str,
    labels: dict[str, str] | None = None,
    entrypoint: str | None = None,
) -> dict[str, Any]:
    """The RayJob that runs ``python -m longrl.train <step>`` with ``config`` on a fresh Ray cluster
    (or ``entrypoint``, which reads the config from the same variable: evaluation's).

    Every pod (head, workers, the submitter) runs hardened (``longrl.launchers.cluster``) and is
    labelled with ``labels`` (the pipeline run's); secrets reach it from Secrets only, never from
    the spec or a command line.
    """
    labels = rayjob_labels(step, labels)
    shape = kuberay.cluster
    workers = kuberay.workers
    gpu = {workers.gpu_resource: str(workers.gpus)} if workers.gpus else {}
    shared_volumes, shared_mounts = _shared_volume(kuberay)
    env, env_from = _env(kuberay), _env_from(kuberay)
    head = _container(
        kuberay,
        "ray-head",
        _resources(shape.head_cpu, shape.head_memory),
        # GCS (workers join) and the dashboard (the submitter's job API); no Ray Client port.
        ports=[{"containerPort": 6379, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"}],
        env=env,
        envFrom=env_from,
        volumeMounts=[SCRATCH_VOLUME_MOUNT, *shared_mounts],
    )
    worker = _container(
        kuberay,
        "ray-worker",
        _resources(shape.worker_cpu, workers.memory, gpu),
        env=env,
        envFrom=env_from,
        volumeMounts=[SCRATCH_VOLUME_MOUNT, {"name": "dshm", "mountPath": "/dev/shm"}, *shared_mounts],
    )
    dshm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shape.shm_size}}
    # The submitter only calls the head's job API: no secrets, no GPU node.
    submitter = _container(
        kuberay,
        "ray-job-submitter",
        _resources(SUBMITTER_CPU, SUBMITTER_MEMORY),
        env=list(SCRATCH_ENV),
        volumeMounts=[SCRATCH_VOLUME_MOUNT],
    )
    runtime_env = {"env_vars": {CONFIG_ENV: config.model_dump_json()}}
    metadata_labels = dict(labels)
    spec: dict[str, Any] = {
        "entrypoint": entrypoint or f"python -m longrl.train {step} --config env:{CONFIG_ENV}",
        "runtimeEnvYAML": yaml.safe_dump(runtime_env, sort_keys=True),
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": kuberay.ttl_seconds_after_finished,
        "activeDeadlineSeconds": kuberay.active_deadline_seconds,
        "backoffLimit": 0,
        "submissionMode": "K8sJobMode",
        "submitterPodTemplate": {
            "metadata": {"labels": labels},
            "spec": _pod_spec(kuberay, submitter, [], gpu_pod=False, restartPolicy="Never"),
        },
        "rayClusterSpec": {
            "rayVersion": kuberay.ray_version,
            "headGroupSpec": {
                # The head runs the driver only; training happens on the workers. The dashboard listens
                # on the pod's address for the submitter pod; token authentication guards it.
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": _pod_spec(kuberay, head, shared_volumes, gpu_pod=False),
                },
            },
            "workerGroupSpecs": [
                {
                    "groupName": "trainers",
                    "replicas": workers.replicas,
                    "minReplicas": workers.replicas,
                    "maxReplicas": workers.replicas,
                    "rayStartParams": {},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": _pod_spec(kuberay, worker, [dshm, *shared_volumes], gpu_pod=True),
                    },
                }
            ],
        },
    }
    if kuberay.token_auth:
        spec["rayClusterSpec"]["authOptions"] = {"mode": "token"}
    if shape.kueue_queue:
        # Kueue admits a job it finds suspended; created running, it would start outside the queue's quota.
        metadata_labels[KUEUE_QUEUE_LABEL] = shape.kueue_queue
        spec["suspend"] = True
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": kuberay.namespace, "labels": metadata_labels},
        "spec": spec,
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
    """Runs training steps as RayJobs through a ``KubernetesApi``.

    What it creates it deletes: when the job failed, when the step is cancelled (SIGTERM, Ctrl-C)
    and once a finished job's result is read. An API server that cannot answer for a while (a
    restart, 5xx, 429, a dropped connection) is asked again with backoff and never makes it delete
    a job: after ``api_retry_timeout_s`` the step fails and leaves the job for a retry to re-attach.
    """

    def __init__(
        self,
        api: KubernetesApi,
        kuberay: KubeRayConfig,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.kuberay = kuberay
        self.sleep = sleep
        self.log = log
        self.clock = clock

    def run(
        self,
        step: str,
        config: TrainingConfig,
        name: str,
        labels: dict[str, str] | None = None,
        entrypoint: str | None = None,
        result_name: str | None = None,
    ) -> dict[str, Any]:
        """Creates (or re-attaches to) the step's RayJob, waits for it, returns the step's result
        (``result_name`` in its output directory; the training result by default). Any step config
        with an ``output_dir`` runs (evaluation's too)."""
        if not storage.is_s3(config.output_dir):
            raise LaunchFailed(
                f"output_dir {config.output_dir} is local to this pod: a RayJob must write to s3:// storage"
            )
        job = build_rayjob(step, config, self.kuberay, name, labels, entrypoint)
        namespace = self.kuberay.namespace
        with terminated_as_exception(self.log):
            try:
                self._create_or_attach(job)
                status = self._wait(name)
            except ApiUnavailable as exc:
                # The job's state is unknown, not failed: leave it; a retried step re-attaches to it.
                raise LaunchFailed(f"RayJob {namespace}/{name}: {exc}; the job was left running") from exc
            except BaseException as exc:  # cancelled (SIGTERM, Ctrl-C) or our own failure
                self._delete(name, _why_interrupted(exc))
                raise
            if job_outcome(status) != "succeeded":
                reason = status.get("message") or status.get("reason") or status.get("jobStatus") or "unknown"
                if self.kuberay.delete_on_failure:
                    self._delete(name, "the job failed")
                raise LaunchFailed(f"RayJob {namespace}/{name} failed: {reason}")
            result = json.loads(
                storage.read_text(storage.join(config.output_dir, result_name or result_file()))
            )
            self._delete(name, "finished and its result read")
            return result

    def _api(self, call: Callable[[], T]) -> T:
        """``call()``, retried with backoff while the API server cannot answer, up to the retry window."""
        deadline = self.clock() + self.kuberay.api_retry_timeout_s
        delay = min(1.0, self.kuberay.poll_interval_s)
        while True:
            try:
                return call()
            except TransientApiError as exc:
                if self.clock() + delay > deadline:
                    raise ApiUnavailable(
                        f"the Kubernetes API did not answer for {self.kuberay.api_retry_timeout_s:.0f} s ({exc})"
                    ) from exc
                self.log(f"Kubernetes API unavailable ({exc}); asking again in {delay:.0f} s")
                self.sleep(delay)
                delay = min(delay * 2, 60.0)

    def _create_or_attach(self, job: dict[str, Any]) -> None:
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        try:
            self._api(lambda: self.api.create(job))
            self.log(f"created RayJob {namespace}/{name}")
            return
        except AlreadyExists:  # a retried step, or a create whose answer was lost
            existing = self._api(lambda: self.api.get(API_VERSION, KIND, namespace, name))
        if job_outcome(existing.get("status") or {}) == "failed":
            self.log(f"RayJob {namespace}/{name} exists and failed earlier: replacing it (the step resumes)")
            self._delete(name, "replacing a failed attempt")
            self._wait_gone(name)
            self._api(lambda: self.api.create(job))
        else:
            self.log(f"re-attached to RayJob {namespace}/{name}")

    def _wait(self, name: str) -> dict[str, Any]:
        namespace = self.kuberay.namespace
        last: tuple[Any, Any] | None = None
        streamer: threading.Thread | None = None
        while True:
            try:
                job = self._api(lambda: self.api.get(API_VERSION, KIND, namespace, name))
            except NotFound as exc:
                raise LaunchFailed(
                    f"RayJob {namespace}/{name} disappeared while running (deleted by someone)"
                ) from exc
            status = job.get("status") or {}
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
        try:
            pods = self.api.list_pods(self.kuberay.namespace, f"job-name={name}")
        except TransientApiError:
            return None  # the next poll looks again
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
        namespace = self.kuberay.namespace
        try:
            with_retries(lambda: self.api.delete(API_VERSION, KIND, namespace, name), sleep=self.sleep)
        except NotFound:
            return
        except Exception as exc:  # noqa: BLE001 - say so; the run's exit handler sweeps what is left
            self.log(f"could not delete RayJob {namespace}/{name} ({why}): {exc}")
            return
        self.log(f"deleted RayJob {namespace}/{name}: {why}")

    def _wait_gone(self, name: str, attempts: int = 60) -> None:
        for _ in range(attempts):
            try:
                self._api(lambda: self.api.get(API_VERSION, KIND, self.kuberay.namespace, name))
            except NotFound:
                return
            self.sleep(self.kuberay.poll_interval_s)
        raise LaunchFailed(f"RayJob {self.kuberay.namespace}/{name} was not deleted in time")


class ApiUnavailable(RuntimeError):
    """The Kubernetes API did not answer within the retry window (the job's state is unknown)."""


def _why_interrupted(exc: BaseException) -> str:
    if isinstance(exc, Terminated):
        return f"the launcher was terminated ({exc.signal_name})"
    if isinstance(exc, KeyboardInterrupt):
        return "the launcher was interrupted"
    return f"the launcher failed ({type(exc).__name__}: {exc})"


def result_file() -> str:
    """The step's result file name (imported late: longrl.train.checkpoints imports transformers, seconds)."""
    from longrl.train.checkpoints import RESULT_FILE

    return RESULT_FILE
