#!/usr/bin/env python3
"""Regenerates the GPU images' lock files: requirements/trainer-<engine>.in -> trainer-<engine>.lock.

Each image (the trl engine's images/trainer, the verl engine's images/trainer-verl) installs its lock
with ``pip install --no-deps --require-hashes``, so the lock must hold the whole dependency tree of
the machine the image runs on (linux x86_64, CPython 3.11, glibc >= 2.35), resolved here, on a
machine without a GPU and with a different Python stack:

1. ``uv pip compile --python-platform x86_64-manylinux_2_35`` resolves the tree for that target
   (uv reads wheel metadata from PyPI; nothing is installed). flash-attn's sdist cannot even report
   its metadata without torch and a CUDA toolkit, so uv is told it (from the sdist's PKG-INFO).
2. ``pip install --dry-run --no-deps --only-binary=:all: --platform manylinux_2_35_x86_64 ...``
   picks, for every pinned package, the one file pip installs on that target; the lock keeps only
   that file's hash, so the image installs exactly these files. Packages PyPI has as sdists only
   (pip names them when it finds no wheel) keep their sdist's hash.

Run it after changing an .in file: ``make lock-images`` (needs PyPI, takes about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
IMAGES = {
    "trl": "images/trainer/Dockerfile",
    "verl": "images/trainer-verl/Dockerfile",
}
INDEX_URL = "https://pypi.org/simple"
TOOLS = ["pip==26.3", "uv==0.13.8"]
PYTHON_VERSION = "3.11"
# The base image (rayproject/ray:*-cu128) is Ubuntu 22.04: glibc 2.35. vLLM's llguidance 1.7 has no
# x86_64 wheel for an older glibc than 2.31. The Dockerfiles check the base's glibc against this.
GLIBC_MINOR = 35
UV_PLATFORM = f"x86_64-manylinux_2_{GLIBC_MINOR}"
# What PyPI cannot tell without building the sdist (setup.py imports torch and needs nvcc); copied
# from the sdist's PKG-INFO. The Dockerfiles install flash-attn from its GitHub release wheel.
STATIC_METADATA = {"flash-attn": ("2.8.3.post2", ["torch", "einops"])}
NO_WHEEL = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-]+)==")


def isolated_env() -> dict[str, str]:
    """This machine's pip/uv settings (local wheel folders, extra indexes, constraints) left out."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=isolated_env(), text=True, capture_output=True, **kwargs)


def checked(command: list[str]) -> str:
    result = run(command)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def uv_config(workdir: Path) -> Path:
    lines = []
    for name, (version, requires) in STATIC_METADATA.items():
        lines += [
            "[[dependency-metadata]]",
            f'name = "{name}"',
            f'version = "{version}"',
            f"requires-dist = {json.dumps(requires)}",
            "",
        ]
    path = workdir / "uv.toml"
    path.write_text("\n".join(lines))
    return path


