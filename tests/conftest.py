"""Shared fixtures: the tiny model, real servers (S3, MLflow) and `make run`'s pipeline, each once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from longrl.tiny_model import TinyModelConfig, build_tiny_model

    return build_tiny_model(TinyModelConfig(output_dir=str(tmp_path_factory.mktemp("tiny-model"))))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS S3 server for the session (it takes seconds to start); stopped at the end."""
    from tests.support.s3_server import serve_s3

    with serve_s3(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_endpoint(s3_server, monkeypatch):
    """The S3 server with an empty bucket 'longrl', and the environment longrl.storage reads."""
    from longrl import storage
    from tests.support.s3_server import S3_ENV, fresh_bucket

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LONGRL_S3_ENDPOINT_URL", s3_server)
    storage._clients.clear()
    fresh_bucket(s3_server)
    yield s3_server
    storage._clients.clear()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server for the session (SQLite backend, local artifact store)."""
    from tests.support.mlflow_server import serve_mlflow

    with serve_mlflow(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="session")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``make run``'s whole pipeline, once per session: its work directory and console. Its trained
    models also serve the tests that need a model which answers or judges (``pipeline_models``)."""
    from tests.support.pipeline_run import run_local

    work = tmp_path_factory.mktemp("local-run")
    return work, run_local(work)


@pytest.fixture(scope="session")
def pipeline_models(local_run) -> dict[str, Path]:
    """The warm-up SFT model and the judge that ``local_run``'s pipeline trained, found as the steps that
    read them find them: through their output artifacts' pointers (of its first run: a rerun in the same
    directory adds runs that reuse these steps)."""
    from longrl.artifacts import read_pointer
    from longrl.serving.judge_model import MODEL_DIR as JUDGE_MODEL_DIR
    from longrl.steps import model_dir

    work, _ = local_run
    first_run = sorted(work.glob("kfp/longrl-*"))[0]
    return {
        "sft": Path(model_dir(read_pointer(first_run / "train-sft" / "model").location)),
        "judge": Path(read_pointer(first_run / "build-judge" / "judge").location) / JUDGE_MODEL_DIR,
    }
