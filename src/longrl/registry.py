"""The MLflow model registry: register a trained model, gate its promotion, promote and roll back.

A new version gets the alias ``challenger``. It becomes ``champion`` only when its evaluation
beats the current champion's by a margin (checked with ``mlflow.validate_evaluation_results``), or
when a person promotes it (``python -m longrl.registry promote``). Every alias change is recorded
on the registered model as a tag ``longrl.alias_change.<time>`` (who, what, from which version,
why), which ``history`` lists and ``rollback`` follows.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
_CHANGE_TAG = "longrl.alias_change."
_EVAL_TAG = "longrl.eval."
COPY_LIMIT_BYTES = 2 * 1024**3


class RegistryError(RuntimeError):
    """A registry operation could not be done; the message says why."""


class RegistryConfig(BaseModel):
    """Which registered model, and how a candidate earns the champion alias."""

    tracking_uri: str | None = Field(None, description="MLflow tracking URI (None: $MLFLOW_TRACKING_URI)")
    registered_model_name: str = Field("longrl-reasoner", description="Registered model name")
    promotion_metric: str = Field("average", description="Evaluation metric that decides promotion")
    promotion_margin: float = Field(0.0, ge=0, description="How much the candidate must beat the champion by")
    auto_promote: bool = Field(True, description="Promote automatically when the gate passes")
    log_weights: Literal["auto", "copy", "reference"] = Field(
        "auto",
        description="copy: log the checkpoint into MLflow; reference: register its artifact-store "
        "location; auto: copy below 2 GiB",
    )


def tracking_uri(config: RegistryConfig) -> str:
    uri = config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RegistryError("no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    return uri


def client(config: RegistryConfig) -> Any:
    from mlflow import MlflowClient

    uri = tracking_uri(config)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _actor() -> str:
    return os.environ.get("LONGRL_ACTOR") or getpass.getuser()


def record_alias_change(
    mlflow_client: Any, name: str, alias: str, version: str | None, previous: str | None, reason: str
) -> dict[str, Any]:
    change = {
        "alias": alias,
        "version": version,
        "previous": previous,
        "reason": reason,
        "actor": _actor(),
        "time": time.time(),
    }
    mlflow_client.set_registered_model_tag(name, f"{_CHANGE_TAG}{time.time_ns()}", json.dumps(change))
    return change


def alias_version(mlflow_client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_alias(mlflow_client: Any, name: str, alias: str, version: str, reason: str) -> dict[str, Any]:
    previous = alias_version(mlflow_client, name, alias)
    mlflow_client.set_registered_model_alias(name, alias, version)
    logger.info("%s@%s -> version %s (%s)", name, alias, version, reason)
    return record_alias_change(mlflow_client, name, alias, version, previous, reason)


def history(mlflow_client: Any, name: str) -> list[dict[str, Any]]:
    """Every recorded alias change of the registered model, oldest first."""
    model = mlflow_client.get_registered_model(name)
    changes = [(key, json.loads(value)) for key, value in model.tags.items() if key.startswith(_CHANGE_TAG)]
    return [change for _, change in sorted(changes, key=lambda item: int(item[0][len(_CHANGE_TAG) :]))]


def version_metrics(mlflow_client: Any, name: str, version: str) -> dict[str, float]:
    tags = mlflow_client.get_model_version(name, version).tags
    return {key[len(_EVAL_TAG) :]: float(value) for key, value in tags.items() if key.startswith(_EVAL_TAG)}


def eval_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Flat metrics from an evaluation summary: 'average' and '<benchmark>' headline scores."""
    metrics = {"average": float(summary["average"])}
    metrics.update({name: float(values["score"]) for name, values in summary.get("benchmarks", {}).items()})
    return metrics


def gate(
    candidate: dict[str, float], champion: dict[str, float] | None, metric: str, margin: float
) -> tuple[bool, str]:
    """Whether the candidate beats the champion on ``metric`` by at least ``margin`` (MLflow's validation)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import EvaluationResult, MetricThreshold

    if metric not in candidate:
        return False, f"the candidate has no '{metric}' metric"
    if champion is None:
        return True, "no champion yet"
    if metric not in champion:
        return True, f"the champion has no '{metric}' metric"
    if margin > 0:  # candidate >= champion + margin
        threshold = MetricThreshold(min_absolute_change=margin, greater_is_better=True)
        baseline = EvaluationResult(metrics={metric: champion[metric]}, artifacts={})
    else:  # candidate >= champion (MLflow wants a positive margin, so compare with a fixed threshold)
        threshold = MetricThreshold(threshold=champion[metric], greater_is_better=True)
        baseline = None
    try:
        mlflow.validate_evaluation_results(
            {metric: threshold}, EvaluationResult(metrics={metric: candidate[metric]}, artifacts={}), baseline
        )
    except MlflowException as exc:
        return (
            False,
            f"{metric} {candidate[metric]:.4f} vs champion {champion[metric]:.4f}: {exc.message.strip()}",
        )
    return True, f"{metric} {candidate[metric]:.4f} vs champion {champion[metric]:.4f} (margin {margin})"


def _serving_requirements() -> list[str]:
    """What loading the model needs, pinned to this environment (MLflow's guess adds torchvision)."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name).split('+')[0]}"
        for name in ("torch", "transformers", "tokenizers", "accelerate", "safetensors")
    ]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _log_model(model_uri: str, mode: str, uri: str, run_id: str) -> tuple[str, str | None]:
    """Logs the checkpoint under the run (or only refers to it); returns the version's source and model id."""
    from longrl import storage

    local = storage.localize(model_uri)
    if mode == "auto":
        mode = "copy" if _size(local) < COPY_LIMIT_BYTES else "reference"
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mode == "reference":
        if storage.is_s3(model_uri):
            return model_uri, None
        # MLflow accepts local sources only inside a run's artifacts: register a pointer to the checkpoint.
        with _in_run(mlflow, run_id):
            mlflow.log_dict({"model_uri": model_uri}, "model_reference/reference.json")
        return f"runs:/{run_id}/model_reference", None
    with _in_run(mlflow, run_id):
        info = mlflow.transformers.log_model(
            transformers_model=str(local),
            name="model",
            task="text-generation",
            pip_requirements=_serving_requirements(),
        )
    return info.model_uri, info.model_id


