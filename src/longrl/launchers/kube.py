"""The few Kubernetes calls longrl makes, behind a small interface (a fake implements it for tests).

Also what every caller needs around them: which errors are worth retrying, the labels that tie an
object to its pipeline run (and the sweep that deletes by them), and SIGTERM turned into an
exception so that a terminated component cleans up before it exits.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar


class NotFound(LookupError):
    """The object does not exist."""


class AlreadyExists(RuntimeError):
    """An object of that name already exists."""


class TransientApiError(RuntimeError):
    """The API server could not answer now (5xx, 429, a dropped connection): worth asking again.

    It says nothing about the object: a job being watched is still running as far as anyone knows.
    """


class KubernetesApi(Protocol):
    """Create, read, list and delete namespaced objects (built-in or custom) and read pod logs.

    Implementations raise ``NotFound``, ``AlreadyExists`` and ``TransientApiError``; anything else
    is a definite refusal (bad request, forbidden).
    """

    def create(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]: ...

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None: ...

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]: ...

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    def stream_pod_log(self, namespace: str, pod: str) -> Iterator[str]: ...


# ----- labels and the sweep -------------------------------------------------------------------

# Every object longrl creates carries its pipeline run's id here; the exit handler deletes by it.
RUN_LABEL = "longrl.io/pipeline-run"
PART_OF_LABEL = "app.kubernetes.io/part-of"
COMPONENT_LABEL = "app.kubernetes.io/component"

# What a run can leave behind, deleted in this order (the RayJob first: it holds the GPUs).
SWEPT_KINDS = (("ray.io/v1", "RayJob"), ("apps/v1", "Deployment"), ("v1", "Service"))


def run_labels(pipeline_run_id: str) -> dict[str, str]:
    """The labels that tie an object to its pipeline run (a label value is at most 63 characters)."""
    return {PART_OF_LABEL: "longrl", RUN_LABEL: pipeline_run_id[:63]}


def sweep_run(
    api: KubernetesApi,
    namespace: str,
    pipeline_run_id: str,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Deletes every object of ``SWEPT_KINDS`` labelled with the run; returns 'Kind/name' of each."""
    selector = f"{RUN_LABEL}={pipeline_run_id[:63]}"
    deleted = []
    for api_version, kind in SWEPT_KINDS:
        found = with_retries(
            lambda v=api_version, k=kind: api.list_objects(v, k, namespace, selector), sleep=sleep
        )
        for obj in found:
            name = obj["metadata"]["name"]
            try:
                with_retries(
                    lambda v=api_version, k=kind, n=name: api.delete(v, k, namespace, n), sleep=sleep
                )
            except NotFound:
                continue
            log(f"deleted {kind} {namespace}/{name}: its pipeline run {pipeline_run_id} has ended")
            deleted.append(f"{kind}/{name}")
    return deleted


T = TypeVar("T")


def with_retries(
    call: Callable[[], T],
    attempts: int = 6,
    first_delay_s: float = 1.0,
    max_delay_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, asked again with exponential backoff while it raises ``TransientApiError``."""
    delay = first_delay_s
    for attempt in range(attempts):
        try:
            return call()
        except TransientApiError:
            if attempt == attempts - 1:
                raise
            sleep(delay)
            delay = min(delay * 2, max_delay_s)
    raise AssertionError("unreachable")


# ----- termination ----------------------------------------------------------------------------


class Terminated(SystemExit):
    """The process was asked to stop (SIGTERM: a cancelled run, a deleted pod).

    A ``SystemExit``, so ``except Exception`` does not swallow it and the process exits 128+signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def terminated_as_exception(log: Callable[[str], None] = print) -> Iterator[None]:
    """Inside, SIGTERM raises ``Terminated`` in the main thread, so cleanup code runs before exiting.

    Only the first signal raises: a second one while cleaning up is logged, not allowed to cut the
    cleanup short. Outside the main thread (where Python cannot install handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, _frame: Any) -> None:
        nonlocal raised
        if raised:
            log(f"{signal.Signals(signum).name} again: still cleaning up")
            return
        raised = True
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----- the real API ---------------------------------------------------------------------------

# kind -> (plural, namespaced group API or core) for the objects longrl makes.
PLURALS = {
    "RayJob": "rayjobs",
    "RayCluster": "rayclusters",
    "Deployment": "deployments",
    "Service": "services",
    "Pod": "pods",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
}

TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}


@contextlib.contextmanager
def _translated_errors(what: str) -> Iterator[None]:
    """The client's exceptions as ``NotFound`` / ``AlreadyExists`` / ``TransientApiError``."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        yield
    except ApiException as exc:
        if exc.status == 404:
            raise NotFound(f"{what}: not found") from exc
        if exc.status == 409:
            raise AlreadyExists(f"{what}: already exists") from exc
        if exc.status in TRANSIENT_STATUSES:
            raise TransientApiError(f"{what}: HTTP {exc.status} {exc.reason}") from exc
        raise
    except (Urllib3Error, ConnectionError, TimeoutError) as exc:
        raise TransientApiError(f"{what}: {type(exc).__name__}: {exc}") from exc


class RealKubernetesApi:
    """``KubernetesApi`` over the official client, configured in-cluster or from ~/.kube/config."""

    def __init__(self, client: Any = None) -> None:
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config

        if client is None:
            try:
                k8s_config.load_incluster_config()
            except k8s_config.ConfigException:
                k8s_config.load_kube_config()
            client = k8s.ApiClient()
        self._client = client
        self._dynamic = None

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic import DynamicClient

        if self._dynamic is None:
            with _translated_errors("API discovery"):
                self._dynamic = DynamicClient(self._client)
        with _translated_errors(f"API discovery of {kind}"):
            return self._dynamic.resources.get(api_version=api_version, kind=kind)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        with _translated_errors(f"create {obj['kind']} {obj['metadata']['name']}"):
            return resource.create(body=obj, namespace=obj["metadata"]["namespace"]).to_dict()

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        resource = self._resource(api_version, kind)
        with _translated_errors(f"get {kind} {namespace}/{name}"):
            return resource.get(name=name, namespace=namespace).to_dict()

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        resource = self._resource(api_version, kind)
        with _translated_errors(f"delete {kind} {namespace}/{name}"):
            resource.delete(name=name, namespace=namespace, body={"propagationPolicy": "Foreground"})

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        resource = self._resource(api_version, kind)
        with _translated_errors(f"list {kind} in {namespace} ({label_selector})"):
            return resource.get(namespace=namespace, label_selector=label_selector).to_dict().get("items", [])

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        from kubernetes import client as k8s

        with _translated_errors(f"list pods in {namespace} ({label_selector})"):
            pods = k8s.CoreV1Api(self._client).list_namespaced_pod(namespace, label_selector=label_selector)
        return [self._client.sanitize_for_serialization(pod) for pod in pods.items]

    def stream_pod_log(self, namespace: str, pod: str) -> Iterator[str]:
        from kubernetes import client as k8s
        from kubernetes import watch

        core = k8s.CoreV1Api(self._client)
        yield from watch.Watch().stream(core.read_namespaced_pod_log, name=pod, namespace=namespace)
