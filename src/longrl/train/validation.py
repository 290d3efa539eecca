"""Validation accuracy of a checkpoint: greedy answers to held-out prompts, scored by the reward."""

from __future__ import annotations

import asyncio
from typing import Any

import torch
from tqdm.auto import tqdm

from longrl.rewards import HybridReward


def generate_greedy(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int = 16
) -> list[str]:
    """Greedy completions with transformers (left-padded batches); special tokens dropped, </think> kept."""
    tokenizer.padding_side = "left"
    completions: list[str] = []
    model.eval()
    for start in tqdm(range(0, len(prompts), batch_size), desc="validation", unit="batch", mininterval=5.0):
        batch = prompts[start : start + batch_size]
        inputs = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(
            model.device
        )
        with torch.no_grad():
            output = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        completions.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return completions


def validation_metrics(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    max_new_tokens: int,
    reward: HybridReward | None = None,
) -> dict[str, float]:
    """Accuracy (mean hybrid reward), answer rate and mean length on validation rows."""
    if not rows:
        return {}
    reward = reward or HybridReward(judge=None)
    completions = generate_greedy(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens)
    scored = asyncio.run(
        reward.score_batch(
            [r["data_source"] for r in rows],
            completions,
            [r["answer"] for r in rows],
            [r["question"] for r in rows],
        )
    )
    lengths = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in completions]
    return {
        "val/accuracy": sum(s.hybrid for s in scored) / len(scored),
        "val/rule_accuracy": sum(s.rule for s in scored) / len(scored),
        "val/answered": sum(s.prediction is not None for s in scored) / len(scored),
        "val/mean_response_tokens": sum(lengths) / len(lengths),
        "val/examples": float(len(rows)),
    }
