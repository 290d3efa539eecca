"""A tiny Qwen2-architecture reasoning model, built locally: tokenizer trained here, weights random.

Nothing can be downloaded, so tests, ``make run`` and CPU benchmarks use this model. It has the
real architecture (what vLLM and TRL load for Qwen2.5/QwQ-style models), a byte-level BPE
tokenizer trained on generated documents, and a ChatML chat template whose generation prompt
opens ``<think>`` as reasoning models' templates do. ``<think>``/``</think>`` are single,
non-special tokens so they survive ``skip_special_tokens`` decoding. vLLM's CPU backend rejects
attention heads narrower than 32, so ``head_dim`` is at least 32.

Random weights cannot copy text from their context, and the tasks here (a founder's name out of a
document, an answer rewritten in another form) are all copying. ``copy_pretraining_steps`` gives the
model what pretraining gives a real LLM first: in-context copying (induction heads). It learns to
continue a span of random tokens that it saw earlier in the sequence; its accuracy at that jumps
from ~0 to ~1 within about a thousand steps (~1 minute on two cores for the learner shape), and the
model then learns to answer from a document in a few hundred fine-tuning steps instead of never.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from longrl.data.prompts import user_prompt
from longrl.data.synthetic import GenerateConfig, generate_records
from longrl.rewards.judge import judge_messages

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
REASONING_TOKENS = ("<think>", "</think>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}"
)
# Qwen2's pre-tokenisation: words with a leading space, single digits, punctuation runs, new lines.
_QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


# A shape that learns the synthetic tasks in minutes on a CPU (the defaults are smaller still, for
# tests that only need a model that runs).
LEARNER_SHAPE = {
    "hidden_size": 128,
    "num_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "intermediate_size": 512,
}


class TinyModelConfig(BaseModel):
    """Build a tiny random-weight Qwen2 model and its locally trained tokenizer."""

    output_dir: str = Field(description="Directory to save the model and tokenizer (Hugging Face format)")
    vocab_size: int = Field(2048, ge=512, description="Target vocabulary size of the BPE tokenizer")
    hidden_size: int = Field(64, ge=32, description="Model width")
    num_layers: int = Field(2, ge=1, description="Transformer layers")
    num_attention_heads: int = Field(
        2, ge=1, description="Attention heads (head_dim = hidden_size / heads >= 32)"
    )
    num_key_value_heads: int = Field(1, ge=1, description="Key/value heads (grouped-query attention)")
    intermediate_size: int = Field(256, ge=1, description="MLP width")
    max_position_embeddings: int = Field(32_768, ge=512, description="Longest sequence the model accepts")
    tokenizer_corpus_records: int = Field(
        300, ge=10, description="Generated records the tokenizer is trained on"
    )
    seed: int = Field(0, description="Seed of the weights and of the tokenizer corpus")
    copy_pretraining_steps: int = Field(
        0,
        ge=0,
        description="Steps of in-context copying practice (random token spans to repeat) before saving; "
        "0 keeps the random weights",
    )

    @model_validator(mode="after")
    def _heads_fit(self) -> TinyModelConfig:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.hidden_size // self.num_attention_heads < 32:
            raise ValueError(
                f"head_dim = {self.hidden_size // self.num_attention_heads} < 32, which vLLM's CPU backend rejects"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")
        return self


def _corpus(config: TinyModelConfig):
    """Text like what the model will see: generated documents, prompts, reasoning, judge prompts."""
    records = GenerateConfig(
        output="-",
        num_records=config.tokenizer_corpus_records,
        doc_tokens_min=64,
        doc_tokens_max=400,
        sft=True,
        seed=config.seed,
    )
    for record in generate_records(records):
        yield "system user assistant"  # the chat roles, so they become single tokens
        yield user_prompt(record["context"], record["question"])
        yield record["response"]
        for message in judge_messages(record["question"], record["answer"], record["answer"]):
            yield message["content"]


def train_tokenizer(config: TinyModelConfig):
    """A byte-level BPE tokenizer with Qwen2's pre-tokenisation and ChatML special tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(config), trainer=trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TOKENS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=config.max_position_embeddings,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


PRETRAINING_FILE = "pretraining.json"
_COPY_BATCH = 32
_COPY_SPAN = (4, 24)  # tokens in the span to repeat
_COPY_GAP = 16  # at most this many other tokens between the span and its repeat
_COPY_LEARNING_RATE = 1e-3


def copy_batch(generator, vocab: tuple[int, int]):
    """(tokens, targets): random spans, a random gap, the span again; only the repeat is a target (its
    first token cannot be known, so the targets start at its second)."""
    import torch

    span = int(torch.randint(*_COPY_SPAN, (1,), generator=generator))
    gap = int(torch.randint(0, _COPY_GAP, (1,), generator=generator))
    first = torch.randint(*vocab, (_COPY_BATCH, span), generator=generator)
    between = torch.randint(*vocab, (_COPY_BATCH, gap), generator=generator)
    tokens = torch.cat([first, between, first], dim=1)
    targets = torch.full_like(tokens, -100)
    targets[:, -span + 1 :] = tokens[:, -span + 1 :]
    return tokens, targets


def copy_loss(model, tokens, targets):
    """(next-token cross-entropy on the repeats, the share of them predicted right). The LM head runs only
    where a repeat is predicted, a third of the positions: the loss of projecting every position and
    ignoring the rest, in a step ~35% shorter."""
    import torch

    shifted = targets[:, 1:]
    known = shifted != -100
    logits = model.lm_head(model.model(input_ids=tokens).last_hidden_state[:, :-1][known])
    loss = torch.nn.functional.cross_entropy(logits, shifted[known])
    return loss, (logits.detach().argmax(-1) == shifted[known]).float().mean().item()


def pretrain_copying(model, vocab: tuple[int, int], steps: int, seed: int) -> dict[str, float]:
    """Trains ``model`` to continue repeated spans; returns its copy accuracy over the last steps."""
    import collections
    import time

    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=_COPY_LEARNING_RATE, weight_decay=0.0)
    started, recent = time.monotonic(), collections.deque(maxlen=50)
    model.train()
    for _ in range(steps):
        loss, accuracy = copy_loss(model, *copy_batch(generator, vocab))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        recent.append(accuracy)
    model.eval()
    return {
        "steps": steps,
        "copy_accuracy": round(sum(recent) / len(recent), 4) if recent else 0.0,
        "seconds": round(time.monotonic() - started, 1),
    }


def build_tiny_model(config: TinyModelConfig) -> Path:
    """Trains the tokenizer, initialises the model from a seed, saves both; returns the directory."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer(config)
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_ids[0],
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(config.seed)
    model = Qwen2ForCausalLM(model_config)
    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.copy_pretraining_steps:
        # Ordinary text tokens only: the special and reasoning tokens keep their roles.
        vocab = (len(SPECIAL_TOKENS), tokenizer.vocab_size)
        report = pretrain_copying(model, vocab, config.copy_pretraining_steps, config.seed)
        (out / PRETRAINING_FILE).write_text(json.dumps(report, indent=2) + "\n")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
