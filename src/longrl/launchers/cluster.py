"""The ``cluster`` pipeline parameter: the shape of the pods longrl creates, and how they are hardened.

One typed section (``ClusterShape``) says where and how the Ray pods and the verifier run on a
shared cluster: CPUs, tolerations, node selection, pull secrets, priority, shared memory, extra
environment (NCCL), a Kueue queue and the collective timeout. Unknown keys are errors. The helpers
below turn it into pod-spec fields; the same hardening (non-root, no privilege escalation, no
capabilities, seccomp RuntimeDefault, read-only root filesystem with a writable /tmp) goes on every
pod longrl generates.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A value given here lands in the pipeline's parameters (KFP's database, the UI): secrets belong in Secrets.
SECRET_LIKE = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
# Set by longrl itself: the step's config, the writable home of a read-only root, Ray's authentication.
RESERVED_ENV = {"LONGRL_STEP_CONFIG", "LONGRL_CACHE_DIR", "HOME", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}

# Where the pipeline creates its RayJobs and the verifier: the namespace the longrl-pipeline Role,
# the Ray pods' Secrets and the NetworkPolicies of manifests/base are in.
JOBS_NAMESPACE = "longrl-jobs"

SCRATCH_MOUNT = "/tmp"
SCRATCH_HOME = "/tmp/home"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def _quantity(value: str) -> str:
    if not QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. '8', '500m', '64Gi')")
    return value


class Toleration(BaseModel):
    """A Kubernetes toleration (the fields of core/v1 Toleration, spelled as Kubernetes spells them)."""

    model_config = ConfigDict(extra="forbid")

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None  # Kubernetes spells it so

    def to_kubernetes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ClusterShape(BaseModel):
    """Pod shape of the Ray pods (head and GPU workers) and the verifier (the pipeline's ``cluster``).

    Worker memory is not here: it is the pipeline's ``worker_memory_gib``, which the GPU planner
    reads too (offloaded optimizer states live there).
    """

    model_config = ConfigDict(extra="forbid")

    worker_cpu: str = Field(
        "8", description="CPU request and limit of a Ray worker pod (Kubernetes quantity)"
    )
    head_cpu: str = Field("4", description="CPU of the Ray head pod (it runs the driver, not training)")
    head_memory: str = Field("16Gi", description="Memory of the Ray head pod")
    shm_size: str = Field(
        "16Gi",
        description="Size of /dev/shm on workers and the verifier (NCCL, dataloaders); counts as memory",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector of the GPU pods (Ray workers, verifier)"
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations of every pod (e.g. of the GPU nodes' taints)"
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secrets to pull the images with (private registries)"
    )
    priority_class_name: str | None = Field(None, description="PriorityClass of every pod")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment of the Ray pods (e.g. NCCL_IB_HCA, NCCL_SOCKET_IFNAME); no secrets",
    )
    kueue_queue: str | None = Field(
        None,
        description=f"Kueue LocalQueue: the RayJob gets the {KUEUE_QUEUE_LABEL} label and is created suspended "
        "(Kueue starts it when the queue admits it)",
    )
    collective_timeout_s: int | None = Field(
        None,
        ge=1,
        description="Timeout of collective operations (torch.distributed) in seconds; "
        "None: the engine's default (Ray Train 1800, verl 600)",
    )
    read_only_root_filesystem: bool = Field(
        True,
        description="Root filesystems read-only (/tmp is a writable volume and HOME); "
        "turn off only for an image that must write elsewhere",
    )

    _quantities = field_validator("worker_cpu", "head_cpu", "head_memory", "shm_size")(_quantity)

    @field_validator("env")
    @classmethod
    def _plain_environment(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not ENV_NAME.match(name):
                raise ValueError(f"env: {name!r} is not a valid environment variable name")
            if name in RESERVED_ENV or name.startswith("RAY_AUTH"):
                raise ValueError(f"env: {name} is set by longrl and cannot be overridden")
            if SECRET_LIKE.search(name):
                raise ValueError(
                    f"env: {name} looks like a secret; a pipeline parameter is stored and shown in clear: "
                    "put it in a Secret instead"
                )
        return env


def scheduling(shape: ClusterShape, gpu_pod: bool) -> dict[str, Any]:
    """Pod-spec fields that place a pod: tolerations, pull secrets and priority on every pod, the
    node selector on GPU pods only (the Ray head needs no GPU node)."""
    fields: dict[str, Any] = {}
    if shape.tolerations:
        fields["tolerations"] = [t.to_kubernetes() for t in shape.tolerations]
    if gpu_pod and shape.node_selector:
        fields["nodeSelector"] = dict(shape.node_selector)
    if shape.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": name} for name in shape.image_pull_secrets]
    if shape.priority_class_name:
        fields["priorityClassName"] = shape.priority_class_name
    return fields


def pod_security_context(uid: int, gid: int) -> dict[str, Any]:
    """Non-root, under the runtime's default seccomp profile; volumes writable by the group."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        # chown a mounted volume only when its root is not the group's yet (not every file, every start)
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(shape: ClusterShape) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": shape.read_only_root_filesystem,
    }


SCRATCH_VOLUME = {"name": "scratch", "emptyDir": {}}
SCRATCH_VOLUME_MOUNT = {"name": "scratch", "mountPath": SCRATCH_MOUNT}
# Caches that default to ~ (Hugging Face, Triton, torch extensions, vLLM) follow HOME onto /tmp.
SCRATCH_ENV = [{"name": "HOME", "value": SCRATCH_HOME}]
