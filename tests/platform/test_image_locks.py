"""The GPU images' lock files (requirements/trainer-{trl,verl}.lock): well formed, coherent with the
metadata of the packages that define each engine's stack, and installed exactly by their Dockerfiles.

Offline: the metadata comes from what is installed here (trl, verl, accelerate, ray... at the
lock's version) or, for the CUDA builds that cannot be installed on this machine (vLLM, torch with
CUDA), from constants copied from their wheels' METADATA, each with its source.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import tomllib
import warnings
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from longrl.launchers.kuberay import TRL_IMAGE, VERL_IMAGE, KubeRayConfig

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ["trl", "verl"]
DOCKERFILES = {"trl": ROOT / "images/trainer/Dockerfile", "verl": ROOT / "images/trainer-verl/Dockerfile"}
IMAGE_NAMES = {"trl": TRL_IMAGE, "verl": VERL_IMAGE}
LOCK_LINE = re.compile(r"(?P<name>[a-z0-9][a-z0-9-]*)==(?P<version>[^\s=]+) --hash=sha256:[0-9a-f]{64}")
# The machine the locks are for (scripts/lock-images.py): linux x86_64, CPython 3.11.
TARGET = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
# What each vLLM release's wheel requires of the packages that must move with it. Source: the
# Requires-Dist of vllm-0.31.0-cp38-abi3-manylinux_2_28_x86_64.whl and
# vllm-0.24.0-cp38-abi3-manylinux_2_28_x86_64.whl on PyPI (vLLM's CUDA build cannot be installed here).
VLLM_REQUIRES = {
    "0.31.0": ["torch==2.13.0", "torchvision==0.28.0", "torchaudio==2.11.0", "transformers>=5.10.4,<5.18.0"],
    "0.24.0": ["torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0", "transformers>=5.5.3"],
}
# The CUDA toolkit each torch wheel on PyPI is built with. Source: the Requires-Dist
# `cuda-toolkit[...]==X; platform_system == "Linux"` of torch-2.13.0 / torch-2.11.0
# -cp311-cp311-manylinux_2_28_x86_64.whl.
TORCH_CUDA = {"2.13.0": "13.0.3", "2.11.0": "13.0.2"}
# pyproject.toml pins each image does not follow, and why (the .in files say the same).
PYPROJECT_DEVIATIONS = {
    "trl": {
        "transformers": "vLLM 0.31.0 requires transformers <5.18",
        "kfp": "not used in the trainer",
        "kfp-kubernetes": "not used in the trainer",
    },
    "verl": {
        "transformers": "verl 0.9.1 requires <5.11; its vllm extra pins 5.9.0",
        "tokenizers": "transformers 5.9.0 requires <=0.23.0",
        "torch": "verl's vllm extra pins torch 2.11.0",
        "deepspeed": "only the trl engine shards with DeepSpeed",
        "kfp": "not used in the trainer",
        "kfp-kubernetes": "not used in the trainer",
    },
}


def lock_path(engine: str) -> Path:
    return ROOT / "requirements" / f"trainer-{engine}.lock"


def read_lock(engine: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, line in enumerate(lock_path(engine).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = LOCK_LINE.fullmatch(line)
        assert match, f"{lock_path(engine).name}:{number}: not `name==version --hash=sha256:...`: {line}"
        name = match["name"]
        assert name == canonicalize_name(name), f"{lock_path(engine).name}:{number}: name not canonical"
        assert name not in pins, f"{lock_path(engine).name}:{number}: {name} pinned twice"
        pins[name] = match["version"]
    return pins


def direct_requirements(engine: str) -> list[Requirement]:
    lines = (ROOT / "requirements" / f"trainer-{engine}.in").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def dockerfile_text(engine: str) -> str:
    """The Dockerfile without comments, continuation lines joined."""
    lines = [
        line for line in DOCKERFILES[engine].read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    return "\n".join(lines).replace("\\\n", " ")


def satisfies(version: str, specifier: SpecifierSet | str) -> bool:
    return SpecifierSet(str(specifier)).contains(version, prereleases=True)


def unmet_requirements(distribution: str, extras: set[str], pins: dict[str, str]) -> list[str]:
    """The installed distribution's requirements (with these extras, on the target) the lock does not meet."""
    problems, pending, done = [], {"", *extras}, set()
    while pending:
        extra = pending.pop()
        done.add(extra)
        for text in metadata.requires(distribution) or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({**TARGET, "extra": extra}):
                continue
            name = canonicalize_name(requirement.name)
            if name == canonicalize_name(distribution):  # e.g. verl[vllm] -> verl[verl-core]
                pending |= set(requirement.extras) - done
            elif name not in pins:
                problems.append(f"{distribution}[{extra}] requires {requirement}: not in the lock")
            elif not satisfies(pins[name], requirement.specifier):
                problems.append(f"{distribution}[{extra}] requires {requirement}: the lock pins {pins[name]}")
    return problems


