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
def answering_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model warm-up-trained (~2 minutes) until it closes its reasoning and gives an answer.

    A random model never writes ``</think>``, so nothing it says is an answer to score or judge.
    """
    from longrl.data import GenerateConfig, PrepareConfig, generate, prepare
    from longrl.tiny_model import LEARNER_SHAPE, TinyModelConfig, build_tiny_model
    from longrl.train.config import TINY_SFT, SFTStepConfig, with_overrides
    from longrl.train.sft import run_sft

    root = tmp_path_factory.mktemp("answering-model")
    base = build_tiny_model(
        TinyModelConfig(
            output_dir=str(root / "base"),
            **LEARNER_SHAPE,
        )
    )
    task = {
        "kinds": ["multihop", "docmath"],
        "max_hops": 1,
        "distractors": 0,
        "doc_tokens_min": 16,
        "doc_tokens_max": 120,
    }
    generate(GenerateConfig(output=str(root / "sft.jsonl"), num_records=400, sft=True, seed=1, **task))
    prepare(
        PrepareConfig(
            inputs=[str(root / "sft.jsonl")],
            output_dir=str(root / "data"),
            tokenizer=str(base),
            sft=True,
            phase_max_tokens=[1000],
            validation_fraction=0.1,
        )
    )
    values = {
        "model": str(base),
        "output_dir": str(root / "sft"),
        "train_file": str(root / "data" / "train-phase1.parquet"),
        "validation_file": str(root / "data" / "validation.parquet"),
        "validation_max_examples": 16,
        "max_steps": 250,
        "per_device_train_batch_size": 16,
        "learning_rate": 2e-3,
        "lr_scheduler_type": "cosine",
    }
    result = run_sft(with_overrides(SFTStepConfig, TINY_SFT, values))
    assert result["validation"]["val/answered"] >= 0.5, result["validation"]
    return root / "sft" / "model"
