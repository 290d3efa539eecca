#!/usr/bin/env python3
"""Pins the images listed in images/unpinned-images.yaml by digest: `make pin-images`.

For each listed reference (or those given as arguments) it asks the registry for the digest of the
tag (`crane digest`, else `docker buildx imagetools inspect`), writes `tag@sha256:...` wherever the
manifests (manifests/base, not the generated templates) and the Dockerfiles (FROM) name it, and
removes the entry from the list. A reference that is also named elsewhere (a default in longrl's
code, which generates the templates) keeps its entry, and the script says where to change it.

Standard library only; needs registry access and crane or Docker with buildx.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNPINNED = ROOT / "images" / "unpinned-images.yaml"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def resolve_digest(reference: str) -> str:
    """The registry's current digest of ``reference`` (the multi-platform index where there is one)."""
    if shutil.which("crane"):
        output = subprocess.run(["crane", "digest", reference], capture_output=True, text=True, check=True)
        return output.stdout.strip()
    if shutil.which("docker"):
        output = subprocess.run(
            ["docker", "buildx", "imagetools", "inspect", reference, "--format", "{{json .Manifest}}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(output.stdout)["digest"]
    raise SystemExit("pin-images needs crane or docker (with buildx) and access to the registries")


def listed(unpinned: Path = UNPINNED) -> list[str]:
    return [
        line.split(": ", 1)[0]
        for line in unpinned.read_text().splitlines()
        if line.strip() and not line.startswith("#") and ": " in line
    ]


def pinnable_files(root: Path = ROOT) -> list[Path]:
    manifests = [
        path
        for path in sorted((root / "manifests").rglob("*.yaml"))
        if "templates" not in path.relative_to(root).parts
    ]
    return manifests + sorted((root / "images").glob("*/Dockerfile"))


def pin_text(text: str, reference: str, digest: str) -> str:
    """``text`` with every unpinned mention of ``reference`` as an image (not followed by @ or more tag) pinned."""
    pattern = re.compile(rf"(?<![\w./-]){re.escape(reference)}(?![\w.@:/-])")
    return pattern.sub(f"{reference}@{digest}", text)


def pin_file_text(path: Path, text: str, reference: str, digest: str) -> str:
    """In a Dockerfile only the FROM lines (an ENV naming the image itself stays as it is)."""
    if path.name != "Dockerfile":
        return pin_text(text, reference, digest)
    return "".join(
        pin_text(line, reference, digest) if line.startswith("FROM ") else line
        for line in text.splitlines(keepends=True)
    )


def unpin_entry(unpinned: Path, reference: str) -> None:
    lines = unpinned.read_text().splitlines(keepends=True)
    unpinned.write_text("".join(line for line in lines if not line.startswith(f"{reference}: ")))


def mentions_elsewhere(reference: str, root: Path) -> list[Path]:
    """Files outside the pinnable ones (code, templates) that still name ``reference`` unpinned."""
    found = []
    for base in ("src", "pipelines", "components", "manifests"):
        for path in sorted((root / base).rglob("*")):
            if path.suffix not in (".py", ".yaml") or path in pinnable_files(root):
                continue
            text = path.read_text()
            if pin_text(text, reference, "sha256:" + "0" * 64) != text:
                found.append(path)
    return found


def pin(
    references: list[str], root: Path = ROOT, resolve: Callable[[str], str] = resolve_digest
) -> list[str]:
    """Pins each reference; returns one line per reference saying what was done."""
    unpinned = root / "images" / "unpinned-images.yaml"
    report = []
    for reference in references:
        digest = resolve(reference)
        if not DIGEST.fullmatch(digest):
            raise SystemExit(f"{reference}: the registry answered {digest!r}, not a sha256 digest")
        changed = []
        for path in pinnable_files(root):
            text = path.read_text()
            pinned = pin_file_text(path, text, reference, digest)
            if pinned != text:
                path.write_text(pinned)
                changed.append(str(path.relative_to(root)))
        elsewhere = mentions_elsewhere(reference, root)
        if elsewhere:
            names = ", ".join(str(p.relative_to(root)) for p in elsewhere)
            report.append(
                f"{reference}@{digest}: pinned in {changed or 'nothing'}; also named in {names}: change it there"
            )
        else:
            unpin_entry(unpinned, reference)
            report.append(f"{reference}@{digest}: pinned in {changed}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("references", nargs="*", help="images to pin (default: every listed one)")
    args = parser.parse_args(argv)
    for line in pin(args.references or listed()):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
