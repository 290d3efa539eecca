"""Ray Train retries a failed worker group for a lost worker, not for a mistake in the step's inputs."""

from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError
from ray.train import FailureConfig
from ray.train.v2._internal.execution.failure_handling.failure_policy import FailureDecision
from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

from longrl.preflight import PreflightFailed
from longrl.storage import StorageError
from longrl.train.engines.failures import NoRetryForMistakes, failure_message, is_mistake, worth_retrying


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(2, "No such file or directory", "/data/nope.parquet"),
        ValueError("phase 1 has no training examples in nope.parquet"),
        KeyError("prompt"),
        TypeError("unexpected keyword argument 'max_lenght'"),
        PreflightFailed("rl step", ["--model m: no such directory"]),
        ModuleNotFoundError("No module named 'liger_kernel'"),
    ],
)
def test_mistakes_are_not_worth_retrying(error) -> None:
    assert is_mistake(error)
    assert not worth_retrying({0: error, 1: RuntimeError("gloo: connection closed by peer")})


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("NCCL error: unhandled system error"),
        ConnectionResetError("connection reset by peer"),
        StorageError("cannot reach the S3 endpoint"),
        TimeoutError("timed out"),
    ],
)
def test_transient_failures_are_retried(error) -> None:
    assert not is_mistake(error)
    assert worth_retrying({0: error})


def test_a_lost_worker_is_retried_whatever_the_others_say() -> None:
    assert worth_retrying({0: ValueError("collateral"), 1: ActorDiedError()})


def decisions(policy: NoRetryForMistakes, error: Exception, times: int) -> list[FailureDecision]:
    return [policy.make_decision(WorkerGroupError("failed", {0: error})) for _ in range(times)]


def test_policy_raises_a_mistake_at_once_and_retries_the_rest_up_to_max_failures() -> None:
    mistake = FileNotFoundError(2, "No such file or directory", "/data/nope.parquet")
    assert decisions(NoRetryForMistakes(FailureConfig(max_failures=3)), mistake, 1) == [FailureDecision.RAISE]
    transient = RuntimeError("worker lost its GPU")
    assert decisions(NoRetryForMistakes(FailureConfig(max_failures=2)), transient, 3) == [
        FailureDecision.RETRY,
        FailureDecision.RETRY,
        FailureDecision.RAISE,
    ]
    # the controller's own failures keep Ray's rules
    controller = ControllerError(ValueError("bad scaling config"))
    assert (
        NoRetryForMistakes(FailureConfig(max_failures=3)).make_decision(controller) == FailureDecision.RAISE
    )


def test_failure_message_names_each_rank_and_why_it_was_not_retried() -> None:
    error = WorkerGroupError(
        "failed",
        {
            1: RuntimeError("gloo: connection closed by peer\n(long traceback)"),
            0: FileNotFoundError(2, "No such file or directory", "/data/nope.parquet"),
        },
    )
    assert failure_message("rl", error) == (
        "rl step failed on the Ray workers (not retried: a mistake in its inputs, config or code, not a lost "
        "worker):\n"
        "rank 0: FileNotFoundError: [Errno 2] No such file or directory: '/data/nope.parquet'\n"
        "rank 1: RuntimeError: gloo: connection closed by peer"
    )


def _fail_with(payload: dict) -> None:
    with open(payload["attempts"], "a") as log:
        log.write("attempt\n")
    raise payload["error"]


@pytest.mark.slow
def test_ray_train_tries_a_mistake_once(tmp_path) -> None:
    """On a real Ray (a minute on two busy cores): a missing file is tried once, whatever max_failures says
    (Ray's own policy would try it three times here; the decisions themselves are tested above)."""
    import ray
    from ray.train import RunConfig, ScalingConfig

    from longrl.train.engines.failures import MistakeAwareTorchTrainer

    log = tmp_path / "attempts.txt"
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        trainer = MistakeAwareTorchTrainer(
            _fail_with,
            train_loop_config={
                "attempts": str(log),
                "error": FileNotFoundError(2, "No such file", "nope.parquet"),
            },
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(
                name="attempts",
                storage_path=str(tmp_path / "ray"),
                failure_config=FailureConfig(max_failures=2),
            ),
        )
        with pytest.raises(WorkerGroupError) as failed:
            trainer.fit()
    finally:
        ray.shutdown()
    assert isinstance(failed.value.worker_failures[0], FileNotFoundError)
    assert log.read_text().count("attempt") == 1
