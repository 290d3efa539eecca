"""A decoder-only transformer's shape, read from its Hugging Face ``config.json``, and what follows from it.

The planner needs only the sizes that decide memory: hidden size, layers, attention heads (query and
key/value), head size, MLP width, vocabulary, whether the input and output embeddings are one tensor,
and which projections carry a bias. Parameter counts are exact for the architectures listed in
``ARCHITECTURES`` (checked in the tests against transformers' own modules and published totals).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from longrl import storage


class ModelShapeError(ValueError):
    """A model config could not be read or describes an architecture the planner does not model."""


# What differs between the dense decoder architectures the planner models (transformers' modules):
# Qwen2 has biases on q/k/v only; Qwen3 none by default but RMSNorm on each query/key head;
# Llama/Mistral take attention_bias (q/k/v/o) and mlp_bias from the config.
ARCHITECTURES = ("qwen2", "qwen3", "llama", "mistral")


class ModelShape(BaseModel):
    """The sizes of a dense decoder-only transformer (SwiGLU MLP, RMSNorm, rotary positions, GQA)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model_type: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    max_position_embeddings: int | None = None

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def attention_params(self) -> int:
        h = self.hidden_size
        weights = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        biases = (self.q_dim + 2 * self.kv_dim if self.qkv_bias else 0) + (h if self.o_bias else 0)
        norms = 2 * self.head_dim if self.qk_norm else 0
        return weights + biases + norms

    @property
    def mlp_params(self) -> int:
        h, i = self.hidden_size, self.intermediate_size
        return 3 * h * i + (2 * i + h if self.mlp_bias else 0)

    @property
    def layer_params(self) -> int:
        """One decoder layer: attention, MLP and its two RMSNorms."""
        return _layer_params(self)

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def root_params(self) -> int:
        """What is not in a decoder layer: embeddings, output head, final norm (FSDP's root unit)."""
        return self.embedding_params + self.lm_head_params + self.hidden_size

    @property
    def parameters(self) -> int:
        return self.num_layers * _layer_params(self) + self.root_params

    @property
    def largest_module_params(self) -> int:
        """Parameters of the module holding the most directly (DeepSpeed's ``model_to_params`` measure)."""
        h, i = self.hidden_size, self.intermediate_size
        linear = max(
            h * i + (i if self.mlp_bias else 0), h * self.q_dim + (self.q_dim if self.qkv_bias else 0)
        )
        return max(self.embedding_params, linear)

    def kv_heads_per_gpu(self, tensor_parallel: int) -> int:
        """vLLM splits key/value heads over its tensor-parallel GPUs, replicating them past one per GPU."""
        return max(1, self.num_kv_heads // tensor_parallel)

    def kv_cache_bytes_per_token(self, tensor_parallel: int = 1, dtype_bytes: int = 2) -> int:
        """Bytes of key and value cache one token takes on each GPU of a vLLM engine (bf16 cache)."""
        return 2 * self.num_layers * self.kv_heads_per_gpu(tensor_parallel) * self.head_dim * dtype_bytes

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str) -> ModelShape:
        """The shape a Hugging Face ``config.json`` (already parsed) describes; ``name`` says where it came from."""
        if isinstance(config.get("text_config"), dict):
            config = {**config["text_config"], "model_type": config["text_config"].get("model_type")}
        model_type = config.get("model_type")
        if model_type not in ARCHITECTURES:
            raise ModelShapeError(
                f"{name}: model_type {model_type!r} is not one the planner models "
                f"({', '.join(ARCHITECTURES)}: dense decoders with a SwiGLU MLP)"
            )

        def required(key: str) -> int:
            if key not in config:
                raise ModelShapeError(
                    f"{name}: config.json has no {key} (is it a Hugging Face model config?)"
                )
            value = config[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelShapeError(f"{name}: {key} must be a positive integer, not {value!r}")
            return value

        hidden = required("hidden_size")
        heads = required("num_attention_heads")
        head_dim = config.get("head_dim") or hidden // heads
        attention_bias = bool(config.get("attention_bias", False))
        return cls(
            name=name,
            model_type=model_type,
            hidden_size=hidden,
            num_layers=required("num_hidden_layers"),
            num_attention_heads=heads,
            num_kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            intermediate_size=required("intermediate_size"),
            vocab_size=required("vocab_size"),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=True if model_type == "qwen2" else attention_bias,
            o_bias=model_type != "qwen2" and attention_bias,
            mlp_bias=bool(config.get("mlp_bias", False)),
            qk_norm=model_type == "qwen3",
            max_position_embeddings=config.get("max_position_embeddings"),
        )


@cache  # the planner's search asks thousands of times; shapes are frozen, so hashable
def _layer_params(shape: ModelShape) -> int:
    return shape.attention_params + shape.mlp_params + 2 * shape.hidden_size


def _qwen2(name: str, **sizes: Any) -> ModelShape:
    return ModelShape(name=name, model_type="qwen2", qkv_bias=True, head_dim=128, **sizes)


# Published config.json values (huggingface.co/<name>/blob/main/config.json), for the built-in table and
# for planning a hub name without downloading it. tests/plan/fixtures holds the full files.
BUILTIN_SHAPES: dict[str, ModelShape] = {
    shape.name: shape
    for shape in (
        ModelShape(
            name="Qwen/Qwen2.5-1.5B-Instruct",
            model_type="qwen2",
            hidden_size=1536,
            num_layers=28,
            num_attention_heads=12,
            num_kv_heads=2,
            head_dim=128,
            intermediate_size=8960,
            vocab_size=151936,
            tie_word_embeddings=True,
            qkv_bias=True,
            max_position_embeddings=32768,
        ),
        _qwen2(
            "Qwen/Qwen2.5-7B-Instruct",
            hidden_size=3584,
            num_layers=28,
            num_attention_heads=28,
            num_kv_heads=4,
            intermediate_size=18944,
            vocab_size=152064,
            tie_word_embeddings=False,
            max_position_embeddings=32768,
        ),
        _qwen2(
            "Qwen/Qwen2.5-14B-Instruct",
            hidden_size=5120,
            num_layers=48,
            num_attention_heads=40,
            num_kv_heads=8,
            intermediate_size=13824,
            vocab_size=152064,
            tie_word_embeddings=False,
            max_position_embeddings=32768,
        ),
        _qwen2(
            "Qwen/Qwen2.5-32B-Instruct",
            hidden_size=5120,
            num_layers=64,
            num_attention_heads=40,
            num_kv_heads=8,
            intermediate_size=27648,
            vocab_size=152064,
            tie_word_embeddings=False,
            max_position_embeddings=32768,
        ),
        _qwen2(
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
            hidden_size=5120,
            num_layers=64,
            num_attention_heads=40,
            num_kv_heads=8,
            intermediate_size=27648,
            vocab_size=152064,
            tie_word_embeddings=False,
            max_position_embeddings=131072,
        ),
    )
}
# The base models share their instruct models' shapes.
BUILTIN_SHAPES.update(
    {
        name.removesuffix("-Instruct"): shape.model_copy(update={"name": name.removesuffix("-Instruct")})
        for name, shape in list(BUILTIN_SHAPES.items())
        if name.endswith("-Instruct")
    }
)


def _config_location(uri: str) -> str | None:
    """Where the config.json of ``uri`` is (a file, a directory holding one, or an S3 object/prefix)."""
    if storage.is_s3(uri):
        return uri if uri.endswith(".json") else storage.join(uri, "config.json")
    path = Path(uri)
    if path.is_dir():
        return str(path / "config.json")
    if path.is_file():
        return str(path)
    return None


def read_model_shape(uri: str) -> ModelShape:
    """The shape of a model: a config.json path, a model directory, an s3:// URI of either, or a hub name
    longrl knows the published config of (``BUILTIN_SHAPES``)."""
    location = _config_location(uri)
    if location is None:
        if uri in BUILTIN_SHAPES:
            return BUILTIN_SHAPES[uri]
        raise ModelShapeError(
            f"{uri}: no config.json there (give a config.json, a model directory or an s3:// URI; hub names "
            f"the planner knows without downloading: {', '.join(sorted(BUILTIN_SHAPES))})"
        )
    try:
        text = storage.read_text(location) if storage.is_s3(location) else Path(location).read_text("utf-8")
    except (OSError, storage.StorageError) as exc:
        raise ModelShapeError(f"{location}: cannot read the model config: {exc}") from exc
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelShapeError(f"{location}: not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelShapeError(f"{location}: expected a JSON object of model settings")
    return ModelShape.from_config(config, name=uri)
