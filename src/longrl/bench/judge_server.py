"""A stand-in verifier: an OpenAI-compatible chat-completions server that waits before it answers.

It judges like a perfect verifier (Answer 1 equals Answer 2 after lower-casing and stripping) and
adds a fixed latency to each request, so the hybrid reward's throughput against it shows what
concurrency and the verdict cache buy when the verifier, not the client, is the bottleneck.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The judge prompt's tagged answers (longrl.rewards.judge.JUDGE_USER_TEMPLATE).
_ANSWERS = re.compile(r"<answer_1>\n(?P<a>.*?)\n</answer_1>.*<answer_2>\n(?P<b>.*?)\n</answer_2>", re.DOTALL)


class ServerStats:
    """Requests served and the most that were in flight at once."""

    def __init__(self) -> None:
        self.requests = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.requests += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def verdict_text(user_message: str) -> str:
    match = _ANSWERS.search(user_message)
    same = bool(match) and match["a"].strip().lower() == match["b"].strip().lower()
    return f"Comparing the two answers.\n{'[[YES]]' if same else '[[NO]]'}"


def completion_body(request: dict, text: str) -> dict:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "verifier"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _handler(latency_s: float, stats: ServerStats) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            stats.enter()
            try:
                time.sleep(latency_s)
                user = next((m["content"] for m in body.get("messages", []) if m["role"] == "user"), "")
                payload = json.dumps(completion_body(body, verdict_text(user))).encode()
            finally:
                stats.leave()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of concurrent requests must not be refused


@contextmanager
def serve_judge(latency_s: float) -> Iterator[tuple[str, ServerStats]]:
    """Yields (base URL ending in /v1, stats) of a server on a free loopback port."""
    stats = ServerStats()
    server = _Server(("127.0.0.1", 0), _handler(latency_s, stats))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", stats
    finally:
        server.shutdown()
        server.server_close()
