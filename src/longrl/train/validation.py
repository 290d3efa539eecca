"""Validation accuracy of a checkpoint: greedy answers to held-out prompts, scored by the reward.

At the end of a step the saved Hugging Face directory is scored, never the model inside the trainer:
under ZeRO-3 its parameters are spread over every rank and rank 0 alone cannot run it (generating
from it on one rank hangs). ``score_saved_model`` loads the saved model fresh, with transformers
(CPU, or a GPU without vLLM) or with vLLM's offline engine (GPU, tensor parallel over the node's
GPUs). vLLM runs in a child process (``python -m longrl.train.validation``) so that its engine, its
worker processes and its GPU memory are gone when scoring ends, and the trainer's process group and
TRL's colocated rollout engine are left alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from longrl.rewards import HybridReward

logger = logging.getLogger(__name__)

# torch.distributed's variables of the training process: the vLLM child must not join that job.
_TRAINER_DISTRIBUTED_ENV = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
)


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


def score_completions(
    rows: list[dict[str, Any]], completions: list[str], tokenizer: Any, reward: HybridReward | None = None
) -> dict[str, float]:
    """Accuracy (mean hybrid reward), answer rate and mean length of the completions of validation rows."""
    reward = reward or HybridReward(judge=None)
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


def validation_metrics(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    max_new_tokens: int,
    reward: HybridReward | None = None,
) -> dict[str, float]:
    """Scores a model already in memory (transformers ``generate``) on validation rows."""
    if not rows:
        return {}
    completions = generate_greedy(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens)
    return score_completions(rows, completions, tokenizer, reward)


def vllm_completions(
    model_dir: str | Path,
    prompts: list[str],
    max_new_tokens: int,
    tensor_parallel: int = 1,
    memory_fraction: float = 0.5,
) -> list[str]:
    """Greedy completions from vLLM's offline engine in a child process (its GPUs released after)."""
    with tempfile.TemporaryDirectory(prefix="longrl-validation-") as scratch:
        request = Path(scratch) / "request.json"
        reply = Path(scratch) / "completions.json"
        request.write_text(
            json.dumps(
                {
                    "model_dir": str(model_dir),
                    "prompts": prompts,
                    "max_new_tokens": max_new_tokens,
                    "tensor_parallel": tensor_parallel,
                    "memory_fraction": memory_fraction,
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if k not in _TRAINER_DISTRIBUTED_ENV}
        command = [sys.executable, "-m", "longrl.train.validation", str(request), str(reply)]
        code = subprocess.run(command, env=env, check=False).returncode
        if code != 0:
            raise RuntimeError(
                f"validation with vLLM on {model_dir} failed (exit status {code}; its log is above). "
                "Set validation_max_examples=0 to skip validation, or train without ray.use_gpu to "
                "score with transformers"
            )
        return json.loads(reply.read_text())


def _generate_with_vllm(request: dict[str, Any]) -> list[str]:
    """Runs in the child process: one vLLM engine, all prompts in one call, greedy."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(request["model_dir"])
    token_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in request["prompts"]]
    tensor_parallel = request["tensor_parallel"]
    llm = LLM(
        model=request["model_dir"],
        tensor_parallel_size=tensor_parallel,
        # processes of its own on the visible GPUs, not Ray's placement group of the training workers
        distributed_executor_backend="mp" if tensor_parallel > 1 else None,
        gpu_memory_utilization=request["memory_fraction"],
        max_model_len=max(map(len, token_ids)) + request["max_new_tokens"],
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=request["max_new_tokens"], skip_special_tokens=True)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in token_ids], params)
    return [output.outputs[0].text for output in outputs]


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def score_saved_model(
    model_dir: str | Path,
    rows: list[dict[str, Any]],
    max_new_tokens: int,
    *,
    engine: str = "transformers",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    tensor_parallel: int = 1,
    memory_fraction: float = 0.5,
    reward: HybridReward | None = None,
) -> dict[str, float]:
    """Loads the saved Hugging Face directory fresh and scores it on validation rows.

    ``engine``: ``transformers`` (on ``device``) or ``vllm`` (``tensor_parallel`` GPUs, at most
    ``memory_fraction`` of each).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not rows:
        return {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [r["prompt"] for r in rows]
    logger.info("validating %s on %d examples with %s", model_dir, len(rows), engine)
    if engine == "vllm":
        completions = vllm_completions(model_dir, prompts, max_new_tokens, tensor_parallel, memory_fraction)
    elif engine == "transformers":
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
        completions = generate_greedy(model, tokenizer, prompts, max_new_tokens)
        del model
    else:
        raise ValueError(f"unknown validation engine {engine!r}: transformers or vllm")
    return score_completions(rows, completions, tokenizer, reward)


def main(argv: list[str] | None = None) -> int:
    """``python -m longrl.train.validation REQUEST.json REPLY.json``: the vLLM child process."""
    request_file, reply_file = argv if argv is not None else sys.argv[1:]
    completions = _generate_with_vllm(json.loads(Path(request_file).read_text()))
    Path(reply_file).write_text(json.dumps(completions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
