"""Experiment tracking: MLflow runs for pipeline steps, and the metrics every training step logs.

One parent run per pipeline run, one child run per step. A step's ``TrackingConfig`` says where
the MLflow server is and which parent run to hang under; without a tracking URI (and no
``MLFLOW_TRACKING_URI`` in the environment) nothing goes to MLflow, and metrics still land in the
step's ``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class TrackingConfig(BaseModel):
    """Where a step's metrics go."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else off"
    )
    experiment: str = Field("longrl", description="MLflow experiment name")
    parent_run_id: str | None = Field(
        None, description="The pipeline run's MLflow run; the step becomes its child"
    )
    run_name: str | None = Field(None, description="Name of the step's run")
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra tags (lineage: KFP run id, image, ...)"
    )
    run_id: str | None = Field(
        None, description="Set by the launcher: the step's run, which workers log into"
    )

    def resolved_uri(self) -> str | None:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys, for MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def numeric_metrics(values: dict[str, Any]) -> dict[str, float]:
    metrics = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if number == number:  # drop NaN
            metrics[key] = number
    return metrics


def experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name``, created if missing. Unlike ``mlflow.set_experiment`` it leaves no
    process-wide active experiment behind (nor ``MLFLOW_EXPERIMENT_ID`` in the environment), which made
    a later ``start_run(run_id=...)`` of another experiment in the same process fail."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created meanwhile by a concurrent step
        return client.get_experiment_by_name(name).experiment_id


@contextlib.contextmanager
def step_run(config: TrackingConfig, params: dict[str, Any] | None = None) -> Iterator[str | None]:
    """An MLflow run for one step (child of the pipeline run when given); yields its id, or None when off."""
    uri = config.resolved_uri()
    if uri is None:
        yield None
        return
    import mlflow

    mlflow.set_tracking_uri(uri)
    tags = dict(config.tags)
    if config.parent_run_id:
        tags["mlflow.parentRunId"] = config.parent_run_id
    with mlflow.start_run(
        experiment_id=experiment_id(uri, config.experiment),
        run_name=config.run_name,
        tags=tags,
        nested=bool(config.parent_run_id),
    ) as run:
        if params:
            flat = {k: (v if len(str(v)) <= 6000 else str(v)[:6000]) for k, v in flatten(params).items()}
            mlflow.log_params(flat)
        yield run.info.run_id


class MetricsSink:
    """Appends metric dicts to metrics.jsonl and, when the step has an MLflow run, to that run."""

    def __init__(self, output_dir: str | Path, tracking: TrackingConfig) -> None:
        self.path = Path(output_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = tracking.run_id
        self._client = None
        if self.run_id is not None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=tracking.resolved_uri())

    def log(self, metrics: dict[str, Any], step: int) -> None:
        numbers = numeric_metrics(metrics)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, "time": time.time(), **numbers}) + "\n")
        if self._client is not None and numbers:
            from mlflow.entities import Metric

            stamp = int(time.time() * 1000)
            batch = [
                Metric(key=k.replace("@", "_"), value=v, timestamp=stamp, step=step)
                for k, v in numbers.items()
            ]
            try:
                self._client.log_batch(self.run_id, metrics=batch)
            except Exception as exc:  # noqa: BLE001 - a tracking hiccup must not kill a training step
                logger.warning("could not log metrics to MLflow run %s: %s", self.run_id, exc)


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
