"""``make run``'s pipeline as a user runs it: ``python -m pipelines.cli run-local`` in a work directory."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The whole pipeline: 10-20 minutes on two cores, longer than the suite's 900 s per test.
PIPELINE_TIMEOUT_S = 2400


def run_local(work: Path) -> str:
    """Runs the local pipeline in ``work`` (reusing what an earlier run there computed); its console."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run-local", "--work-dir", str(work)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PIPELINE_TIMEOUT_S,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done.stdout
