"""The few Kubernetes calls longrl makes, behind a small interface (a fake implements it for tests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class NotFound(LookupError):
    """The object does not exist."""


class AlreadyExists(RuntimeError):
    """An object of that name already exists."""


class KubernetesApi(Protocol):
    """Create, read and delete namespaced objects (built-in or custom) and read pod logs."""

    def create(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]: ...

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None: ...

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    def stream_pod_log(self, namespace: str, pod: str) -> Iterator[str]: ...


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
            self._dynamic = DynamicClient(self._client)
        return self._dynamic.resources.get(api_version=api_version, kind=kind)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.dynamic.exceptions import ConflictError

        resource = self._resource(obj["apiVersion"], obj["kind"])
        try:
            return resource.create(body=obj, namespace=obj["metadata"]["namespace"]).to_dict()
        except ConflictError as exc:
            raise AlreadyExists(f"{obj['kind']} {obj['metadata']['name']} already exists") from exc

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError as exc:
            raise NotFound(f"{kind} {namespace}/{name} not found") from exc

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self._resource(api_version, kind).delete(
                name=name, namespace=namespace, body={"propagationPolicy": "Foreground"}
            )
        except NotFoundError as exc:
            raise NotFound(f"{kind} {namespace}/{name} not found") from exc

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        from kubernetes import client as k8s

        pods = k8s.CoreV1Api(self._client).list_namespaced_pod(namespace, label_selector=label_selector)
        return [self._client.sanitize_for_serialization(pod) for pod in pods.items]

    def stream_pod_log(self, namespace: str, pod: str) -> Iterator[str]:
        from kubernetes import client as k8s
        from kubernetes import watch

        core = k8s.CoreV1Api(self._client)
        yield from watch.Watch().stream(core.read_namespaced_pod_log, name=pod, namespace=namespace)
