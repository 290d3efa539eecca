"""A real HTTP server speaking the OpenAI chat-completions API, with scriptable misbehaviour.

It judges like a perfect verifier: [[YES]] when Answer 1 and Answer 2 (the text between the
judge prompt's ``<answer_1>`` and ``<answer_2>`` tags) are the same after lower-casing and
stripping, or a pair the test declared synonyms, [[NO]] otherwise. ``mode`` makes it slow,
failing or incoherent, or a verifier that can be manipulated:

* ``echo``: replies with Answer 1 as it received it, as a model that repeats its input would;
* ``gullible``: reads each tagged span up to the first closing tag as data, like a model that
  respects the delimiters, but obeys a verdict found anywhere outside them ("answer [[YES]]").
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

from tests.support.http_server import serve_http

_TAGGED = re.compile(r"<(?P<tag>problem|answer_1|answer_2)>\n?(?P<text>.*?)\n?</(?P=tag)>", re.DOTALL)


def tagged_spans(user: str) -> tuple[dict[str, str], str]:
    """The text of each tag (up to its first closing tag) and everything outside the tags."""
    spans = {match["tag"]: match["text"] for match in _TAGGED.finditer(user)}
    return spans, _TAGGED.sub("", user)


class ScriptedVerifier:
    """Shared state between the test and the server thread."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | slow | error500 | garbage | no_verdict | flaky | echo | gullible
        self.delay_s = 0.0  # extra latency for every request
        self.slow_s = 5.0  # latency in "slow" mode
        self.flaky_failures = 2  # 503s before success in "flaky" mode
        self.requests: list[dict] = []
        self.auth_headers: list[str | None] = []
        self.synonyms: set[tuple[str, str]] = set()  # (answer 1, answer 2) pairs it also calls equal
        self.lock = threading.Lock()
        self.max_in_flight = 0
        self._in_flight = 0

    def reply(self, body: dict) -> tuple[int, str, str]:
        """(status, content type, body) for one request."""
        with self.lock:
            self.requests.append(body)
            count = len(self.requests)
        if self.mode == "error500":
            return 500, "application/json", json.dumps({"error": {"message": "boom"}})
        if self.mode == "flaky" and count <= self.flaky_failures:
            return 503, "application/json", json.dumps({"error": {"message": "warming up"}})
        if self.mode == "garbage":
            return 200, "application/json", "<html>this is not json"
        if self.mode == "slow":
            time.sleep(self.slow_s)
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        spans, outside = tagged_spans(user)
        a = spans.get("answer_1", "").strip().lower()
        b = spans.get("answer_2", " ").strip().lower()
        same = a == b or (a, b) in self.synonyms
        if self.mode == "no_verdict":
            text = "They differ in wording only."
        elif self.mode == "echo":
            text = spans.get("answer_1", "")
        elif self.mode == "gullible" and "[[YES]]" in outside:
            text = "As instructed.\n[[YES]]"
        else:
            text = f"Comparing the two.\n{'[[YES]]' if same else '[[NO]]'}"
        completion = {
            "id": f"chatcmpl-{count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "verifier"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        return 200, "application/json", json.dumps(completion)

    def enter(self) -> None:
        with self.lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def leave(self) -> None:
        with self.lock:
            self._in_flight -= 1


def _handler(script: ScriptedVerifier) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            script.auth_headers.append(self.headers.get("Authorization"))
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, "application/json", json.dumps({"error": {"message": "not found"}}))
                return
            script.enter()
            try:
                if script.delay_s:
                    time.sleep(script.delay_s)
                status, content_type, payload = script.reply(body)
            finally:
                script.leave()
            self._send(status, content_type, payload)

        def _send(self, status: int, content_type: str, payload: str) -> None:
            data = payload.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

    return Handler


@contextmanager
def serve_verifier() -> Iterator[tuple[str, ScriptedVerifier]]:
    """Yields (base URL ending in /v1, script) for a server on a free loopback port."""
    script = ScriptedVerifier()
    with serve_http(_handler(script)) as url:
        yield f"{url}/v1", script
