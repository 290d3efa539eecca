"""A judge that works offline: a tiny model trained to answer the judge prompt, for local runs.

The pipeline trains it from the warm-up SFT model (with ``train_judge``): that model already copies
answers out of documents, and a judge started there needs half the steps of one started from the
untrained tiny model for the same held-out accuracy. The training data are generated equivalence
pairs (``longrl.data.judge_pairs``), each rendered exactly as the hybrid reward asks the verifier and
answered as the judge's parser reads (``train_judge``: completion-only next-token loss), after a
short practice at reading the prompt's answer blocks (``reading_practice``). Its
accuracy is then measured on held-out pairs (another seed) with the same prompt, greedy decoding
as the served judge (temperature 0) and the reward's verdict parser: an unparseable reply counts
as wrong. A judge measured good enough is served like any judge: ``vllm serve`` behind the OpenAI API.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from longrl import storage
from longrl.data.judge_pairs import (
    ANSWER_1_MEANS,
    ANSWER_2_MEANS,
    FAMILIES,
    MARK,
    JudgePair,
    judge_pairs,
    judge_training_row,
    parting_index,
)
from longrl.rewards.judge import parse_verdict
from longrl.tracking import MetricsSink, TrackingConfig, step_run

logger = logging.getLogger(__name__)

RESULT_FILE = "judge.json"
MODEL_DIR = "model"


class JudgeBuildConfig(BaseModel):
    """Train a tiny judge on equivalence pairs and measure it on held-out ones."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(
        description="The model the judge is trained from (in the pipeline: the warm-up SFT model, which already "
        "reads answers out of documents); its tokenizer renders the judge prompt"
    )
    output_dir: str = Field(description="Where the judge goes: model/ and judge.json (local or s3://)")
    shape: dict[str, int] = Field(
        default_factory=dict,
        description="Qwen2 sizes of a judge trained from a seeded initialisation with the base model's tokenizer "
        "(e.g. hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size); "
        "{} trains the base model's own weights, as SFT does the policy's",
    )
    train_pairs: int = Field(6000, ge=8, description="Generated training pairs")
    eval_pairs: int = Field(
        400,
        ge=8,
        description="Held-out pairs the accuracy is measured on (400: a standard error of ~2 points at 0.8)",
    )
    reading_steps: int = Field(
        150,
        ge=0,
        description="Steps of block-reading practice before the pairs (see reading_practice_row): copy two "
        "near-identical spans set in the prompt's <answer_1>/<answer_2> blocks, the second only up to where "
        "it parts from the first, as the reply does; 0 skips it",
    )
    max_steps: int = Field(800, ge=1, description="Optimizer steps on the pairs")
    batch_size: int = Field(32, ge=1, description="Pairs per step")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (cosine schedule)")
    seed: int = Field(0, description="Seed of the training pairs (held-out pairs use seed + 1000)")
    max_new_tokens: int = Field(64, ge=8, description="Longest reply when measuring")
    min_accuracy: float = Field(
        0.75,
        ge=0,
        le=1,
        description="A judge measured below this is not served (it would reward wrong answers): the run keeps "
        "the rule reward. The local judge measures 0.79-0.86 depending on the SFT model and its own "
        "training seed; its errors are mostly near misses accepted, while what a policy gets wrong is "
        "mostly another name or a fragment, which it rejects (0.95)",
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)


