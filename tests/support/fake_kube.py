"""An in-memory ``KubernetesApi`` whose objects move through scripted statuses.

Faults can be injected per call (``fail``) to play an API server that restarts or throttles, and
``FileBackedKubernetesApi`` keeps its objects in a JSON file so that a launcher in another process
(one a test sends SIGTERM) and the test see the same cluster.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from longrl.launchers.kube import AlreadyExists, NotFound, TransientApiError


def _matches(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors (``a=b,c=d``), all a test needs."""
    wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
    return all(labels.get(key) == value for key, value in wanted.items())


class FakeKubernetesApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str, str]] = []
        # name -> statuses returned by successive gets (the last one repeats)
        self.status_script: dict[str, list[dict[str, Any]]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}  # label selector -> pods
        self.logs: dict[str, list[str]] = {}  # pod -> lines
        self.ready_after_gets: dict[str, int] = {}  # Deployment name -> gets before it is ready
        self.faults: dict[str, list[Exception]] = {}  # method -> exceptions its next calls raise
        self.calls: list[str] = []

    def fail(self, method: str, error: Exception | None = None, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``error`` (default: an HTTP 503) and do nothing."""
        error = error or TransientApiError(f"{method}: HTTP 503 Service Unavailable")
        self.faults.setdefault(method, []).extend([error] * times)

    def _call(self, method: str) -> None:
        self.calls.append(method)
        pending = self.faults.get(method)
        if pending:
            raise pending.pop(0)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._call("create")
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self.objects:
            raise AlreadyExists(f"{key} exists")
        stored = copy.deepcopy(obj)
        self.objects[key] = stored
        self.created.append(stored)
        return stored

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self._call("get")
        key = (kind, namespace, name)
        if key not in self.objects:
            raise NotFound(f"{key} not found")
        obj = self.objects[key]
        script = self.status_script.get(name)
        if script:
            obj["status"] = script.pop(0) if len(script) > 1 else script[0]
        if kind == "Deployment" and name in self.ready_after_gets:
            remaining = self.ready_after_gets[name]
            replicas = obj["spec"].get("replicas", 1)
            obj["status"] = {"readyReplicas": replicas if remaining <= 0 else 0, "replicas": replicas}
            self.ready_after_gets[name] = remaining - 1
        return copy.deepcopy(obj)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self._call("delete")
        key = (kind, namespace, name)
        if key not in self.objects:
            raise NotFound(f"{key} not found")
        del self.objects[key]
        self.deleted.append(key)

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        self._call("list_objects")
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self.objects.items())
            if k == kind and ns == namespace and _matches(obj["metadata"].get("labels") or {}, label_selector)
        ]

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self._call("list_pods")
        return self.pods.get(label_selector, [])

    def stream_pod_log(self, namespace: str, pod: str) -> Iterator[str]:
        yield from self.logs.get(pod, [])


class FileBackedKubernetesApi(FakeKubernetesApi):
    """A ``FakeKubernetesApi`` whose objects, deletions and status scripts live in a JSON file.

    Every call loads the file first and saves it after, so two processes that take turns (a launcher
    in a subprocess, the test that inspects what it left) share one cluster.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.load()

    def load(self) -> None:
        if not self.path.exists():
            return
        state = json.loads(self.path.read_text())
        self.objects = {tuple(json.loads(key)): obj for key, obj in state["objects"].items()}  # type: ignore[misc]
        self.deleted = [tuple(key) for key in state["deleted"]]  # type: ignore[misc]
        self.status_script = state["status_script"]

    def save(self) -> None:
        state = {
            "objects": {json.dumps(list(key)): obj for key, obj in self.objects.items()},
            "deleted": [list(key) for key in self.deleted],
            "status_script": self.status_script,
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        temporary.replace(self.path)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.load()
        try:
            return super().create(obj)
        finally:
            self.save()

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.load()
        try:
            return super().get(api_version, kind, namespace, name)
        finally:
            self.save()

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.load()
        try:
            super().delete(api_version, kind, namespace, name)
        finally:
            self.save()

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        self.load()
        return super().list_objects(api_version, kind, namespace, label_selector)
