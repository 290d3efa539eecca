"""A real HTTP server implementing the few Kubeflow Pipelines v2beta1 REST endpoints longrl uses."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

from tests.support.http_server import serve_http


class FakeKfp:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.pipelines: dict[str, dict] = {}  # id -> pipeline
        self.versions: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []
        self.recurring: list[dict] = []
        self.auth_headers: list[str | None] = []
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, query: dict, body: bytes, content_type: str) -> tuple[int, dict]:
        parsed_body = {}
        if body and "json" in content_type:
            parsed_body = json.loads(body)
        self.requests.append(
            {
                "method": method,
                "path": path,
                "query": query,
                "body": parsed_body,
                "multipart": "multipart" in content_type,
            }
        )
        base = "/apis/v2beta1"
        if path == f"{base}/healthz":
            return 200, {"commit_sha": "fake", "tag_name": "2.17.0", "multi_user": False}
        if path == f"{base}/pipelines" and method == "GET":
            wanted = _filter_value(query)
            found = [p for p in self.pipelines.values() if wanted is None or p["display_name"] == wanted]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if path == f"{base}/pipelines/upload" and method == "POST":
            pipeline = {
                "pipeline_id": str(uuid.uuid4()),
                "display_name": query["name"][0],
                "description": query.get("description", [""])[0],
            }
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            return 200, pipeline
        if path == f"{base}/pipelines/upload_version" and method == "POST":
            pipeline_id = query["pipelineid"][0]
            if pipeline_id not in self.pipelines:
                return 404, {"error": "pipeline not found"}
            version = {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": str(uuid.uuid4()),
                "display_name": query["name"][0],
            }
            self.versions.append(version)
            return 200, version
        if path == f"{base}/experiments" and method == "GET":
            wanted = _filter_value(query)
            found = [e for e in self.experiments.values() if wanted is None or e["display_name"] == wanted]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if path == f"{base}/experiments" and method == "POST":
            experiment = {"experiment_id": str(uuid.uuid4()), "display_name": parsed_body["display_name"]}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        match = re.fullmatch(rf"{base}/experiments/([^/]+)", path)
        if match and method == "GET":
            found = self.experiments.get(match.group(1))
            return (200, found) if found else (404, {"error": "no such experiment"})
        if path == f"{base}/runs" and method == "POST":
            run = {**parsed_body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
            self.runs.append(run)
            return 200, run
        if path == f"{base}/recurringruns" and method == "POST":
            recurring = {**parsed_body, "recurring_run_id": str(uuid.uuid4())}
            self.recurring.append(recurring)
            return 200, recurring
        return 404, {"error": f"fake KFP does not implement {method} {path}"}


def _filter_value(query: dict) -> str | None:
    """The display name a list call filters on (KFP encodes filters as JSON)."""
    raw = query.get("filter", [None])[0]
    if not raw:
        return None
    predicates = json.loads(unquote(raw)).get("predicates", [])
    for predicate in predicates:
        if predicate.get("key") in ("display_name", "name"):
            return predicate.get("string_value") or predicate.get("stringValue")
    return None


@contextmanager
def serve_kfp() -> Iterator[tuple[str, FakeKfp]]:
    state = FakeKfp()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length) if length else b""
            state.auth_headers.append(self.headers.get("Authorization"))
            with state.lock:
                status, payload = state.handle(
                    self.command, url.path, parse_qs(url.query), body, self.headers.get("Content-Type", "")
                )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve  # noqa: N815 - http.server naming

    with serve_http(Handler) as url:
        yield url, state
