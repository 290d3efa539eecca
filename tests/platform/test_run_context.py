"""How a step finds its KFP run, the run's MLflow parent run and its verifier without taking them as inputs."""

import json
import uuid

import pytest

from longrl import steps
from longrl.steps import RUN_ID_ENV


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def run_id(monkeypatch) -> str:
    value = f"run-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(RUN_ID_ENV, value)
    return value


def test_a_step_without_its_run_id_says_where_it_comes_from(monkeypatch) -> None:
    monkeypatch.delenv(RUN_ID_ENV, raising=False)
    with pytest.raises(RuntimeError, match="pipeline/runid label"):
        steps.pipeline_run_id()


def test_steps_log_under_their_own_runs_pipeline_run(tracking_uri, run_id, monkeypatch) -> None:
    from mlflow import MlflowClient

    parent = steps.open_pipeline_run(tracking_uri, "exp", {"preset": "tiny"})
    assert steps.open_pipeline_run(tracking_uri, "exp", {"preset": "tiny"}) == parent  # a retried task
    tracking = steps.step_tracking(tracking_uri, "exp", "rl-phase1", {"verifier.model": "judge"})
    assert tracking.parent_run_id == parent
    assert tracking.tags["kfp.run_id"] == run_id and tracking.tags["verifier.model"] == "judge"

    monkeypatch.setenv(RUN_ID_ENV, "another-run")
    other = steps.open_pipeline_run(tracking_uri, "exp", {})
    assert other != parent and steps.step_tracking(tracking_uri, "exp", "sft").parent_run_id == other
    steps.close_pipeline_run(tracking_uri, "exp")
    client = MlflowClient(tracking_uri)
    assert client.get_run(other).info.status == "FAILED"  # no registration: the run did not finish
    assert client.get_run(parent).info.status == "RUNNING"  # another run's parent is left alone


def test_a_step_before_the_pipeline_run_is_opened_is_a_clear_error(tracking_uri, run_id) -> None:
    with pytest.raises(RuntimeError, match="'open MLflow run' step"):
        steps.step_tracking(tracking_uri, "exp", "sft")


def test_the_verifier_endpoint_is_looked_up_for_the_run(run_id, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path))
    assert steps.verifier_endpoint("none", "kubeflow") == ""
    assert steps.pipeline_judge("none", "kubeflow", 24) is None
    cluster = steps.verifier_endpoint("kubernetes", "team-a")
    assert cluster == f"http://{steps.verifier_name(run_id)}.team-a.svc.cluster.local:8000/v1"

    with pytest.raises(RuntimeError, match="no local verifier was started"):
        steps.verifier_endpoint("local", "kubeflow")
    record = tmp_path / "verifiers" / f"{run_id}.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"pid": 1, "base_url": "http://127.0.0.1:4321/v1", "log": "-"}))
    judge = steps.pipeline_judge("local", "kubeflow", 24)
    assert judge.base_url == "http://127.0.0.1:4321/v1" and judge.max_tokens == 24
