"""A step's MLflow run leaves no process-wide MLflow state behind (several steps can share a process)."""

import os


def test_a_step_run_leaves_no_active_experiment_behind(tmp_path, monkeypatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    from longrl.tracking import step_run
    from longrl.train.config import TrackingConfig

    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    elsewhere = client.create_run(client.create_experiment("another-step")).info.run_id
    with step_run(TrackingConfig(tracking_uri=uri, experiment="this-step")) as run_id:
        assert client.get_run(run_id).info.experiment_id != client.get_run(elsewhere).info.experiment_id
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ
    # what verl's MLflow logger does in a later step of the same process: attach to its own run
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=elsewhere):
        mlflow.log_metric("m", 1.0, step=1)
    assert client.get_metric_history(elsewhere, "m")[0].value == 1.0
    with step_run(TrackingConfig(tracking_uri=uri, experiment="this-step")) as again:
        assert client.get_run(again).info.experiment_id == client.get_run(run_id).info.experiment_id