def _tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def judge_replies(
    model_dir: str | Path, pairs: list[JudgePair], max_new_tokens: int, batch: int = 32
) -> list[str]:
    """The model's greedy replies to the judge prompts of ``pairs``, decoded as the served judge's are."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer(str(model_dir))
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prompts = [judge_training_row(tokenizer, pair)["prompt"] for pair in pairs]
    replies: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch):
            encoded = tokenizer(
                prompts[start : start + batch], return_tensors="pt", padding=True, add_special_tokens=False
            )
            output = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            replies += tokenizer.batch_decode(
                output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True
            )
    return replies


def judge_accuracy(pairs: list[JudgePair], replies: list[str]) -> dict[str, Any]:
    """Share of pairs whose reply ends with the right verdict, overall, per family and per kind of pair;
    a reply without a final verdict is wrong (and counted)."""
    right: dict[str, list[bool]] = collections.defaultdict(list)
    unparseable = 0
    for pair, reply in zip(pairs, replies, strict=True):
        verdict = parse_verdict(reply)
        unparseable += verdict is None
        correct = verdict is pair.equivalent
        for key in ("all", pair.family, pair.kind):
            right[key].append(correct)
    shares = {key: sum(values) / len(values) for key, values in right.items()}
    return {
        "accuracy": shares.pop("all"),
        "pairs": len(pairs),
        "unparseable": unparseable,
        "by_kind": {key: shares[key] for key in ("equivalent", "near_miss", "unrelated") if key in shares},
        "by_family": {family: shares[family] for family in FAMILIES if family in shares},
    }


def _token_rows(tokenizer: Any, pairs: list[JudgePair]) -> tuple[list[int], list[tuple[list[int], int]]]:
    """(the prefix every prompt shares, then per pair: the rest of its prompt + reply + EOS, and where the
    reply starts in it). The shared prefix is the system prompt and the chat template's opening."""
    rows = []
    for pair in pairs:
        row = judge_training_row(tokenizer, pair)
        prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        reply = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt, reply))
    shared = min(len(prompt) for prompt, _ in rows) - 1
    first = rows[0][0]
    for prompt, _ in rows:
        shared = next((i for i in range(shared) if prompt[i] != first[i]), shared)
    return first[:shared], [(prompt[shared:] + reply, len(prompt) - shared) for prompt, reply in rows]


def _reply_loss(
    model: Any, prefix: list[int], rows: list[tuple[list[int], int]], pad_id: int
) -> tuple[Any, int]:
    """(the summed next-token loss on the replies of ``rows``, how many reply tokens it sums over). The shared
    prompt prefix is computed once and the rows continue from its key/value cache; the LM head runs only
    where a reply token is predicted."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.full((len(rows), width), -100)
    for i, (row, reply_start) in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        targets[i, reply_start - 1 : len(row) - 1] = torch.tensor(row[reply_start:])
    cache = model.model(input_ids=torch.tensor([prefix]), use_cache=True).past_key_values
    cache.batch_repeat_interleave(len(rows))
    hidden = model.model(
        input_ids=ids,
        attention_mask=torch.cat([torch.ones((len(rows), len(prefix)), dtype=torch.long), mask], dim=1),
        position_ids=torch.arange(len(prefix), len(prefix) + width).expand(len(rows), -1),
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state
    predicted = targets != -100
    logits = model.lm_head(hidden[predicted])
    return torch.nn.functional.cross_entropy(logits, targets[predicted], reduction="sum"), int(
        predicted.sum()
    )


_READING_LEARNING_RATE = 2e-3


def _reading_ids(tokenizer: Any) -> dict[str, list[int]]:
    """The token ids reading practice is built from: the judge prompt's tags, digits, ordinary tokens."""

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    special = set(tokenizer.all_special_ids)
    return {
        "prefix": ids("<|im_start|>user\n"),
        "open": ids("<answer_1>\n"),
        "between": ids("\n</answer_1>\n\n<answer_2>\n"),
        "close": ids("\n</answer_2>"),
        "ask": ids("\n" + ANSWER_1_MEANS),
        "then": ids(ANSWER_2_MEANS),
        "mark": ids(MARK),
        "digits": [ids(str(digit))[0] for digit in range(10)],
        "ordinary": [i for i in range(tokenizer.vocab_size) if i not in special],
    }


def reading_practice_row(rng: random.Random, ids: dict[str, list[int]]) -> tuple[list[int], int]:
    """(token ids, where the reply starts): two near-identical spans in the judge prompt's answer blocks,
    then the comparison the judge's reply makes, on the spans verbatim: ``Answer 1 means`` and the first
    span, ``; answer 2 means`` and the second up to where it parts from the first, marked there with ``|``.

    A span is random digits (one token each, so repeats are common, as in amounts and dates) or random
    ordinary tokens; the other block holds it with one token changed, two swapped or one dropped, and which
    block holds the original is drawn. This is the judge's weak point in isolation: most of its errors
    are near misses judged the same answer, answer 1's form written again where answer 2's should have
    been read out of its block. Practice that asked for one block alone never set that trap; here the
    second copy comes right after the first, as in the reply.
    """
    pool = ids["digits"] if rng.random() < 0.5 else ids["ordinary"]
    span = [rng.choice(pool) for _ in range(rng.randint(3, 10))]
    other, i = list(span), rng.randrange(len(span))
    how = rng.random()
    if how < 0.6:
        while other[i] == span[i]:
            other[i] = rng.choice(pool)
    elif how < 0.8 and i + 1 < len(span) and span[i] != span[i + 1]:
        other[i], other[i + 1] = other[i + 1], other[i]
    else:
        del other[i]
    first, second = (span, other) if rng.random() < 0.5 else (other, span)
    prompt = ids["open"] + first + ids["between"] + second + ids["close"] + ids["ask"]
    return prompt + first + ids["then"] + second[: parting_index(first, second)] + ids["mark"], len(prompt)


