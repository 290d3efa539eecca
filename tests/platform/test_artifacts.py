"""Pointer artifacts: a downstream step moves only the bytes it reads (longrl.artifacts)."""

import json
import logging
from pathlib import Path

import pytest

from longrl import artifacts, storage

MODEL_FILES = {"model/config.json": 300, "model/model.safetensors": 200_000, "model/tokenizer.json": 5_000}
OTHER_FILES = {"result.json": 100, "difficulty.jsonl": 2_000, "train_data.parquet": 3_000}
CHECKPOINT_FILES = {
    "checkpoints/checkpoint-4/optimizer.pt": 3_000_000,
    "checkpoints/checkpoint-4/model.safetensors": 200_000,
    "checkpoints/checkpoint-4/longrl_checkpoint_complete": 2,
}


def fake_step_output(root: Path) -> Path:
    """A training step's output: the final model, its records, and a checkpoint 15x the model's size."""
    for relative, size in {**MODEL_FILES, **OTHER_FILES, **CHECKPOINT_FILES}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(relative.encode() + bytes(size - len(relative.encode())) if size > 64 else b"4\n")
    return root


class BytesRead:
    """Counts the bytes S3 serves to this process (every GetObject response, ranged or not)."""

    def __init__(self) -> None:
        self.total = 0
        storage.s3_client().meta.events.register("after-call.s3.GetObject", self._count)

    def _count(self, parsed, **_):
        self.total += int(parsed.get("ContentLength", 0))

    def take(self) -> int:
        total, self.total = self.total, 0
        return total


def test_the_data_location_is_next_to_the_artifact_but_never_under_its_key() -> None:
    uri = "minio://mlpipeline/v2/artifacts/longrl/run-1/train-sft/123/model"
    location = artifacts.data_location(uri, "/minio/mlpipeline/v2/artifacts/longrl/run-1/train-sft/123/model")
    assert location == "s3://mlpipeline/v2/artifacts/longrl/run-1/train-sft/123/.longrl-data/model"
    assert not location.startswith("s3://mlpipeline/v2/artifacts/longrl/run-1/train-sft/123/model")
    local = artifacts.data_location("/tmp/kfp/run/train-sft/model", "/tmp/kfp/run/train-sft/model")
    assert local == "/tmp/kfp/run/train-sft/.longrl-data/model"


def test_a_downstream_step_downloads_only_the_model_of_an_s3_step_output(s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    location = "s3://longrl/kfp/run/train-sft/.longrl-data/model"
    storage.copy_tree(str(fake_step_output(tmp_path / "out")), location)
    counter = BytesRead()

    pointer = artifacts.write_pointer(tmp_path / "artifact" / "model", location, {"global_step": 4})
    assert counter.take() == 0  # the manifest comes from the listing and the recorded checksums
    assert set(pointer.files) == set(MODEL_FILES) | set(OTHER_FILES)  # checkpoints/ is no output
    artifact_bytes = (tmp_path / "artifact" / "model").stat().st_size
    assert artifact_bytes < 4_000  # what KFP's launcher downloads into the next step's pod

    read = artifacts.read_pointer(tmp_path / "artifact" / "model")
    assert read == pointer and read.metadata == {"global_step": 4}
    model = artifacts.fetch(read, "model")
    assert counter.take() == sum(MODEL_FILES.values())
    assert sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file()) == sorted(
        name.removeprefix("model/") for name in MODEL_FILES
    )
    artifacts.fetch(read, "model")
    assert counter.take() == 0  # already here and verified

    whole_output = sum({**MODEL_FILES, **OTHER_FILES, **CHECKPOINT_FILES}.values())
    print(f"pointer {artifact_bytes} B, model fetch {sum(MODEL_FILES.values())} B, output {whole_output} B")


