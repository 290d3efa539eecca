"""Data preparation throughput: ``longrl.data.prepare`` against a naive one-record-at-a-time loop.

* ``prepare/end_to_end``: records per second of the whole preparation (read and validate,
  de-duplicate, render prompts, tokenise in batches, bucket into phases, write parquet and stats).
  Baseline: a plain loop that reads each JSON line, renders its prompt, tokenises it alone and
  assigns its phase, writing nothing. The baseline does less work, so a ratio above 1 is the
  batching's gain net of everything else ``prepare`` does.
* ``prepare/tokenise``: prompts per second of the batched tokenisation ``prepare`` uses
  (``measure_prompt_tokens``) against tokenising the same prompts one by one; the pure batching gain.

Both use the tiny model's tokenizer, loaded once outside the timings.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from longrl.bench.core import BenchContext, logger, rates, timed_pairs
from longrl.bench.report import BenchmarkResult, figure
from longrl.data.prepare import PrepareConfig, assign_phase, load_tokenizer, measure_prompt_tokens, prepare
from longrl.data.prompts import chat_prompt
from longrl.data.synthetic import GenerateConfig, generate


@dataclasses.dataclass(frozen=True)
class Sizes:
    documents: int
    doc_tokens: int


SIZES = {"small": Sizes(documents=200, doc_tokens=2_000), "full": Sizes(documents=2_000, doc_tokens=20_000)}


def documents_file(context: BenchContext, sizes: Sizes) -> Path:
    """Generated QA records of about ``doc_tokens`` each, made once and kept in the cache."""
    path = context.cache / f"data_prep-{sizes.documents}x{sizes.doc_tokens}-seed{context.config.seed}.jsonl"
    if not path.is_file():
        logger.info("generating %d documents of ~%d tokens", sizes.documents, sizes.doc_tokens)
        generate(
            GenerateConfig(
                output=str(path.with_suffix(".tmp.jsonl")),
                num_records=sizes.documents,
                doc_tokens_min=int(sizes.doc_tokens * 0.8),
                doc_tokens_max=int(sizes.doc_tokens * 1.2),
                seed=context.config.seed,
            )
        )
        path.with_suffix(".tmp.jsonl").rename(path)
    return path


def naive_prepare(path: Path, tokenizer: Any, bounds: list[int]) -> dict[int | None, int]:
    """One record at a time: parse, render, tokenise alone, bucket. Returns rows per phase."""
    counts: dict[int | None, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            prompt = chat_prompt(tokenizer, record["context"], record["question"])
            tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            phase = assign_phase(tokens, bounds)
            counts[phase] = counts.get(phase, 0) + 1
    return counts


def phase_bounds(prompt_tokens: list[int]) -> list[int]:
    """Two curriculum phases split at the median prompt length, so that neither is empty
    (data preparation refuses an empty phase), whatever the tokenizer's template adds."""
    ordered = sorted(prompt_tokens)
    return [ordered[(len(ordered) - 1) // 2], ordered[-1] * 2]


def tokenise_one_by_one(tokenizer: Any, prompts: list[str]) -> list[int]:
    return [len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for prompt in prompts]


def run(context: BenchContext) -> BenchmarkResult:
    sizes = SIZES[context.config.size]
    source = documents_file(context, sizes)
    tokenizer = load_tokenizer(str(context.tiny_model))
    prompts = [
        chat_prompt(tokenizer, r["context"], r["question"])
        for r in map(json.loads, source.read_text(encoding="utf-8").splitlines())
    ]
    bounds = phase_bounds(measure_prompt_tokens(tokenizer, prompts, 64))
    work = context.work("data_prep")
    stats: dict[str, Any] = {}

    def prepared(index: int) -> None:
        config = PrepareConfig(
            inputs=[str(source)],
            output_dir=str(work / f"prepared-{index}"),
            tokenizer=str(context.tiny_model),
            phase_max_tokens=bounds,
            on_bad_row="skip",
        )
        stats.update(prepare(config, tokenizer=tokenizer))

    value, baseline = timed_pairs(
        prepared, lambda _: naive_prepare(source, tokenizer, bounds), context.config.repeats, "prepare"
    )
    records = len(prompts)
    batched, single = timed_pairs(
        lambda _: measure_prompt_tokens(tokenizer, prompts, PrepareConfig.model_fields["batch_size"].default),
        lambda _: tokenise_one_by_one(tokenizer, prompts),
        context.config.repeats,
        "tokenise",
    )
    mean_tokens = stats.get("prompt_tokens", {}).get("mean", 0.0)
    return BenchmarkResult(
        figures=[
            figure(
                "prepare/end_to_end",
                "records/s",
                rates(records, value),
                rates(records, baseline),
                baseline_name="naive loop (one record at a time, no writes)",
                note=f"{records} documents, prompts of {mean_tokens:,.0f} tokens on average (tiny model's tokenizer)",
            ),
            figure(
                "prepare/tokenise",
                "prompts/s",
                rates(len(prompts), batched),
                rates(len(prompts), single),
                baseline_name="tokenise one prompt at a time",
            ),
        ],
        details={
            "documents": records,
            "prompt_tokens_total": int(mean_tokens * records),
            "prompt_tokens": stats.get("prompt_tokens"),
            "phase_rows": [p["train_rows"] for p in stats.get("phases", [])],
        },
    )
