"""Model shapes from config.json: exact parameter counts, every way of naming a config, errors that say what is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from longrl.plan import BUILTIN_SHAPES, ModelShape, ModelShapeError, read_model_shape

FIXTURES = Path(__file__).parent / "fixtures"

# Published totals, from the models' cards on huggingface.co ("Number of Parameters" / "Number of Parameters
# (Non-Embedding)"): 1.54B / 1.31B, 7.61B / 6.53B, 14.7B / 13.1B, 32.5B / 31.0B. The cards round (the
# 32B card's 32.5B is 0.8% under what transformers builds from its own config.json, checked below), so 1%.
PUBLISHED = {
    "Qwen2.5-1.5B-Instruct": (1.54e9, 1.31e9),
    "Qwen2.5-7B-Instruct": (7.61e9, 6.53e9),
    "Qwen2.5-14B-Instruct": (14.7e9, 13.1e9),
    "Qwen2.5-32B-Instruct": (32.5e9, 31.0e9),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_the_published_total(name: str) -> None:
    shape = read_model_shape(str(FIXTURES / f"{name}.json"))
    total, non_embedding = PUBLISHED[name]
    assert shape.parameters == pytest.approx(total, rel=0.01)
    assert shape.parameters - shape.embedding_params - shape.lm_head_params == pytest.approx(
        non_embedding, rel=0.01
    )


def test_r1_distill_32b_is_qwen25_32b_sized() -> None:
    distill = read_model_shape(str(FIXTURES / "DeepSeek-R1-Distill-Qwen-32B.json"))
    assert distill.parameters == read_model_shape(str(FIXTURES / "Qwen2.5-32B-Instruct.json")).parameters
    assert distill.max_position_embeddings == 131072


def _transformers_count(config: dict) -> tuple[int, int]:
    """Parameters of the model transformers builds from ``config`` (on the meta device: no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_config = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    total = sum(p.numel() for p in model.parameters())  # shared (tied) tensors are listed once
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return total, largest


@pytest.mark.parametrize("name", ["Qwen2.5-1.5B-Instruct", "Qwen2.5-7B-Instruct", "Qwen2.5-32B-Instruct"])
def test_parameter_count_is_exactly_what_transformers_builds(name: str) -> None:
    config = json.loads((FIXTURES / f"{name}.json").read_text())
    shape = read_model_shape(str(FIXTURES / f"{name}.json"))
    assert (shape.parameters, shape.largest_module_params) == _transformers_count(config)


@pytest.mark.parametrize(
    "config",
    [
        # Qwen3: explicit head_dim (q = 32 x 128 != hidden), per-head q/k norms, no biases
        {
            "model_type": "qwen3",
            "hidden_size": 1024,
            "num_hidden_layers": 3,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 3072,
            "vocab_size": 1000,
            "tie_word_embeddings": True,
        },
        # Llama with attention and MLP biases, untied
        {
            "model_type": "llama",
            "hidden_size": 512,
            "num_hidden_layers": 2,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "intermediate_size": 1376,
            "vocab_size": 1000,
            "attention_bias": True,
            "mlp_bias": True,
            "tie_word_embeddings": False,
        },
    ],
)
def test_other_architectures_count_exactly(config: dict) -> None:
    shape = ModelShape.from_config(config, name="test")
    assert (shape.parameters, shape.largest_module_params) == _transformers_count(config)


@pytest.mark.parametrize("name", ["Qwen2.5-1.5B-Instruct", "Qwen2.5-7B-Instruct", "Qwen2.5-14B-Instruct"])
def test_built_in_shapes_are_the_published_configs(name: str) -> None:
    from_file = read_model_shape(str(FIXTURES / f"{name}.json"))
    built_in = BUILTIN_SHAPES[f"Qwen/{name}"]
    assert from_file.model_dump(exclude={"name"}) == built_in.model_dump(exclude={"name"})
    assert BUILTIN_SHAPES[f"Qwen/{name.removesuffix('-Instruct')}"].parameters == built_in.parameters


def test_a_model_directory_and_a_hub_name_are_read(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "Qwen2.5-7B-Instruct.json", tmp_path / "config.json")
    assert (
        read_model_shape(str(tmp_path)).parameters == read_model_shape("Qwen/Qwen2.5-7B-Instruct").parameters
    )


def test_an_s3_model_directory_is_read(s3_endpoint: str) -> None:
    from longrl import storage

    storage.upload_file(FIXTURES / "Qwen2.5-32B-Instruct.json", "s3://longrl/models/base/config.json")
    assert read_model_shape("s3://longrl/models/base").parameters == pytest.approx(32.76e9, rel=0.001)
    assert read_model_shape("s3://longrl/models/base/config.json").num_layers == 64


def test_a_config_without_hidden_size_is_refused_by_name(tmp_path: Path) -> None:
    config = json.loads((FIXTURES / "Qwen2.5-7B-Instruct.json").read_text())
    del config["hidden_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelShapeError, match=r"config.json has no hidden_size"):
        read_model_shape(str(tmp_path))


def test_unmodelled_architectures_and_missing_configs_are_refused() -> None:
    with pytest.raises(ModelShapeError, match="qwen2_moe"):
        ModelShape.from_config({"model_type": "qwen2_moe", "hidden_size": 8}, name="moe")
    with pytest.raises(ModelShapeError, match="no config.json there"):
        read_model_shape("/nonexistent/model")


def test_kv_cache_per_token() -> None:
    shape = BUILTIN_SHAPES["Qwen/Qwen2.5-7B"]  # 28 layers, 4 kv heads of 128
    assert shape.kv_cache_bytes_per_token(1) == 2 * 28 * 4 * 128 * 2
    assert shape.kv_cache_bytes_per_token(2) == shape.kv_cache_bytes_per_token(1) // 2
    # past one kv head per GPU vLLM replicates heads: tp 8 holds as much per GPU as tp 4
    assert shape.kv_cache_bytes_per_token(8) == shape.kv_cache_bytes_per_token(4) == 2 * 28 * 1 * 128 * 2
