"""RL step throughput and peak GPU memory at long prompts, for a Qwen2-1.5B-sized model (GPU only).

A random-initialised model with Qwen2-1.5B's shape takes RL-like training steps on one sequence of
prompt + completion tokens, in the trl engine's unsharded precision (fp32 weights and AdamW states,
bf16 autocast): forward, a token-level loss over the completion only (the cost of GRPO's
policy-gradient loss, which weights the same log-probabilities by advantages), backward and an
AdamW step. Each prompt length (8K, 20K, 60K tokens) is tried with and without
gradient checkpointing, and with and without Liger's fused linear cross-entropy (the logits of
the completion are never materialised) when ``liger_kernel`` imports. Peak memory is
``torch.cuda.max_memory_allocated``; an out-of-memory step marks that length and every longer one
as not fitting. Baseline of the throughput and memory figures: the plain variant (no checkpointing,
unfused loss).

``planner/...`` figures put the placement planner's prediction for the same step (``longrl.plan``:
engine trl, one GPU, no sharding, the training phase) over the measured peak, so the first GPU run
calibrates the planner: a ratio of 1.0 is a perfect prediction, above 1 a conservative one.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import time
from collections.abc import Callable, Sequence
from typing import Any

from longrl.bench.core import BenchContext, Skip, logger
from longrl.bench.report import BenchmarkResult, Figure, figure

LENGTHS = (8_192, 20_480, 61_440)
PLAIN = "plain"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    checkpointing: bool
    fused_loss: bool


VARIANTS = (
    Variant(PLAIN, checkpointing=False, fused_loss=False),
    Variant("checkpointing", checkpointing=True, fused_loss=False),
    Variant("liger_fused_loss", checkpointing=False, fused_loss=True),
    Variant("checkpointing+liger", checkpointing=True, fused_loss=True),
)


@dataclasses.dataclass(frozen=True)
class Sizes:
    completion_tokens: int
    lengths: tuple[int, ...]


SIZES = {"small": Sizes(completion_tokens=512, lengths=LENGTHS), "full": Sizes(2_048, LENGTHS)}


def qwen2_1_5b_config() -> Any:
    """Qwen2-1.5B's shape (28 layers, width 1536, GQA 12/2 heads, 152K vocabulary), long positions."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=151_936,
        hidden_size=1_536,
        intermediate_size=8_960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=131_072,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        use_cache=False,
    )


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclasses.dataclass
class StepResult:
    fits: bool
    seconds: list[float] = dataclasses.field(default_factory=list)
    peak_gib: float | None = None


