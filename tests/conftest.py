"""Shared fixtures: the tiny model (built once per session) and small generated datasets."""

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


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A running S3 server with bucket 'longrl', and the environment longrl.storage reads."""
    import boto3

    from longrl import storage
    from tests.support.s3_server import S3_ENV, serve_s3

    with serve_s3() as endpoint:
        for key, value in S3_ENV.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("LONGRL_S3_ENDPOINT_URL", endpoint)
        storage._clients.clear()
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="longrl")
        yield endpoint
        storage._clients.clear()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server for the session (SQLite backend, local artifact store)."""
    from tests.support.mlflow_server import serve_mlflow

    with serve_mlflow(tmp_path_factory.mktemp("mlflow")) as url:
        yield url
