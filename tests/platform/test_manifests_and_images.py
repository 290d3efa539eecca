"""Every manifest and generated template validates against the Kubernetes schemas (and KubeRay's CRDs);
Dockerfiles name pinned versions and carry no secrets."""

import re
from pathlib import Path

import pytest
import yaml

from longrl.launchers.schemas import validation_errors

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CRDS = sorted((ROOT / "tests" / "fixtures" / "kuberay-crds").glob("*.yaml"))


def manifest_objects():
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield pytest.param(
                    document,
                    id=f"{path.relative_to(MANIFESTS)}:{document['kind']}/{document['metadata']['name']}",
                )


@pytest.mark.parametrize("obj", list(manifest_objects()))
def test_manifest_is_valid(obj) -> None:
    assert validation_errors(obj, CRDS) == []


def test_kustomizations_reference_existing_files() -> None:
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for resource in spec.get("resources", []):
            assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource}"
        for generator in spec.get("secretGenerator", []):
            for env in generator.get("envs", []):
                assert (kustomization.parent / f"{env}.example").is_file(), f"{env} has no .example to copy"


def test_no_secrets_in_manifests() -> None:
    for path in MANIFESTS.rglob("*"):
        if not path.is_file() or path.name.endswith(".example"):
            continue
        text = path.read_text()
        assert "kind: Secret" not in text, f"{path}: Secrets are generated from git-ignored env files"
        assert not re.search(
            r"(?i)(password|secret_access_key|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{12,}", text
        ), path


def test_templates_are_what_the_code_generates() -> None:
    from pipelines.cli import TEMPLATES_DIR, reference_templates

    for name, text in reference_templates().items():
        committed = (ROOT / TEMPLATES_DIR / name).read_text()
        assert committed == text, f"{name} is stale: run `make templates`"


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                logical.append(current.strip())
            current = ""
    return [
        (item.split(None, 1)[0].upper(), item.split(None, 1)[1] if " " in item else "") for item in logical
    ]


@pytest.mark.parametrize("image", ["trainer", "trainer-verl", "verifier", "pipeline"])
def test_dockerfile_parses_and_pins_versions(image) -> None:
    instructions = dockerfile_instructions(ROOT / "images" / image / "Dockerfile")
    assert instructions and instructions[0][0] == "FROM"
    known = {"FROM", "RUN", "COPY", "ENV", "ARG", "LABEL", "USER", "WORKDIR", "ENTRYPOINT", "CMD", "EXPOSE"}
    assert {name for name, _ in instructions} <= known
    for name, args in instructions:
        if name == "FROM":
            reference = args.split()[0]
            assert ":" in reference and not reference.endswith(":latest"), (
                f"{image}: unpinned base {reference}"
            )
            assert re.search(r":v?\d+\.\d+", reference), (
                f"{image}: base image tag is not a version: {reference}"
            )
        if name == "RUN" and "pip install" in args:
            for requirement in re.findall(r'"([A-Za-z0-9_.\-\[\]]+[^"]*)"', args):
                if requirement.startswith((".", "--")):
                    continue
                assert "==" in requirement, f"{image}: unpinned pip requirement {requirement}"
        if name in ("ENV", "ARG"):
            assert not re.search(r"(?i)(key|token|password|secret)\w*=\S+", args) or "GIT_COMMIT" in args, (
                f"{image}: a secret baked into the image: {args}"
            )


@pytest.mark.parametrize("image", ["trainer", "trainer-verl", "verifier", "pipeline"])
def test_dockerfile_ends_as_a_non_root_user(image) -> None:
    users = [
        args.split()[0]
        for name, args in dockerfile_instructions(ROOT / "images" / image / "Dockerfile")
        if name == "USER"
    ]
    assert users, f"{image}: runs as the base image's user (root unless the base says otherwise)"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{image}: the last USER is root"


def test_pipeline_requirements_are_pinned() -> None:
    lines = [
        line
        for line in (ROOT / "requirements" / "pipeline.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines and all("==" in line for line in lines)
    lock = [
        line
        for line in (ROOT / "requirements" / "cpu.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^ ]+", line) for line in lock)