class Stepper:
    """One model and optimizer; ``step`` runs a training step of a given length and variant."""

    def __init__(self, model_config: Any, device: str, autocast_dtype: Any = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.device = device
        self.autocast_dtype = autocast_dtype
        with torch.device(device):
            self.model = AutoModelForCausalLM.from_config(
                model_config, dtype=torch.float32, attn_implementation="sdpa"
            )
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-6)
        self.vocab = model_config.vocab_size

    def _loss(self, ids: Any, completion: int, fused: bool) -> Any:
        import torch.nn.functional as F  # noqa: N812

        hidden = self.model.model(input_ids=ids).last_hidden_state[:, -completion - 1 : -1]
        targets = ids[:, -completion:].reshape(-1)
        hidden = hidden.reshape(-1, hidden.size(-1))
        if fused:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            return LigerFusedLinearCrossEntropyLoss()(self.model.lm_head.weight, hidden, targets)
        return F.cross_entropy(self.model.lm_head(hidden).float(), targets)

    def step(self, variant: Variant, prompt: int, completion: int) -> None:
        import torch

        if variant.checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.model.gradient_checkpointing_disable()
        ids = torch.randint(0, self.vocab, (1, prompt + completion), device=self.device)
        enabled = self.autocast_dtype is not None
        with torch.autocast(self.device, dtype=self.autocast_dtype, enabled=enabled):
            loss = self._loss(ids, completion, variant.fused_loss)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def release(self) -> None:
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def measure(step: Callable[[], None], repeats: int, release: Callable[[], None]) -> StepResult:
    """A warm-up step, then ``repeats`` timed ones; an out-of-memory error means it does not fit."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        step()
        timings = []
        for _ in range(repeats):
            _synchronize()
            started = time.perf_counter()
            step()
            _synchronize()
            timings.append(time.perf_counter() - started)
    except Exception as exc:
        if not is_oom(exc):
            raise
        release()
        return StepResult(fits=False)
    result = StepResult(fits=True, seconds=timings, peak_gib=_peak_gib())
    release()
    return result


def measure_grid(
    stepper: Stepper, variants: Sequence[Variant], lengths: Sequence[int], completion: int, repeats: int
) -> dict[str, dict[int, StepResult]]:
    """Every variant at ascending lengths, stopping a variant at its first length that does not fit."""
    grid: dict[str, dict[int, StepResult]] = {}
    for variant in variants:
        grid[variant.name] = {}
        for length in sorted(lengths):
            logger.info("gpu_memory: %s at %d prompt tokens", variant.name, length)
            result = measure(
                lambda v=variant, n=length: stepper.step(v, n, completion), repeats, stepper.release
            )
            grid[variant.name][length] = result
            if not result.fits:
                break
    return grid


def largest_fitting(results: dict[int, StepResult]) -> int:
    """The longest prompt that fitted (0 if none did)."""
    return max((length for length, r in results.items() if r.fits), default=0)


def grid_figures(grid: dict[str, dict[int, StepResult]], completion: int) -> list[Figure]:
    figures = []
    plain = grid.get(PLAIN, {})
    for name, results in grid.items():
        for length, result in results.items():
            if not result.fits:
                continue
            base = plain.get(length)
            base_fits = base is not None and base.fits
            tokens = length + completion
            figures.append(
                figure(
                    f"{length // 1024}k/{name}/tokens_per_s",
                    "tokens/s",
                    [tokens / s for s in result.seconds],
                    [tokens / s for s in base.seconds] if base_fits and base else None,
                    baseline_name=PLAIN if base_fits else "plain did not fit",
                )
            )
            if result.peak_gib is not None:
                figures.append(
                    figure(
                        f"{length // 1024}k/{name}/peak_memory",
                        "GiB",
                        [result.peak_gib],
                        [base.peak_gib] if base_fits and base and base.peak_gib else None,
                        baseline_name=PLAIN if base_fits else "plain did not fit",
                        better="lower",
                    )
                )
        figures.append(
            figure(
                f"{name}/largest_prompt",
                "tokens",
                [largest_fitting(results)],
                [largest_fitting(plain)] if largest_fitting(plain) else None,
                baseline_name=PLAIN,
                note=f"of {', '.join(str(n) for n in sorted(results))} tried",
            )
        )
    return figures


def planner_prediction(variant: Variant, prompt: int, completion: int, gpu_memory_gib: float) -> float:
    """The planner's training-phase GiB for this step: trl engine, one GPU, unsharded."""
    from longrl.plan import Hardware, ModelShape, Parallelism, Workload, estimate

    result = estimate(
        ModelShape.from_config(qwen2_1_5b_config().to_dict(), name="Qwen2-1.5B shape"),
        Workload(kind="rl", prompt_tokens=prompt, response_tokens=completion),
        Hardware(nodes=1, gpus_per_node=1, gpu_memory_gib=gpu_memory_gib),
        "trl",
        Parallelism(
            sharding="ddp", gradient_checkpointing=variant.checkpointing, fused_loss=variant.fused_loss
        ),
    )
    return result.training_gib


def planner_figures(
    grid: dict[str, dict[int, StepResult]], completion: int, gpu_memory_gib: float
) -> list[Figure]:
    """Predicted over measured peak memory for every step that fitted."""
    figures = []
    for variant in VARIANTS:
        for length, result in grid.get(variant.name, {}).items():
            if result.fits and result.peak_gib:
                predicted = planner_prediction(variant, length, completion, gpu_memory_gib)
                figures.append(
                    figure(
                        f"planner/{length // 1024}k/{variant.name}/predicted_peak",
                        "GiB",
                        [predicted],
                        [result.peak_gib],
                        baseline_name="measured peak",
                        better="lower",
                        note="ratio = planner / measured (1.0: exact, > 1: conservative)",
                    )
                )
    return figures


def grid_details(grid: dict[str, dict[int, StepResult]]) -> dict[str, Any]:
    return {
        name: {str(length): dataclasses.asdict(r) for length, r in results.items()}
        for name, results in grid.items()
    }


def run(context: BenchContext) -> BenchmarkResult:
    import torch

    if not torch.cuda.is_available():
        raise Skip("no CUDA GPU on this machine (torch.cuda.is_available() is False)")
    sizes = SIZES[context.config.size]
    variants = [v for v in VARIANTS if not v.fused_loss or liger_available()]
    stepper = Stepper(qwen2_1_5b_config(), "cuda", torch.bfloat16)
    grid = measure_grid(stepper, variants, sizes.lengths, sizes.completion_tokens, context.config.repeats)
    gpu_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    details = {
        "gpu": torch.cuda.get_device_name(0),
        "completion_tokens": sizes.completion_tokens,
        "liger": liger_available(),
        "grid": grid_details(grid),
    }
    figures = grid_figures(grid, sizes.completion_tokens) + planner_figures(
        grid, sizes.completion_tokens, gpu_gib
    )
    return BenchmarkResult(figures=figures, details=details)
