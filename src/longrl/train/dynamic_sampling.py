"""DAPO's dynamic sampling on top of TRL's GRPOTrainer.

A group whose responses all earned the same reward has zero advantage everywhere and teaches
nothing. DAPO drops such groups and generates more prompts until the batch is full of
informative ones. TRL (pinned: see ``TRL_VERSION``) generates exactly one batch per step, so
``DynamicSamplingGRPOTrainer`` wraps the method that generates and scores a batch: it calls it
again on freshly drawn prompts until enough groups are informative or ``max_generation_rounds``
is reached, then keeps exactly the number of groups the step expects (topping up with
uninformative ones, which carry zero advantage, if the rounds ran out). The wrapped method's
output layout is a TRL internal; ``tests/train/test_trl_contract.py`` pins it.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from trl import GRPOTrainer

TRL_VERSION = "1.16.0"

# How each tensor in TRL's generation output is laid out, so rounds can be concatenated.
_LEFT_PADDED = {"prompt_ids": "pad", "prompt_mask": 0}
_RIGHT_PADDED = {
    "completion_ids": "pad",
    "completion_mask": 0,
    "old_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "importance_sampling_ratio": 1.0,
    "tool_mask": 1,
}
_PER_ROW = {"advantages"}
_RECOMPUTED = {"num_items_in_batch"}
SUPPORTED_KEYS = frozenset(_LEFT_PADDED) | frozenset(_RIGHT_PADDED) | _PER_ROW | _RECOMPUTED
# |advantage| below this counts as zero: equal rewards give (r - mean) / (std + 1e-4) ~ 1e-12.
_ZERO_ADVANTAGE = 1e-6


def informative_groups(advantages: torch.Tensor, group_size: int) -> torch.Tensor:
    """One bool per group: whether any of its responses has a non-zero advantage."""
    return (advantages.view(-1, group_size).abs() > _ZERO_ADVANTAGE).any(dim=1)


def _pad_to(tensor: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    missing = width - tensor.size(1)
    if missing <= 0:
        return tensor
    padding = torch.full((tensor.size(0), missing), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([padding, tensor] if left else [tensor, padding], dim=1)


def concat_rollouts(outputs: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Concatenates the outputs of several generation rounds along the batch dimension."""
    keys = set(outputs[0])
    unsupported = keys - SUPPORTED_KEYS
    if unsupported:
        raise NotImplementedError(f"dynamic sampling cannot merge rollout fields {sorted(unsupported)}")
    merged: dict[str, Any] = {}
    for key in keys - _RECOMPUTED:
        tensors = [output[key] for output in outputs]
        if key in _PER_ROW or tensors[0].dim() == 1:
            merged[key] = torch.cat(tensors)
            continue
        left = key in _LEFT_PADDED
        value = (_LEFT_PADDED if left else _RIGHT_PADDED)[key]
        value = pad_token_id if value == "pad" else value
        width = max(t.size(1) for t in tensors)
        merged[key] = torch.cat([_pad_to(t, width, value, left) for t in tensors])
    return merged


def choose_groups(informative: torch.Tensor, wanted: int) -> tuple[torch.Tensor, int]:
    """Indices of ``wanted`` groups, informative ones first in generation order; and how many are not."""
    good = torch.nonzero(informative).flatten()
    bad = torch.nonzero(~informative).flatten()
    chosen = torch.cat([good[:wanted], bad[: max(0, wanted - good.numel())]])
    return torch.sort(chosen).values, int(max(0, wanted - good.numel()))


class DynamicSamplingGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that fills each batch with informative groups (DAPO dynamic sampling)."""

    def __init__(
        self,
        *args: Any,
        dynamic_sampling: bool = True,
        generation_batch_prompts: int | None = None,
        max_generation_rounds: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling
        self.generation_batch_prompts = generation_batch_prompts
        self.max_generation_rounds = max_generation_rounds
        self._refill_rng = random.Random(self.args.seed * 1_000_003 + self.accelerator.process_index)

    def _draw_prompts(self, groups: int) -> list[dict[str, Any]]:
        """Fresh prompts from the training set, each repeated for a whole group."""
        dataset = self.train_dataset
        picks = [self._refill_rng.randrange(len(dataset)) for _ in range(groups)]
        return [dict(dataset[i]) for i in picks for _ in range(self.num_generations)]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not (self.dynamic_sampling and self.model.training):
            return super()._generate_and_score_completions(inputs)
        group_size = self.num_generations
        wanted = len(inputs) // group_size
        per_round = max(
            wanted, math.ceil((self.generation_batch_prompts or 0) / self.accelerator.num_processes)
        )
        batch = list(inputs) + self._draw_prompts(per_round - wanted)
        outputs, informative = [], []
        for _ in range(self.max_generation_rounds):
            output = super()._generate_and_score_completions(batch)
            outputs.append(output)
            informative.append(informative_groups(output["advantages"], group_size))
            found = torch.tensor(
                [float(sum(int(m.sum()) for m in informative))], device=self.accelerator.device
            )
            if self.accelerator.gather(found).min().item() >= wanted:  # every rank has enough
                break
            batch = self._draw_prompts(per_round)
        merged = concat_rollouts(outputs, self._tokenizer.pad_token_id)
        groups, filled = choose_groups(torch.cat(informative), wanted)
        rows = (
            (groups.unsqueeze(1) * group_size + torch.arange(group_size))
            .flatten()
            .to(merged["advantages"].device)
        )
        selected = {key: value.index_select(0, rows) for key, value in merged.items()}
        loss_mask = selected["completion_mask"] * selected.get("tool_mask", 1)
        selected["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()

        generated = sum(m.numel() for m in informative)
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/rounds"].append(float(len(outputs)))
        metrics["dynamic_sampling/dropped_fraction"].append(
            1.0 - sum(int(m.sum()) for m in informative) / generated
        )
        metrics["dynamic_sampling/filled_uninformative"].append(float(filled))
        return selected
