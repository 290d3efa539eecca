"""Fixtures of the pre-flight tests: prepared-looking tables, a model to break, a judge, no Ray."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SECONDS = 5.0  # a pre-flight check answers within this, on a busy two-core machine too


def prepared_rows(
    count: int = 8, phase: int = 1, tokens: int = 100, sft: bool = False
) -> list[dict[str, Any]]:
    """Rows in the layout ``python -m longrl.data prepare`` writes."""
    rows = [
        {
            "id": f"row-{i}",
            "data_source": "hotpotqa",
            "question": "Who?",
            "answer": "Ada",
            "raw_answer": None,
            "prompt": "<|im_start|>user\nWho?<|im_end|>\n",
            "prompt_tokens": tokens + i,
            "phase": phase,
        }
        for i in range(count)
    ]
    return [{**row, "completion": "</think>Ada"} for row in rows] if sft else rows


def write_table(path: Path, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> str:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return str(path)


@pytest.fixture
def data(tmp_path: Path) -> dict[str, str]:
    """Valid SFT, RL phase-1 and validation files."""
    return {
        "sft": write_table(tmp_path / "sft-train-phase1.parquet", prepared_rows(sft=True)),
        "rl": write_table(tmp_path / "train-phase1.parquet", prepared_rows()),
        "validation": write_table(tmp_path / "validation.parquet", prepared_rows(count=2)),
    }


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model to break."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture
def no_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Fails the test if it starts Ray (a session directory appears under RAY_TMPDIR, or ray is initialised)
    or takes longer than a pre-flight check may."""
    ray_tmp = tmp_path / "ray-tmp"
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    started = time.monotonic()
    yield ray_tmp
    elapsed = time.monotonic() - started
    assert not ray_tmp.exists(), f"Ray was started: {sorted(p.name for p in ray_tmp.iterdir())}"
    if "ray" in sys.modules:
        assert not sys.modules["ray"].is_initialized()
    assert elapsed < SECONDS, f"the check took {elapsed:.1f} s"


class _ModelsHandler(BaseHTTPRequestHandler):
    served: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/") != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": name} for name in self.served]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def judge_url() -> Iterator[str]:
    """An OpenAI-compatible endpoint that lists one model, 'verifier' (what vLLM's /v1/models answers)."""
    handler = type("Handler", (_ModelsHandler,), {"served": ["verifier"]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A URL nothing listens on."""
    from tests.support.s3_server import free_port

    return f"http://127.0.0.1:{free_port()}/v1"