def installed_version(name: str) -> str | None:
    try:
        return Version(metadata.version(name)).public
    except metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize("engine", ENGINES)
def test_lock_pins_every_package_once_with_its_hash(engine) -> None:
    pins = read_lock(engine)
    assert len(pins) > 100, "a lock holds the whole tree, not just the direct requirements"
    assert list(pins) == sorted(pins), "the generator writes the lock sorted by name"


@pytest.mark.parametrize("engine", ENGINES)
def test_lock_holds_the_direct_requirements_as_pinned(engine) -> None:
    pins = read_lock(engine)
    for requirement in direct_requirements(engine):
        name = canonicalize_name(requirement.name)
        assert str(requirement.specifier).startswith("=="), f"trainer-{engine}.in: pin {requirement} exactly"
        assert name in pins and satisfies(pins[name], requirement.specifier), (
            f"trainer-{engine}.in wants {requirement}, the lock has {pins.get(name)}: run `make lock-images`"
        )


@pytest.mark.parametrize("engine", ENGINES)
def test_installed_packages_of_the_same_version_are_satisfied_by_the_lock(engine) -> None:
    """Every package installed here at the lock's version (trl, verl, accelerate, ray, mlflow...) has
    its requirements met by the lock, with the extras the .in file asks for."""
    pins = read_lock(engine)
    extras = {canonicalize_name(r.name): set(r.extras) for r in direct_requirements(engine)}
    checked, problems = [], []
    for name, version in pins.items():
        if installed_version(name) == Version(version).public:
            checked.append(name)
            problems += unmet_requirements(name, extras.get(name, set()), pins)
    assert {"accelerate", "ray", "trl", "datasets", "mlflow"} <= set(checked)
    assert problems == []


def test_unmet_requirements_finds_a_requirement_the_lock_breaks() -> None:
    pins = read_lock("verl") | {"transformers": "5.19.0", "tensordict": "0.11.0"}
    problems = unmet_requirements("verl", {"vllm"}, pins)
    assert any("transformers" in problem and "5.19.0" in problem for problem in problems)
    assert any("tensordict" in problem for problem in problems)


@pytest.mark.parametrize("engine", ENGINES)
def test_torch_and_transformers_are_what_the_locked_vllm_requires(engine) -> None:
    pins = read_lock(engine)
    assert pins["vllm"] in VLLM_REQUIRES, (
        f"vllm {pins['vllm']}: copy its wheel's torch/torchvision/torchaudio/transformers pins into VLLM_REQUIRES"
    )
    for requirement in map(Requirement, VLLM_REQUIRES[pins["vllm"]]):
        name = canonicalize_name(requirement.name)
        assert satisfies(pins[name], requirement.specifier), (
            f"{engine}: vllm {pins['vllm']} requires {requirement}, the lock pins {name}=={pins[name]}"
        )


@pytest.mark.parametrize("engine", ENGINES)
def test_cuda_toolkit_is_the_one_torch_is_built_with(engine) -> None:
    pins = read_lock(engine)
    assert Version(pins["cuda-toolkit"]) == Version(TORCH_CUDA[pins["torch"]])


