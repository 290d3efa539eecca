import pytest
import torch
from transformers import AutoModelForCausalLM

from longrl.tiny_model import TinyModelConfig


def test_head_dim_below_32_is_refused() -> None:
    with pytest.raises(ValueError, match="head_dim = 16"):
        TinyModelConfig(output_dir="x", hidden_size=64, num_attention_heads=4)


def test_tokenizer_has_reasoning_tokens_and_chat_template(tiny_tokenizer) -> None:
    prompt = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    for token in ("<think>", "</think>", "<|im_end|>", "<|im_start|>"):
        assert len(tiny_tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    ids = tiny_tokenizer("<think>x</think>\n\nTherefore, the answer is 4.<|im_end|>")["input_ids"]
    assert (
        tiny_tokenizer.decode(ids, skip_special_tokens=True)
        == "<think>x</think>\n\nTherefore, the answer is 4."
    )
    assert tiny_tokenizer.eos_token == "<|im_end|>"
    assert tiny_tokenizer.is_fast


def test_model_is_qwen2_and_generates(tiny_model_dir, tiny_tokenizer) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.hidden_size // model.config.num_attention_heads >= 32
    assert model.config.vocab_size == len(tiny_tokenizer)
    inputs = tiny_tokenizer("<|im_start|>user\nHi<|im_end|>\n", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_same_seed_same_weights(tmp_path, tiny_model_dir) -> None:
    from longrl.tiny_model import build_tiny_model

    again = build_tiny_model(TinyModelConfig(output_dir=str(tmp_path / "again")))
    first = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    second = AutoModelForCausalLM.from_pretrained(again).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_copy_practice_repeats_a_span_and_targets_only_what_can_be_known() -> None:
    from longrl.tiny_model import copy_batch

    tokens, targets = copy_batch(torch.Generator().manual_seed(0), (3, 50))
    known = targets != -100
    span = int(known[0].sum()) + 1  # the repeat's first token is no target: nothing announces it
    assert torch.equal(tokens[:, :span], tokens[:, -span:])
    assert torch.equal(targets[known], tokens[known])
    assert not known[:, : -span + 1].any()
    assert ((tokens >= 3) & (tokens < 50)).all()


def test_copy_loss_is_the_full_projections_loss_on_the_repeats(tiny_model_dir) -> None:
    from longrl.tiny_model import copy_batch, copy_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokens, targets = copy_batch(torch.Generator().manual_seed(3), (3, 50))
    loss, accuracy = copy_loss(model, tokens, targets)
    logits = model(input_ids=tokens).logits[:, :-1]
    shifted = targets[:, 1:]
    full = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), shifted.reshape(-1))
    known = shifted != -100
    assert torch.allclose(loss, full, rtol=1e-5)
    assert accuracy == pytest.approx((logits.argmax(-1)[known] == shifted[known]).float().mean().item())


def test_copy_pretraining_moves_the_weights_and_reports_its_accuracy(tmp_path, tiny_model_dir) -> None:
    import json

    from longrl.tiny_model import PRETRAINING_FILE, build_tiny_model

    practised = build_tiny_model(
        TinyModelConfig(output_dir=str(tmp_path / "practised"), copy_pretraining_steps=3)
    )
    report = json.loads((practised / PRETRAINING_FILE).read_text())
    assert report["steps"] == 3 and 0 <= report["copy_accuracy"] <= 1
    first = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    second = AutoModelForCausalLM.from_pretrained(practised).state_dict()
    assert not all(torch.equal(first[k], second[k]) for k in first)
    assert not (tiny_model_dir / PRETRAINING_FILE).exists()
