"""Static checks that belong in every CI run: lint, and no eval/exec anywhere in our code."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = [d for d in ("src", "components", "pipelines", "tests") if (ROOT / d).is_dir()]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *CODE_DIRS], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, "run 'make format':\n" + result.stdout + result.stderr


def test_the_steps_module_imports_no_ml_library() -> None:
    """Every pipeline step imports ``longrl.steps`` first: torch, transformers and friends there cost each
    step ~7 s on two cores before it does anything (the heavy steps import them where they need them)."""
    heavy = ("torch", "transformers", "peft", "trl", "vllm", "ray", "sklearn")
    probe = f"import sys, longrl.steps; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"longrl.steps imports {result.stdout.strip()}"
