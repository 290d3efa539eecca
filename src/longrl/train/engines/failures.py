"""Which failures of a step's Ray workers are worth another try.

Ray Train restarts a failed worker group up to ``ray.max_failures`` times, from the last checkpoint.
That is for what a retry can cure: a lost worker or node, a transient I/O or network error. A mistake
in the step's inputs, config or code (a missing file, a value our code refuses, an unknown key, a
wrong type) fails the same way every time: a retry only repeats the start-up and the traceback.
``NoRetryForMistakes`` is Ray Train's default failure policy with that distinction added; the trl
engine's trainer (``MistakeAwareTorchTrainer``) runs its controller with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ray.exceptions import RayActorError
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy
from ray.train.v2._internal.execution.failure_handling.failure_policy import FailureDecision
from ray.train.v2.api.exceptions import TrainingFailedError, WorkerGroupError

logger = logging.getLogger(__name__)

# Raised the same way on every try: bad inputs and configs (ValueError covers pydantic's
# ValidationError, JSON and Unicode errors), missing or misplaced files, errors in the code itself.
# OSError beyond these (connections, full disks, stale handles) and RuntimeError (CUDA, NCCL,
# gloo, storage) may be transient and are retried.
MISTAKES: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    ImportError,
    NotImplementedError,
    AssertionError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def is_mistake(error: BaseException) -> bool:
    """An error that a retry would only repeat."""
    return isinstance(error, MISTAKES)


def worth_retrying(failures: Mapping[int, BaseException]) -> bool:
    """Whether a worker group that failed this way may succeed on another try.

    No, when a worker raised a mistake and none was lost: the other ranks' errors are then collateral
    (a collective that lost its peer). A lost worker (its actor died, its node was preempted) makes any
    failure worth another try.
    """
    if any(isinstance(error, RayActorError) for error in failures.values()):
        return True
    return not any(is_mistake(error) for error in failures.values())


def describe(failures: Mapping[int, BaseException]) -> str:
    """One line per failed rank: its error's type and message (first line)."""
    lines = []
    for rank, error in sorted(failures.items()):
        message = str(error).strip().splitlines()
        lines.append(f"rank {rank}: {type(error).__name__}: {message[0] if message else ''}")
    return "\n".join(lines)


def failure_message(step: str, error: TrainingFailedError) -> str:
    """What the driver says when Ray Train gave up on the step."""
    if isinstance(error, WorkerGroupError) and error.worker_failures:
        failures = error.worker_failures
        verdict = (
            "not retried: a mistake in its inputs, config or code, not a lost worker"
            if not worth_retrying(failures)
            else "retries exhausted (ray.max_failures)"
        )
        return f"{step} step failed on the Ray workers ({verdict}):\n{describe(failures)}"
    return f"{step} step failed on the Ray workers: {error}"


class NoRetryForMistakes(DefaultFailurePolicy):
    """Ray Train's default policy, except that a worker group failed by a mistake is not retried."""

    def make_decision(self, training_failed_error: TrainingFailedError) -> FailureDecision:
        if isinstance(training_failed_error, WorkerGroupError) and not worth_retrying(
            training_failed_error.worker_failures
        ):
            logger.warning(
                "not retrying the worker group: its failure is a mistake a retry would repeat\n%s",
                describe(training_failed_error.worker_failures),
            )
            return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


class MistakeAwareTorchTrainer(TorchTrainer):
    """``TorchTrainer`` whose controller uses ``NoRetryForMistakes`` (Ray Train 2.x's controller takes its
    failure policy as an argument; the public config only sets the policy's limits)."""

    def _initialize_and_run_controller(self, **controller_init_kwargs: Any) -> Any:
        controller_init_kwargs["failure_policy"] = NoRetryForMistakes(self.run_config.failure_config)
        return super()._initialize_and_run_controller(**controller_init_kwargs)