def test_trl_lock_vllm_is_in_the_range_trl_supports(monkeypatch) -> None:
    """TRL's own check (trl.import_utils.is_vllm_available warns outside its supported range)."""
    trl_imports = importlib.import_module("trl.import_utils")
    pins = read_lock("trl")
    assert installed_version("trl") == pins["trl"], "TRL's range is read from the installed trl"

    def warnings_for(vllm_version: str) -> list[str]:
        monkeypatch.setattr(
            trl_imports, "_is_package_available", lambda name, return_version=False: (True, vllm_version)
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trl_imports.is_vllm_available()
        return [str(warning.message) for warning in caught]

    assert warnings_for(pins["vllm"]) == []
    assert warnings_for("0.32.0"), "the probe must notice an unsupported vLLM"


@pytest.mark.parametrize("engine", ENGINES)
def test_pyproject_deviations_are_the_documented_ones(engine) -> None:
    """CI tests on pyproject's pins: an image differs from them only where PYPROJECT_DEVIATIONS says why."""
    pins = read_lock(engine)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    differing = {
        canonicalize_name(r.name)
        for r in map(Requirement, project)
        if canonicalize_name(r.name) not in pins
        or not satisfies(pins[canonicalize_name(r.name)], r.specifier)
    }
    assert differing == set(PYPROJECT_DEVIATIONS[engine])


def test_verl_lock_is_what_verl_and_its_vllm_extra_require() -> None:
    """From verl's own metadata (installed here with --no-deps, same version as the lock)."""
    pins = read_lock("verl")
    assert installed_version("verl") == pins["verl"], "verl's ranges are read from the installed verl"
    wanted = {
        canonicalize_name(Requirement(text).name): Requirement(text) for text in metadata.requires("verl")
    }
    for name in ("transformers", "tensordict"):
        assert satisfies(pins[name], wanted[name].specifier), f"verl requires {wanted[name]}"
    vllm_extra = [
        Requirement(text)
        for text in metadata.requires("verl")
        if Requirement(text).marker and Requirement(text).marker.evaluate({**TARGET, "extra": "vllm"})
    ]
    pinned_by_extra = {canonicalize_name(r.name): r for r in vllm_extra if str(r.specifier).startswith("==")}
    assert {"torch", "vllm", "transformers"} <= set(pinned_by_extra)
    for name, requirement in pinned_by_extra.items():
        assert satisfies(pins[name], requirement.specifier), f"verl[vllm] requires {requirement}"


@pytest.mark.parametrize("engine", ENGINES)
def test_ray_is_the_version_the_rayjobs_declare(engine) -> None:
    ray_version = KubeRayConfig().ray_version
    assert read_lock(engine)["ray"] == ray_version
    base = re.search(r"^FROM\s+(\S+)", dockerfile_text(engine), re.MULTILINE)[1]
    assert base.startswith(f"rayproject/ray:{ray_version}-py311-"), (
        f"{engine}: base {base} is not Ray {ray_version}"
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_dockerfile_installs_exactly_its_lock(engine) -> None:
    text = dockerfile_text(engine)
    lock = f"requirements/trainer-{engine}.lock"
    assert lock_path(engine).is_file()
    assert re.search(rf"^COPY\s.*\b{re.escape(lock)}\s", text, re.MULTILINE), (
        f"{engine}: does not COPY {lock}"
    )
    excluded = re.findall(r"grep -v '\^([a-z0-9-]+)=='", text)
    assert excluded == ["flash-attn"], "only flash-attn is installed outside the hash-checked lock"
    installs = [line for line in text.splitlines() if "pip install" in line]
    from_lock = [line for line in installs if re.search(rf"-r (/tmp/trainer\.lock|{re.escape(lock)})", line)]
    assert from_lock and all("--no-deps" in line and "--require-hashes" in line for line in from_lock)
    assert f"grep -v '^flash-attn==' {lock} > /tmp/trainer.lock" in text
    assert all("--no-deps" in line for line in installs), f"{engine}: every pip install is --no-deps"
    assert re.search(r"pip install [^\n]*--no-deps[^\n]* \.(\s|$)", text), f"{engine}: longrl with --no-deps"
    assert f"check_trainer_image.py --lock {lock} --engine {engine}" in text


@pytest.mark.parametrize("engine", ENGINES)
def test_flash_attn_wheel_matches_the_locked_torch_cuda_and_python(engine) -> None:
    pins = read_lock(engine)
    url = re.search(r"FLASH_ATTN_WHEEL=(\S+)", dockerfile_text(engine))[1]
    wheel = re.fullmatch(
        r"https://github\.com/Dao-AILab/flash-attention/releases/download/v(?P<tag>[^/]+)/"
        r"flash_attn-(?P<version>[^+]+)\+cu(?P<cuda>\d+)torch(?P<torch>\d+\.\d+)cxx11abi(?P<abi>TRUE|FALSE)"
        r"-cp(?P<python>\d+)-cp\d+-linux_x86_64\.whl",
        url,
    )
    assert wheel, f"{engine}: not a flash-attention release wheel: {url}"
    assert wheel["tag"] == wheel["version"] == pins["flash-attn"]
    assert wheel["torch"] == ".".join(pins["torch"].split(".")[:2])
    assert wheel["cuda"] == pins["cuda-toolkit"].split(".")[0]
    assert wheel["abi"] == "TRUE", "PyPI's torch >= 2.7 wheels use the C++11 ABI"
    assert wheel["python"] == "311"


@pytest.mark.parametrize("engine", ENGINES)
def test_image_names_agree_across_makefile_dockerfile_and_launcher(engine) -> None:
    makefile = (ROOT / "Makefile").read_text()
    registry = re.search(r"^REGISTRY \?= (\S+)", makefile, re.MULTILINE)[1]
    version = re.search(r"^VERSION \?= (\S+)", makefile, re.MULTILINE)[1]
    repository = IMAGE_NAMES[engine].rsplit(":", 1)[0].rsplit("/", 1)[1]
    dockerfile = DOCKERFILES[engine].relative_to(ROOT)
    assert (
        f"docker build -f {dockerfile} " in makefile and f"-t $(REGISTRY)/{repository}:$(VERSION)" in makefile
    )
    assert f"{registry}/{repository}:{version}" == IMAGE_NAMES[engine]
    assert f"LONGRL_TRAINER_IMAGE={IMAGE_NAMES[engine]}" in dockerfile_text(engine)


def test_the_generator_is_what_make_lock_images_runs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^lock-images:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert target and "scripts/lock-images.py" in target[1]
    spec = importlib.util.spec_from_file_location("lock_images", ROOT / "scripts" / "lock-images.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert {engine: ROOT / path for engine, path in generator.IMAGES.items()} == DOCKERFILES
    for engine in ENGINES:
        assert "Generated by\n# scripts/lock-images.py" in lock_path(engine).read_text()


def image_check_module():
    spec = importlib.util.spec_from_file_location(
        "check_trainer_image", ROOT / "images" / "check_trainer_image.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_check_reads_the_locks_and_names_what_differs(tmp_path) -> None:
    check = image_check_module()
    for engine in ENGINES:
        assert check.lock_pins(lock_path(engine)) == read_lock(engine)
    lock = tmp_path / "image.lock"
    digest = "0" * 64
    lock.write_text(
        f"# a lock\npackaging=={metadata.version('packaging')} --hash=sha256:{digest}\n"
        f"pydantic==0.0.1 --hash=sha256:{digest}\nno-such-package==1.0 --hash=sha256:{digest}\n"
    )
    problems = check.version_mismatches(check.lock_pins(lock))
    assert len(problems) == 2
    assert problems[0].startswith("no-such-package: not installed")
    assert problems[1].startswith(f"pydantic: {metadata.version('pydantic')} installed, lock pins 0.0.1")
    assert check.import_failures(["json", "no_such_module_here"]) == [
        "import no_such_module_here: ModuleNotFoundError: No module named 'no_such_module_here'"
    ]
