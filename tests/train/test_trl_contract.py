"""Pins the TRL behaviour that dynamic sampling relies on, by running the real trainer.

DynamicSamplingGRPOTrainer wraps GRPOTrainer._generate_and_score_completions, a TRL internal:
if a TRL upgrade changes its name, arguments or output layout, these tests fail first.
"""

import inspect

import datasets
import pytest
import trl
from trl import GRPOConfig, GRPOTrainer

from longrl.train.dynamic_sampling import SUPPORTED_KEYS, TRL_VERSION, DynamicSamplingGRPOTrainer

GROUP = 4


def test_trl_is_the_pinned_version() -> None:
    assert trl.__version__ == TRL_VERSION, (
        f"TRL {trl.__version__} is installed but dynamic sampling was written against {TRL_VERSION}: "
        "re-check GRPOTrainer._generate_and_score_completions and update TRL_VERSION"
    )


def test_wrapped_method_exists_with_the_expected_signature() -> None:
    method = GRPOTrainer._generate_and_score_completions
    assert list(inspect.signature(method).parameters) == ["self", "inputs"]


def reward_half_degenerate(completions, id, **_):  # noqa: A002
    # Prompts "even-*" always score 1 (a degenerate group); "odd-*" score by length parity.
    return [1.0 if i.startswith("even") else float(len(c) % 2) for i, c in zip(id, completions, strict=True)]


class Capturing(DynamicSamplingGRPOTrainer):
    batches: list = []

    def _generate_and_score_completions(self, inputs):
        batch = super()._generate_and_score_completions(inputs)
        if self.model.training:
            Capturing.batches.append(batch)
        return batch


@pytest.fixture
def trainer(tiny_model_dir, tmp_path):
    rows = [
        {
            "id": f"{'even' if i % 2 == 0 else 'odd'}-{i}",
            "prompt": f"<|im_start|>user\nSay {i}<|im_end|>\n<|im_start|>assistant\n",
        }
        for i in range(16)
    ]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        num_generations=GROUP,
        max_completion_length=12,
        max_steps=2,
        learning_rate=1e-4,
        beta=0.0,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        temperature=1.0,
        remove_unused_columns=False,
        seed=0,
    )
    Capturing.batches = []
    return Capturing(
        model=str(tiny_model_dir),
        reward_funcs=[reward_half_degenerate],
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        dynamic_sampling=True,
        generation_batch_prompts=4,
        max_generation_rounds=4,
    )


@pytest.mark.slow
def test_batches_hold_whole_informative_groups(trainer) -> None:
    trainer.train()
    assert len(Capturing.batches) == 2
    for batch in Capturing.batches:
        assert set(batch) <= SUPPORTED_KEYS, "TRL's rollout output has fields dynamic sampling cannot merge"
        assert {"prompt_ids", "completion_ids", "completion_mask", "advantages", "num_items_in_batch"} <= set(
            batch
        )
        assert batch["advantages"].shape == (8,)  # exactly the step's 2 groups of 4
        assert batch["completion_ids"].shape[0] == 8
        assert batch["num_items_in_batch"].item() == batch["completion_mask"].sum().item()
    logs = [entry for entry in trainer.state.log_history if "dynamic_sampling/rounds" in entry]
    assert len(logs) == 2
    for entry, batch in zip(logs, Capturing.batches, strict=True):
        informative = int((batch["advantages"].view(-1, GROUP).abs() > 1e-6).any(dim=1).sum())
        # every group is informative, except those topped up when the rounds ran out
        assert informative + entry["dynamic_sampling/filled_uninformative"] == 2
        assert entry["dynamic_sampling/dropped_fraction"] > 0  # the "even" groups were dropped


@pytest.mark.slow
def test_degenerate_groups_have_exactly_zero_advantage(trainer) -> None:
    trainer.dynamic_sampling = False  # plain TRL: see what it hands over for a degenerate group
    trainer.train()
    for batch in Capturing.batches:
        for group in batch["advantages"].view(-1, GROUP):
            assert group.abs().max() < 1e-6 or group.abs().max() > 0.1


def test_on_cpu_the_fused_lm_head_projects_only_labelled_positions_and_computes_the_same(
    tiny_model_dir, monkeypatch
) -> None:
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.kernels import ChunkedLogProbFunction, chunked_logprob
    from trl.trainer.utils import add_fused_lm_head

    from longrl.train.common import compact_fused_lm_head_on_cpu

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(10, 200, (2, 40), generator=torch.Generator().manual_seed(0))
    labels = torch.full_like(ids, -100)
    labels[:, -5:] = ids[:, -5:]  # a long prompt, a short answer: 10 labelled next tokens of 78
    projected = []
    apply = ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        projected.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(ChunkedLogProbFunction, "apply", counting)
    # as TRL ships it, whether or not a training step in this process already compacted it (undone after)
    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)
    with torch.no_grad():
        everywhere = model(input_ids=ids, labels=labels, fused_lm_head=True)
        compact_fused_lm_head_on_cpu()
        compacted = model(input_ids=ids, labels=labels, fused_lm_head=True)
    assert projected == [78, 10]
    for field in ("loss", "log_probs", "entropy", "is_top1"):
        torch.testing.assert_close(getattr(compacted, field), getattr(everywhere, field))
