#!/usr/bin/env python3
"""Refuses to deploy Secrets that are missing, still hold an example's password, or are unsafe.

`make deploy` runs this before `kubectl apply -k`. The env files checked are the ones the base
kustomization's secretGenerator reads (manifests/base/kustomization.yaml), each next to its
``.example``. A problem is printed per line and the exit status is 1; nothing is printed on success.

Rules: every key the example sets is set; no secret value (a key naming a PASSWORD, SECRET, TOKEN
or API_KEY) equals the example's, contains "change-me" or is shorter than 16 characters; MinIO
secret keys are at most 40 characters (MinIO's limit); names that go into URLs use only URL-safe
characters; no two roles share a user name or a secret (each MinIO user is one role), except the
judge's API key: the verifier's VLLM_API_KEY and its clients' copies (LONGRL_JUDGE_API_KEY in each file
whose example names it) are one value, set in each of those files when the verifier requires it.

Standard library only: it runs before `make install`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUSTOMIZATION = ROOT / "manifests" / "base" / "kustomization.yaml"

SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY")
USER_KEYS = ("AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER")
MINIO_SECRET_KEYS = ("AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD")
# They are placed into a URL (MC_HOST_longrl, MLflow's database URI) unescaped.
URL_SAFE_KEYS = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "POSTGRES_USER", "POSTGRES_DB")
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
# The verifier's key and its clients' copy: the Ray pods' (verifier.env), the pipeline steps' (judge-client.env).
SERVER_KEY, CLIENT_KEY = "VLLM_API_KEY", "LONGRL_JUDGE_API_KEY"
MIN_SECRET_LENGTH = 16
MAX_MINIO_SECRET_LENGTH = 40


def env_files(kustomization: Path = KUSTOMIZATION) -> list[Path]:
    """The env files the secretGenerator reads, in order, once each."""
    found: list[Path] = []
    for listed in re.findall(r"envs:\s*\[([^\]]*)\]", kustomization.read_text()):
        for name in listed.split(","):
            path = kustomization.parent / name.strip().strip("'\"")
            if path not in found:
                found.append(path)
    return found


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def file_problems(path: Path) -> list[str]:
    example_path = path.with_name(path.name + ".example")
    if not path.is_file():
        return [f"{path}: missing; copy {example_path.name} and fill it in"]
    values, example = read_env(path), read_env(example_path) if example_path.is_file() else {}
    problems = [f"{path}: {key} is not set (the example sets it)" for key in example if not values.get(key)]
    for key, value in values.items():
        if key in URL_SAFE_KEYS and value and not URL_SAFE.fullmatch(value):
            problems.append(
                f"{path}: {key} may contain only letters, digits and . _ ~ - (it goes into a URL)"
            )
        if not SECRET_KEY.search(key) or not value:
            continue
        if value == example.get(key) or "change-me" in value.lower():
            problems.append(f"{path}: {key} still holds the example's password; choose your own")
        elif len(value) < MIN_SECRET_LENGTH:
            problems.append(f"{path}: {key} is shorter than {MIN_SECRET_LENGTH} characters")
        if key in MINIO_SECRET_KEYS and len(value) > MAX_MINIO_SECRET_LENGTH:
            problems.append(f"{path}: {key} is longer than MinIO's {MAX_MINIO_SECRET_LENGTH} characters")
    return problems


def shared_problems(files: list[Path]) -> list[str]:
    """Each MinIO user belongs to one role: no user name or secret appears in two files (the judge's key
    is one role wherever it is)."""
    users: dict[str, Path] = {}
    secrets: dict[str, Path | str] = {}
    problems = []
    for path in files:
        if not path.is_file():
            continue
        for key, value in read_env(path).items():
            if not value:
                continue
            if key in USER_KEYS:
                if value in users and users[value] != path:
                    problems.append(f"{path}: {key} {value!r} is also the user of {users[value].name}")
                users.setdefault(value, path)
            elif SECRET_KEY.search(key):
                owner = "the judge's API key" if key in (SERVER_KEY, CLIENT_KEY) else path
                if value in secrets and secrets[value] != owner:
                    other = secrets[value]
                    problems.append(
                        f"{path}: {key} is the same secret as {other if isinstance(other, str) else other.name}"
                    )
                secrets.setdefault(value, owner)
    return problems


def judge_key_problems(files: list[Path]) -> list[str]:
    """When the verifier requires a key, every client copy is that key: another one gets HTTP 401."""
    servers = [read_env(path).get(SERVER_KEY) for path in files if path.is_file()]
    key = next((value for value in servers if value), None)
    if key is None:
        return []
    client_line = re.compile(rf"^#?\s*{CLIENT_KEY}=", re.MULTILINE)
    problems = []
    for path in files:
        example = path.with_name(path.name + ".example")
        if path.is_file() and example.is_file() and client_line.search(example.read_text()):
            if read_env(path).get(CLIENT_KEY) != key:
                problems.append(
                    f"{path}: {CLIENT_KEY} must be the verifier's {SERVER_KEY} (its clients would get HTTP 401)"
                )
    return problems


def problems(kustomization: Path = KUSTOMIZATION) -> list[str]:
    files = env_files(kustomization)
    if not files:
        return [f"{kustomization}: no secretGenerator env files found"]
    return [
        *(problem for path in files for problem in file_problems(path)),
        *shared_problems(files),
        *judge_key_problems(files),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kustomization", type=Path, default=KUSTOMIZATION)
    args = parser.parse_args(argv)
    found = problems(args.kustomization)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        print("refusing to deploy: fix the Secrets above (manifests/README.md, 'Secrets')", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