def reading_practice(model: Any, tokenizer: Any, config: JudgeBuildConfig, sink: Any) -> float:
    """``config.reading_steps`` AdamW steps on ``reading_practice_row``s (an optimizer of their own, a
    constant learning rate); returns the last loss. The rows are short: 150 steps take ~15-20 s. On 600
    held-out pairs, practice that copied one asked block took the judge from 0.823 to 0.850 (near misses
    0.65 -> 0.72); copying both, as here, measured 0.855 / 0.807 / 0.830 / 0.802 over four practice streams
    against 0.810 / 0.792 / 0.812 / 0.793 for that practice from the same SFT model (the last, 0.802, is
    the judge ``make run`` serves: seed 0 of this code)."""
    import torch

    rng = random.Random(f"longrl-judge-reading:{config.seed}")
    ids = _reading_ids(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=_READING_LEARNING_RATE, weight_decay=0.0)
    loss_value = float("nan")
    for step in range(config.reading_steps):
        rows = [reading_practice_row(rng, ids) for _ in range(config.batch_size)]
        total, count = _reply_loss(model, ids["prefix"], rows, tokenizer.pad_token_id)
        (total / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = total.item() / count
        if step % 10 == 0 or step == config.reading_steps - 1:
            sink.log({"reading/loss": loss_value}, step=step)
    return loss_value


def train_judge(
    model_dir: str, output: Path, pairs: list[JudgePair], config: JudgeBuildConfig, sink: Any
) -> dict[str, Any]:
    """Completion-only next-token training of the judge's reply, ``config.max_steps`` AdamW steps.

    Every prompt opens with the same system prompt, so each half of a batch (``_reply_loss``) computes
    that prefix once (189 tokens, against ~1,400 in the half's rows) and the pairs continue from its
    key/value cache; the LM head runs only where the reply is predicted. About 3x less work per pair
    than a plain SFT step on a CPU, for the same loss.
    """
    import math

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if config.shape:
        model_config = AutoConfig.from_pretrained(model_dir)
        for key, value in config.shape.items():
            setattr(model_config, key, value)
        model_config.head_dim = model_config.hidden_size // model_config.num_attention_heads
        model = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
        model.generation_config = GenerationConfig.from_pretrained(model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    cpu_started = time.process_time()
    reading_loss = reading_practice(model, tokenizer, config, sink) if config.reading_steps else None
    prefix, rows = _token_rows(tokenizer, pairs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    warmup = min(10, config.max_steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, config.max_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    order = torch.randperm(len(rows)).tolist()
    cursor, loss_value = 0, float("nan")
    for step in range(config.max_steps):
        if cursor + config.batch_size > len(order):
            order, cursor = torch.randperm(len(rows)).tolist(), 0
        batch = sorted(
            (rows[i] for i in order[cursor : cursor + config.batch_size]), key=lambda row: len(row[0])
        )
        cursor += config.batch_size
        # Shorter rows and longer rows go forward separately (each padded only to its own longest): a
        # quarter of a random batch's tokens were padding. The gradient is the whole batch's.
        half = (len(batch) + 1) // 2
        parts = [
            _reply_loss(model, prefix, part, tokenizer.pad_token_id)
            for part in (batch[:half], batch[half:])
            if part
        ]
        predicted = sum(count for _, count in parts)
        for total, _ in parts:
            (total / predicted).backward()
        loss = sum(total.detach() for total, _ in parts) / predicted
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if step % 10 == 0 or step == config.max_steps - 1:
            metrics = {"train/loss": loss_value, "train/learning_rate": scheduler.get_last_lr()[0]}
            sink.log({**metrics, "train/cpu_seconds": time.process_time() - cpu_started}, step=step)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return {"final_loss": loss_value, "steps": config.max_steps, "reading_loss": reading_loss}


def build_judge(config: JudgeBuildConfig) -> dict[str, Any]:
    """Trains the judge into ``output_dir/model``, measures it, writes judge.json; returns that result.

    An output that already holds a judge built from the same config is reused as it is.
    """
    fingerprint = config.model_dump(mode="json", exclude={"output_dir", "tracking", "min_accuracy"})
    result_uri = storage.join(config.output_dir, RESULT_FILE)
    if storage.exists(result_uri):
        done = json.loads(storage.read_text(result_uri))
        if done.get("config") == fingerprint:
            logger.info("the judge in %s was built from this config: reused", config.output_dir)
            return done
    local = Path(config.output_dir) if not storage.is_s3(config.output_dir) else storage.cache_dir() / "judge"
    local.mkdir(parents=True, exist_ok=True)
    base = str(storage.localize(config.base_model)) if storage.is_s3(config.base_model) else config.base_model
    pairs = list(judge_pairs(config.train_pairs, config.seed))
    with step_run(config.tracking, params=fingerprint) as run_id:
        sink = MetricsSink(local, config.tracking.model_copy(update={"run_id": run_id}))
        model_dir = local / MODEL_DIR
        started, cpu_started = time.monotonic(), time.process_time()
        trained = train_judge(base, model_dir, pairs, config, sink)
        train_seconds, train_cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
        held_out = list(judge_pairs(config.eval_pairs, config.seed + 1000))
        started = time.monotonic()
        measured = judge_accuracy(held_out, judge_replies(model_dir, held_out, config.max_new_tokens))
        result = {
            "config": fingerprint,
            "model_dir": storage.join(config.output_dir, MODEL_DIR),
            **measured,
            "train_seconds": round(train_seconds, 1),
            "train_cpu_seconds": round(train_cpu_seconds, 1),
            "measure_seconds": round(time.monotonic() - started, 1),
            "final_loss": round(trained["final_loss"], 4),
            "reading_loss": None if trained["reading_loss"] is None else round(trained["reading_loss"], 4),
        }
        logger.info(
            "judge accuracy %.3f on %d held-out pairs (%s)",
            result["accuracy"],
            result["pairs"],
            result["by_family"],
        )
        if run_id is not None:
            import mlflow

            mlflow.log_metrics(judge_metrics(result))
            mlflow.log_dict(result, RESULT_FILE)
    if storage.is_s3(config.output_dir):
        storage.copy_tree(str(model_dir), result["model_dir"])
    storage.write_text(result_uri, json.dumps(result, indent=2) + "\n")
    return result


def judge_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The measured accuracy as flat metrics (MLflow, KFP)."""
    metrics = {"judge/accuracy": result["accuracy"], "judge/unparseable": float(result["unparseable"])}
    metrics.update({f"judge/accuracy/{key}": value for key, value in result["by_kind"].items()})
    metrics.update({f"judge/accuracy/{key}": value for key, value in result["by_family"].items()})
    metrics["judge/train_seconds"] = result["train_seconds"]
    return metrics


def configured_judge(verifier_model: str, output_dir: str) -> str:
    """The pipeline's judge without ``train_judge``: ``verifier_model`` as configured, recorded in
    ``output_dir`` (judge.json) for the run's summary."""
    storage.write_text(
        storage.join(output_dir, RESULT_FILE), json.dumps({"served_model": verifier_model}) + "\n"
    )
    return verifier_model


def trained_judge(config: JudgeBuildConfig) -> tuple[str, dict[str, Any]]:
    """The pipeline's judge with ``train_judge``: (the judge ``config`` builds, or '' (nothing served) when
    it measured below ``min_accuracy``; the build's result)."""
    result = build_judge(config)
    served = result["accuracy"] >= config.min_accuracy
    storage.write_text(
        storage.join(config.output_dir, RESULT_FILE),
        json.dumps({**result, "served": served}, indent=2) + "\n",
    )
    if not served:
        logger.warning(
            "the trained judge's accuracy %.3f is below %.2f: it is not served and the run keeps the rule reward",
            result["accuracy"],
            config.min_accuracy,
        )
        return "", result
    return result["model_dir"], result
