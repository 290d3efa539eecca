"""Build-time check of a trainer image: the installed packages are exactly its lock, and the engine's
stack imports (no GPU is needed to import it; none is present during `docker build`).

    python images/check_trainer_image.py --lock requirements/trainer-trl.lock --engine trl

Exits non-zero naming every package whose installed version differs from the lock (a base-image
package the lock's install did not replace, a wheel installed outside the lock) and every module
that does not import. longrl.doctor is the CPU machines' check; this one is for the GPU images.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata
from pathlib import Path

from packaging.version import Version

# The lock was resolved for this glibc (scripts/lock-images.py, GLIBC_MINOR): older ones lack wheels.
MIN_GLIBC = (2, 35)
ENGINE_MODULES = {
    "trl": [
        "torch",
        "vllm",
        "flash_attn",
        "deepspeed",
        "liger_kernel.transformers",
        "trl",
        "ray.train.torch",
        "longrl.train.sft",
        "longrl.train.rl",
        "longrl.train.engines.trl",
    ],
    "verl": [
        "torch",
        "vllm",
        "flash_attn",
        "liger_kernel.transformers",
        "tensordict",
        "verl.trainer.main_ppo",
        "verl.workers.engine_workers",
        "verl.workers.rollout.vllm_rollout",
        "ray.train.torch",
        "longrl.train.engines.verl",
    ],
}
COMMON_MODULES = [
    "longrl.rewards",
    "longrl.curriculum",
    "longrl.storage",
    "longrl.tracking",
    "longrl.train.cli",
]


def lock_pins(lock: Path) -> dict[str, str]:
    """name -> version of every `name==version --hash=...` line of a lock."""
    pins = {}
    for line in lock.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split()[0].split("==")
            pins[name] = version
    return pins


def version_mismatches(pins: dict[str, str]) -> list[str]:
    """What is installed differently from the lock (a local label such as flash-attn's +cu13... is allowed)."""
    problems = []
    for name, pinned in sorted(pins.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed (lock: {pinned})")
            continue
        if Version(installed).public != Version(pinned).public:
            problems.append(f"{name}: {installed} installed, lock pins {pinned}")
    return problems


def import_failures(modules: list[str]) -> list[str]:
    failures = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # any import-time error is what this check exists to catch
            failures.append(f"import {module}: {type(error).__name__}: {error}")
    return failures


def glibc_problem() -> list[str]:
    found = os.confstr("CS_GNU_LIBC_VERSION") or "unknown"
    version = tuple(int(part) for part in found.split()[-1].split(".")[:2]) if "glibc" in found else (0, 0)
    if version < MIN_GLIBC:
        wanted = ".".join(map(str, MIN_GLIBC))
        return [f"{found}: the lock was resolved for glibc >= {wanted}; use a newer base image"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, required=True, help="the image's lock file")
    parser.add_argument("--engine", choices=sorted(ENGINE_MODULES), required=True)
    parser.add_argument("--no-imports", action="store_true", help="check versions and glibc only")
    args = parser.parse_args(argv)
    problems = glibc_problem() + version_mismatches(lock_pins(args.lock))
    if not args.no_imports:
        problems += import_failures(ENGINE_MODULES[args.engine] + COMMON_MODULES)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{args.lock}: {len(problems)} problem(s) in the {args.engine} image", file=sys.stderr)
        return 1
    print(f"{args.lock}: {len(lock_pins(args.lock))} packages as locked; the {args.engine} stack imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
