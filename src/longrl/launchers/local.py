"""The ``local`` launcher: the step's entrypoint as a subprocess on this machine, with a local Ray."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrl import storage
from longrl.launchers.kuberay import LaunchFailed, result_file
from longrl.train.config import TrainingConfig


class LocalLauncher:
    """Runs ``python -m longrl.train <step> --config <file>`` and streams its output."""

    def __init__(self, log: Callable[[str], None] = print, python: str = sys.executable) -> None:
        self.log = log
        self.python = python

    def run(
        self, step: str, config: TrainingConfig, name: str = "", labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="longrl-step-") as scratch:
            config_file = Path(scratch) / "config.json"
            config_file.write_text(config.model_dump_json())
            command = [self.python, "-m", "longrl.train", step, "--config", str(config_file)]
            tail: collections.deque[str] = collections.deque(maxlen=40)
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    line = line.rstrip("\n")
                    tail.append(line)
                    self.log(line)
                code = process.wait()
            except BaseException:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                raise
        if code != 0:
            raise LaunchFailed(f"{step} step exited with status {code}; its last lines:\n" + "\n".join(tail))
        return json.loads(storage.read_text(storage.join(config.output_dir, result_file())))