def test_a_changed_output_is_refused_by_its_pointer(s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    location = "s3://longrl/kfp/run/train-rl/.longrl-data/model"
    storage.copy_tree(str(fake_step_output(tmp_path / "out")), location)
    pointer = artifacts.write_pointer(tmp_path / "pointer", location)
    storage.write_text(storage.join(location, "model/config.json"), '{"changed": true}')
    with pytest.raises(storage.StorageError, match="changed since it was recorded"):
        artifacts.fetch(pointer, "model")
    with pytest.raises(storage.StorageError, match="has no checkpoints"):
        artifacts.fetch(pointer, "checkpoints")


def test_a_local_output_is_read_where_it_is(tmp_path):
    output = fake_step_output(tmp_path / ".longrl-data" / "model")
    pointer = artifacts.write_pointer(tmp_path / "model", str(output))
    assert pointer.size("model") == sum(MODEL_FILES.values())
    assert artifacts.fetch(pointer, "model") == output / "model"
    assert artifacts.fetch(pointer, "result.json") == output / "result.json"
    (output / "model" / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(storage.StorageError, match="differs from its pointer"):
        artifacts.fetch(pointer, "model")


def test_a_pointer_whose_data_was_deleted_says_so_when_read(s3_endpoint, tmp_path):
    location = "s3://longrl/kfp/run/train-sft/.longrl-data/model"
    storage.copy_tree(str(fake_step_output(tmp_path / "out")), location)
    artifacts.write_pointer(tmp_path / "pointer", location)
    storage.delete_tree(storage.join(location, "model"))
    with pytest.raises(storage.StorageError, match="lacks 3 of its 6 files.*run again without the cache"):
        artifacts.read_pointer(tmp_path / "pointer")
    assert artifacts.read_pointer(tmp_path / "pointer", check=False).location == location


def test_a_file_that_is_not_a_pointer_is_a_clear_error(tmp_path):
    (tmp_path / "old").write_text("{}")
    with pytest.raises(storage.StorageError, match="not a longrl pointer"):
        artifacts.read_pointer(tmp_path / "old")


def test_data_preparation_downloads_the_tokenizer_not_the_weights(s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    base = tmp_path / "base"
    base.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (base / name).write_text(json.dumps({"name": name}))
    (base / "model-00001-of-00002.safetensors").write_bytes(bytes(1_000_000))
    (base / "model-00002-of-00002.safetensors").write_bytes(bytes(1_000_000))
    (base / "model.safetensors.index.json").write_text("{}")
    (base / "sub").mkdir()
    (base / "sub" / "extra.bin").write_bytes(bytes(10_000))
    storage.copy_tree(str(base), "s3://longrl/models/base")
    counter = BytesRead()

    local = Path(artifacts.fetch_tokenizer("s3://longrl/models/base"))
    assert sorted(p.name for p in local.iterdir()) == [
        "config.json",
        "merges.txt",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    assert counter.take() < 1_000
    assert artifacts.fetch_tokenizer("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"


def test_the_fetched_tokenizer_loads(s3_endpoint, tiny_model_dir, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    storage.copy_tree(str(tiny_model_dir), "s3://longrl/models/tiny")
    local = Path(artifacts.fetch_tokenizer("s3://longrl/models/tiny"))
    assert not list(local.glob("*.safetensors"))
    fetched = AutoTokenizer.from_pretrained(local)
    assert (
        fetched("a question")["input_ids"]
        == AutoTokenizer.from_pretrained(tiny_model_dir)("a question")["input_ids"]
    )


def test_ranks_of_one_node_download_an_input_once(s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    storage.copy_tree(str(fake_step_output(tmp_path / "out") / "model"), "s3://longrl/models/sft")
    counter = BytesRead()
    first = artifacts.localize_on_node("s3://longrl/models/sft")
    assert counter.take() == sum(MODEL_FILES.values())
    again = artifacts.localize_on_node("s3://longrl/models/sft")
    assert again == first and counter.take() == 0


def test_ranks_wait_for_the_one_holding_the_node_lock(tmp_path, monkeypatch):
    import multiprocessing
    import time

    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path))
    log = tmp_path / "order"
    context = multiprocessing.get_context("fork")
    with artifacts.node_lock("model"):
        other = context.Process(target=_append_under_lock, args=(str(log),))
        other.start()
        time.sleep(0.5)
        log.write_text("first\n")
    other.join(timeout=30)
    assert log.read_text() == "first\nsecond\n"


def _append_under_lock(log: str) -> None:
    with artifacts.node_lock("model"), open(log, "a") as handle:
        handle.write("second\n")


# ----- under kfp.local, as `make run` runs the pipeline -------------------------------------------


def _producer_and_consumer():
    from kfp import dsl
    from kfp.dsl import Input, Model, Output

    @dsl.component(install_kfp_package=False)
    def train(seed: int, model: Output[Model]):
        from pathlib import Path

        from longrl.artifacts import data_location, publish

        output = Path(data_location(model.uri, model.path))
        for relative, size in (
            ("model/weights.bin", 20_000),
            ("checkpoints/checkpoint-1/optimizer.pt", 400_000),
        ):
            (output / relative).parent.mkdir(parents=True, exist_ok=True)
            (output / relative).write_bytes(bytes([seed % 256]) * size)
        publish(model, str(output), {"seed": seed})

    @dsl.component(install_kfp_package=False)
    def evaluate(trained: Input[Model]) -> int:
        from longrl.artifacts import fetch, read_pointer

        pointer = read_pointer(trained.path)
        model = fetch(pointer, "model")
        return sum(p.stat().st_size for p in model.rglob("*") if p.is_file())

    @dsl.pipeline
    def two_steps(seed: int) -> int:
        return evaluate(trained=train(seed=seed).outputs["model"]).output

    return two_steps


@pytest.mark.slow
def test_under_kfp_local_the_artifact_is_the_pointer_and_reruns_are_cached(tmp_path, caplog):
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path),
        raise_on_error=True,
        enable_caching=True,
    )
    pipeline = _producer_and_consumer()
    with caplog.at_level(logging.INFO):
        assert pipeline(seed=3).output == 20_000
        (pointer_file,) = tmp_path.glob("two-steps-*/train/model")
        pointer = artifacts.read_pointer(pointer_file)
        assert set(pointer.files) == {"model/weights.bin"} and pointer.metadata == {"seed": 3}
        assert pointer_file.stat().st_size < 2_000
        assert Path(pointer.location) == pointer_file.parent / ".longrl-data" / "model"
        assert pipeline(seed=3).output == 20_000
    assert "Task train cache hit" in caplog.text and "Task evaluate cache hit" in caplog.text
