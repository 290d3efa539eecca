"""Static checks that belong in every CI run: lint, and no eval/exec anywhere in our code."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = [d for d in ("src", "components", "pipelines", "tests") if (ROOT / d).is_dir()]


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *CODE_DIRS], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