def _in_run(mlflow: Any, run_id: str) -> Any:
    """The run as the active one: already so inside a step's run, else resumed for the block."""
    import contextlib

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        return contextlib.nullcontext(active)
    return mlflow.start_run(run_id=run_id)


def register_candidate(
    config: RegistryConfig,
    model_uri: str,
    summary: dict[str, Any],
    run_id: str,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Registers the model as a new version (alias challenger) and promotes it if it passes the gate."""
    mlflow_client = client(config)
    name = config.registered_model_name
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(
            name, description="Long-context reasoning models (QwenLong-L1 recipe)"
        )
    source, model_id = _log_model(model_uri, config.log_weights, tracking_uri(config), run_id)
    metrics = eval_metrics(summary)
    version_tags = {
        **(tags or {}),
        "longrl.model_uri": model_uri,
        **{f"{_EVAL_TAG}{k}": str(v) for k, v in metrics.items()},
    }
    version = mlflow_client.create_model_version(
        name, source=source, run_id=run_id, tags=version_tags, model_id=model_id
    )
    number = str(version.version)
    set_alias(mlflow_client, name, CHALLENGER, number, "new version from a pipeline run")
    champion = alias_version(mlflow_client, name, CHAMPION)
    champion_metrics = version_metrics(mlflow_client, name, champion) if champion else None
    passed, why = gate(metrics, champion_metrics, config.promotion_metric, config.promotion_margin)
    promoted = passed and config.auto_promote
    if promoted:
        set_alias(mlflow_client, name, CHAMPION, number, f"passed the gate: {why}")
    mlflow_client.set_model_version_tag(
        name, number, "longrl.gate", json.dumps({"passed": passed, "why": why})
    )
    return {
        "name": name,
        "version": number,
        "promoted": promoted,
        "gate_passed": passed,
        "gate": why,
        "champion": number if promoted else champion,
        "source": source,
    }


def promote(config: RegistryConfig, version: str, reason: str) -> dict[str, Any]:
    """A person makes ``version`` the champion."""
    mlflow_client = client(config)
    mlflow_client.get_model_version(config.registered_model_name, version)  # raises if it does not exist
    return set_alias(mlflow_client, config.registered_model_name, CHAMPION, version, reason)


def rollback(config: RegistryConfig, reason: str) -> dict[str, Any]:
    """Moves the champion alias back to the version it pointed at before its last change."""
    mlflow_client = client(config)
    name = config.registered_model_name
    current = alias_version(mlflow_client, name, CHAMPION)
    for change in reversed(history(mlflow_client, name)):
        if change["alias"] == CHAMPION and change["version"] == current and change["previous"]:
            return set_alias(mlflow_client, name, CHAMPION, change["previous"], f"rollback: {reason}")
    raise RegistryError(f"{name} has no earlier champion to roll back to")


def status(config: RegistryConfig) -> dict[str, Any]:
    mlflow_client = client(config)
    name = config.registered_model_name
    versions = mlflow_client.search_model_versions(f"name='{name}'")
    return {
        "name": name,
        "aliases": {alias: alias_version(mlflow_client, name, alias) for alias in (CHAMPION, CHALLENGER)},
        "versions": sorted(
            (
                {
                    "version": str(v.version),
                    "metrics": version_metrics(mlflow_client, name, str(v.version)),
                    "source": v.source,
                }
                for v in versions
            ),
            key=lambda v: int(v["version"]),
        ),
        "history": history(mlflow_client, name),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m longrl.registry status|promote|rollback``: inspect and move the champion alias."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m longrl.registry", description=main.__doc__)
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)"
    )
    parser.add_argument(
        "--name",
        default=RegistryConfig.model_fields["registered_model_name"].default,
        help="registered model name",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="aliases, versions with their evaluation, and the alias history")
    promote_parser = commands.add_parser("promote", help="make a version the champion")
    promote_parser.add_argument("version")
    promote_parser.add_argument("--reason", required=True, help="why (recorded)")
    rollback_parser = commands.add_parser(
        "rollback", help="give the champion alias back to the previous champion"
    )
    rollback_parser.add_argument("--reason", required=True, help="why (recorded)")
    args = parser.parse_args(argv)
    config = RegistryConfig(tracking_uri=args.tracking_uri, registered_model_name=args.name)
    from mlflow.exceptions import MlflowException

    try:
        if args.command == "status":
            output = status(config)
        elif args.command == "promote":
            output = promote(config, args.version, args.reason)
        else:
            output = rollback(config, args.reason)
    except (RegistryError, MlflowException) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    print(json.dumps(output, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
