"""An in-memory ``KubernetesApi`` whose objects move through scripted statuses."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from longrl.launchers.kube import AlreadyExists, NotFound


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

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self.objects:
            raise AlreadyExists(f"{key} exists")
        stored = copy.deepcopy(obj)
        self.objects[key] = stored
        self.created.append(stored)
        return stored

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
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
        key = (kind, namespace, name)
        if key not in self.objects:
            raise NotFound(f"{key} not found")
        del self.objects[key]
        self.deleted.append(key)

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return self.pods.get(label_selector, [])

    def stream_pod_log(self, namespace: str, pod: str) -> Iterator[str]:
        yield from self.logs.get(pod, [])