def resolve(uv: Path, config: Path, requirements_in: Path) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, sha256 of every file of that version on PyPI), as uv resolves it."""
    output = checked(
        [
            str(uv),
            "pip",
            "compile",
            str(requirements_in),
            "--config-file",
            str(config),
            "--index-url",
            INDEX_URL,
            "--python-version",
            PYTHON_VERSION,
            "--python-platform",
            UV_PLATFORM,
            "--generate-hashes",
            "--no-annotate",
            "--no-header",
            "--quiet",
        ]
    )
    pins: dict[str, tuple[str, set[str]]] = {}
    for entry in output.replace("\\\n", " ").splitlines():
        if not entry.strip() or entry.lstrip().startswith("#"):
            continue
        requirement, *options = entry.split()
        name, version = requirement.split("==")
        hashes = {option.removeprefix("--hash=sha256:") for option in options}
        pins[canonical(name)] = (version, hashes)
    return pins


def pip_platform_options() -> list[str]:
    """Every manylinux tag the target glibc accepts, newest first (pip does not expand them)."""
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    options = []
    for minor in range(GLIBC_MINOR, 4, -1):
        options += ["--platform", f"manylinux_2_{minor}_x86_64"]
        if minor in legacy:
            options += ["--platform", f"{legacy[minor]}_x86_64"]
    return options


def installed_files(pip: list[str], pins: dict[str, str], workdir: Path) -> tuple[dict[str, str], set[str]]:
    """name -> sha256 of the wheel pip installs on the target; and the names PyPI has no wheel of."""
    no_wheel: set[str] = set()
    while True:
        wanted = workdir / "pins.txt"
        wanted.write_text("".join(f"{name}=={pins[name]}\n" for name in sorted(pins) if name not in no_wheel))
        report = workdir / "report.json"
        result = run(
            [
                *pip,
                "install",
                "--dry-run",
                "--ignore-installed",
                "--no-deps",
                "--only-binary=:all:",
                *pip_platform_options(),
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                "--abi",
                f"cp{PYTHON_VERSION.replace('.', '')}",
                "--index-url",
                INDEX_URL,
                "--quiet",
                "--report",
                str(report),
                "-r",
                str(wanted),
            ]
        )
        if result.returncode == 0:
            break
        missing = NO_WHEEL.search(result.stderr)
        if not missing or canonical(missing.group(1)) in no_wheel:
            sys.exit(f"pip could not pick the target's files:\n{result.stderr}")
        no_wheel.add(canonical(missing.group(1)))
    chosen = {}
    for item in json.loads(report.read_text())["install"]:
        chosen[canonical(item["metadata"]["name"])] = item["download_info"]["archive_info"]["hashes"][
            "sha256"
        ]
    return chosen, no_wheel


def lock_text(
    engine: str, pins: dict[str, tuple[str, set[str]]], chosen: dict[str, str], no_wheel: set[str]
) -> str:
    lines = [
        f"# Full pinned dependency tree of the {engine} engine's GPU image ({IMAGES[engine]}): linux x86_64,",
        f"# CPython {PYTHON_VERSION}, glibc >= 2.{GLIBC_MINOR}; CUDA comes from the torch wheels. Generated by",
        f"# scripts/lock-images.py from requirements/trainer-{engine}.in; do not edit. One hash per package:",
        "# the file pip installs on that platform (the sdist where PyPI has no wheel). Installed with",
        "# pip install --no-deps --require-hashes; flash-attn is installed from its release wheel instead.",
    ]
    for name in sorted(pins):
        version, hashes = pins[name]
        if name in no_wheel:
            if len(hashes) != 1:
                sys.exit(f"{name}=={version}: no wheel for the target, but {len(hashes)} files on PyPI")
            (digest,) = hashes
        else:
            digest = chosen[name]
            if digest not in hashes:
                sys.exit(f"{name}=={version}: pip picked a file ({digest}) that uv did not list")
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


def lock(engine: str, uv: Path, pip: list[str], workdir: Path) -> Path:
    requirements_in = REQUIREMENTS / f"trainer-{engine}.in"
    pins = resolve(uv, uv_config(workdir), requirements_in)
    chosen, no_wheel = installed_files(pip, {name: version for name, (version, _) in pins.items()}, workdir)
    target = REQUIREMENTS / f"trainer-{engine}.lock"
    target.write_text(lock_text(engine, pins, chosen, no_wheel))
    sdists = ", ".join(sorted(no_wheel)) or "none"
    print(f"wrote {target.relative_to(ROOT)}: {len(pins)} packages (sdist only: {sdists})")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", nargs="*", metavar="ENGINE", help=f"of {sorted(IMAGES)}; default: all")
    engines = parser.parse_args().engines or sorted(IMAGES)
    unknown = sorted(set(engines) - set(IMAGES))
    if unknown:
        parser.error(f"unknown engine(s) {unknown}: the images are {sorted(IMAGES)}")
    with tempfile.TemporaryDirectory(prefix="lock-images-") as tmp:
        workdir = Path(tmp)
        venv.create(workdir / "venv", with_pip=True)
        python = workdir / "venv" / "bin" / "python"
        checked([str(python), "-m", "pip", "install", "--quiet", "--index-url", INDEX_URL, *TOOLS])
        for engine in engines:
            lock(engine, workdir / "venv" / "bin" / "uv", [str(python), "-m", "pip"], workdir)


if __name__ == "__main__":
    main()
