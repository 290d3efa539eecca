"""Training engines behind one small interface: what the Ray entrypoint calls to run a step.

An engine runs one step (SFT or an RL phase) in the driver process of a Ray cluster (a local Ray
on a laptop, the RayJob's cluster on Kubernetes) and returns the step's result, which it has also
written to ``output_dir/result.json``. Both engines read the same step config and leave the
same outputs behind (``model/`` as a Hugging Face directory, ``metrics.jsonl``, ``result.json``;
for RL phases ``difficulty.jsonl`` and ``train_data.parquet``), so the next phase, evaluation and
registration do not care which engine trained.

- ``trl``: TRL's SFTTrainer / GRPOTrainer under Ray Train's ``TorchTrainer``, sharded with
  DeepSpeed ZeRO-3 through accelerate (or plain DDP).
- ``verl``: verl's PPO trainer (FSDP, Ulysses sequence parallel, vLLM rollouts), for what needs
  sequence parallelism.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from longrl.train.config import TrainingConfig

Step = Literal["sft", "rl"]


class TrainingFailed(RuntimeError):
    """The step's training failed on the Ray cluster."""


class Engine(Protocol):
    name: str

    def run(self, step: Step, config: TrainingConfig) -> dict[str, Any]:
        """Trains the step on the Ray cluster this process is connected to; returns its result."""
        ...


def engine_named(name: str) -> Engine:
    if name == "trl":
        from longrl.train.engines.trl import TrlEngine

        return TrlEngine()
    if name == "verl":
        from longrl.train.engines.verl import VerlEngine

        return VerlEngine()
    raise ValueError(f"unknown engine {name!r}: trl or verl (auto is resolved by the planner before this)")
