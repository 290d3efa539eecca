"""The MLflow model registry: register a trained model, gate its promotion, promote and roll back.

A new version gets the alias ``challenger``. It becomes ``champion`` only when its evaluation
beats the current champion's by a margin (checked with ``mlflow.validate_evaluation_results``), or
when a person promotes it (``python -m longrl.registry promote``). Every alias change is recorded
on the registered model as a tag ``longrl.alias_change.<time>`` (who, what, from which version,
why), which ``history`` lists and ``rollback`` follows.

The gate cannot be fooled or raced:

- Only comparable evaluations are compared: the same benchmarks with the same number of answers
  and the same questions, the same judge model, the same input limit, and a judge that answered
  (each version keeps what its evaluation was, tag ``longrl.eval_profile``). Otherwise nothing is
  promoted automatically and the version's ``longrl.gate`` tag says why.
- A missing, NaN or infinite metric never passes, on either side.
- Registrations of one model decide in the order of their version numbers (which MLflow hands
  out atomically): a registration waits until every earlier one has decided (tag ``longrl.gate``),
  or until ``turn_timeout_s`` has passed for one that crashed. MLflow has no compare-and-swap on
  aliases, so the champion alias is also re-read just before and just after it is set: when it
  moved, the candidate is gated again against the new champion (and wins back the alias only by
  beating it).
- A retried registration (same model, evaluation and KFP run) finds the version it created
  (tag ``longrl.registration_key``) instead of creating another.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
_CHANGE_TAG = "longrl.alias_change."
_EVAL_TAG = "longrl.eval."
_PROFILE_TAG = "longrl.eval_profile"
_KEY_TAG = "longrl.registration_key"
_DECISION_TAG = "longrl.gate"
_PROMOTION_ATTEMPTS = 3  # re-gating rounds when the champion alias moves while a candidate is decided
_POLL_S = 0.5
COPY_LIMIT_BYTES = 2 * 1024**3


class RegistryError(RuntimeError):
    """A registry operation could not be done; the message says why."""


class RegistryConfig(BaseModel):
    """Which registered model, and how a candidate earns the champion alias."""

    model_config = ConfigDict(extra="forbid")

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
    max_judge_unavailable: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest share of an evaluation's answers left without a judge verdict (verifier "
        "down) for it to be compared with another judged evaluation",
    )
    turn_timeout_s: float = Field(
        300.0,
        gt=0,
        description="How long a registration waits for earlier registrations of the model to decide "
        "before deciding anyway (one that crashed never decides)",
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


def version_profile(mlflow_client: Any, name: str, version: str) -> dict[str, Any] | None:
    """What the version's evaluation was (``eval_profile``); None for a version registered without it."""
    recorded = mlflow_client.get_model_version(name, version).tags.get(_PROFILE_TAG)
    return json.loads(recorded) if recorded else None


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def eval_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Flat metrics from an evaluation summary: 'average' and '<benchmark>' headline scores (those given)."""
    metrics = {"average": _number(summary.get("average"))}
    metrics.update(
        {name: _number(values.get("score")) for name, values in summary.get("benchmarks", {}).items()}
    )
    return {name: value for name, value in metrics.items() if value is not None}


def eval_profile(summary: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation was, as far as comparing two of them goes: per benchmark the number of
    answers and a fingerprint of its questions, the judge model (None: no judge), the share of
    answers the judge left without a verdict, and the input limit. A field the summary does not
    record is left out (and makes the evaluation comparable with none)."""
    profile: dict[str, Any] = {
        "benchmarks": {
            name: {key: values[key] for key in ("n", "questions") if key in values}
            for name, values in sorted(summary.get("benchmarks", {}).items())
        }
    }
    if "max_input_tokens" in summary:
        profile["max_input_tokens"] = summary["max_input_tokens"]
    if "judge_model" in summary:
        profile["judge_model"] = summary["judge_model"]
        answers = sum(int(values.get("n") or 0) for values in summary.get("benchmarks", {}).values())
        unanswered = sum(
            int(values.get("judge_unavailable") or 0) for values in summary.get("benchmarks", {}).values()
        )
        profile["judge_unavailable"] = unanswered / answers if summary["judge_model"] and answers else None
    return profile


def _unrecorded(profile: dict[str, Any]) -> list[str]:
    missing = [key for key in ("max_input_tokens", "judge_model") if key not in profile]
    if not profile.get("benchmarks"):
        missing.append("benchmarks")
    for name, values in profile.get("benchmarks", {}).items():
        missing += [f"{name}.{key}" for key in ("n", "questions") if key not in values]
    return missing


def incomparability(
    candidate: dict[str, Any], champion: dict[str, Any] | None, max_judge_unavailable: float
) -> str | None:
    """Why two evaluations (``eval_profile``) cannot be compared; None when they can."""
    if champion is None:
        return "the champion's evaluation profile is not recorded (registered before longrl kept it)"
    for side, profile in (("candidate", candidate), ("champion", champion)):
        missing = _unrecorded(profile)
        if missing:
            return f"the {side}'s evaluation does not record {', '.join(missing)}"
    ours, theirs = candidate["benchmarks"], champion["benchmarks"]
    if set(ours) != set(theirs):
        return f"different benchmarks: {sorted(ours)} vs the champion's {sorted(theirs)}"
    for name in ours:
        if ours[name]["n"] != theirs[name]["n"]:
            return f"{name}: {ours[name]['n']} answers vs the champion's {theirs[name]['n']}"
        if ours[name]["questions"] != theirs[name]["questions"]:
            return f"{name}: different questions from the champion's"
    if candidate["judge_model"] != champion["judge_model"]:
        return f"judge model {candidate['judge_model']!r} vs the champion's {champion['judge_model']!r}"
    for side, profile in (("candidate", candidate), ("champion", champion)):
        unavailable = profile["judge_unavailable"]
        if unavailable is not None and unavailable > max_judge_unavailable:
            return (
                f"the judge gave no verdict on {100 * unavailable:.1f}% of the {side}'s answers "
                f"(more than {100 * max_judge_unavailable:.1f}%)"
            )
    if candidate["max_input_tokens"] != champion["max_input_tokens"]:
        return f"input limit {candidate['max_input_tokens']} vs the champion's {champion['max_input_tokens']} tokens"
    return None


def _finite(metrics: dict[str, float] | None, metric: str) -> str | None:
    """Why ``metrics[metric]`` cannot be compared (missing, NaN, infinite); None when it can."""
    value = (metrics or {}).get(metric)
    if value is None:
        return "missing"
    return None if math.isfinite(value) else str(value)


def gate(
    candidate: dict[str, float], champion: dict[str, float] | None, metric: str, margin: float
) -> tuple[bool, str]:
    """Whether the candidate beats the champion on ``metric`` by at least ``margin`` (MLflow's validation).

    A missing, NaN or infinite value never passes: on the candidate's side it fails the gate, on the
    champion's side it makes the two incomparable (no candidate passes on it).
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import EvaluationResult, MetricThreshold

    problem = _finite(candidate, metric)
    if problem:
        return False, f"the candidate's '{metric}' is {problem}"
    if champion is None:
        return True, "no champion yet"
    problem = _finite(champion, metric)
    if problem:
        return False, f"not comparable: the champion's '{metric}' is {problem}"
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


def _size(model_uri: str) -> int:
    """The checkpoint's bytes; an ``s3://`` one is sized from its listing (nothing is downloaded)."""
    from longrl import storage

    if storage.is_s3(model_uri):
        sizes = [size for relative, size, _ in storage.list_objects(model_uri) if not relative.endswith("/")]
        if not sizes:
            raise storage.StorageError(f"{model_uri} holds no files")
        return sum(sizes)
    path = Path(model_uri)
    if not path.exists():
        raise storage.StorageError(f"{model_uri} does not exist")
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _log_model(model_uri: str, mode: str, uri: str, run_id: str) -> tuple[str, str | None]:
    """Logs the checkpoint under the run (or only refers to it); returns the version's source and model id.

    Only a copy downloads the checkpoint: a reference is decided and registered from its location.
    """
    from longrl import storage

    size = _size(model_uri)  # also refuses a location that holds no model
    if mode == "auto":
        mode = "copy" if size < COPY_LIMIT_BYTES else "reference"
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
    local = storage.localize(model_uri)
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


def registration_key(model_uri: str, summary: dict[str, Any], tags: dict[str, str] | None = None) -> str:
    """What makes two registrations one: the model, its evaluation and the KFP run (a retried step)."""
    identity = {"model_uri": model_uri, "summary": summary, "kfp_run_id": (tags or {}).get("kfp.run_id")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _ensure_registered_model(mlflow_client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        try:
            mlflow_client.create_registered_model(
                name, description="Long-context reasoning models (QwenLong-L1 recipe)"
            )
        except MlflowException:  # a concurrent registration created it first
            mlflow_client.get_registered_model(name)


def _registered_versions(mlflow_client: Any, name: str) -> list[Any]:
    """Every version of the model that a longrl registration created, lowest first."""
    versions, token = [], None
    while True:
        page = mlflow_client.search_model_versions(f"name='{name}'", page_token=token)
        versions += [version for version in page if _KEY_TAG in version.tags]
        token = page.token
        if not token:
            return sorted(versions, key=lambda version: int(version.version))


def _own_version(mlflow_client: Any, name: str, key: str, create: Any) -> tuple[Any, bool]:
    """(version, reused): the version this registration created before (a retry), else a new one."""
    mine = [v for v in _registered_versions(mlflow_client, name) if v.tags.get(_KEY_TAG) == key]
    if mine:
        return mine[0], True
    created = create()
    first = next(
        (v for v in _registered_versions(mlflow_client, name) if v.tags.get(_KEY_TAG) == key), created
    )
    if str(first.version) != str(created.version):  # the same registration ran twice at once: keep one
        mlflow_client.delete_model_version(name, str(created.version))
        return first, True
    return created, False


def _wait_for_turn(mlflow_client: Any, name: str, version: Any, timeout_s: float) -> list[str]:
    """Waits until every earlier registration of the model has decided; returns those it gave up on.

    An earlier registration that is still undecided after ``timeout_s`` of waiting, or whose version
    was created more than ``timeout_s`` before this one (server times, no clock skew), crashed.
    """
    number, created = int(version.version), version.creation_timestamp
    deadline = time.monotonic() + timeout_s
    while True:
        pending = [
            str(v.version)
            for v in _registered_versions(mlflow_client, name)
            if int(v.version) < number
            and _DECISION_TAG not in v.tags
            and created - v.creation_timestamp < timeout_s * 1000
        ]
        if not pending:
            return []
        if time.monotonic() > deadline:
            logger.warning(
                "%s: versions %s did not decide in %.0f s; deciding anyway", name, pending, timeout_s
            )
            return pending
        time.sleep(_POLL_S)


def _gate_against(
    config: RegistryConfig,
    mlflow_client: Any,
    metrics: dict[str, float],
    profile: dict[str, Any],
    champion: str | None,
) -> tuple[bool, bool, str]:
    """(passed, comparable, why) of the candidate against the champion version (None: there is none)."""
    name, metric = config.registered_model_name, config.promotion_metric
    if champion is None:
        passed, why = gate(metrics, None, metric, config.promotion_margin)
        return passed, True, why
    reason = incomparability(
        profile, version_profile(mlflow_client, name, champion), config.max_judge_unavailable
    )
    champion_metrics = version_metrics(mlflow_client, name, champion)
    problem = _finite(champion_metrics, metric)
    if reason is None and problem:
        reason = f"its '{metric}' is {problem}"
    if reason:
        return False, False, f"not comparable with champion version {champion}: {reason}"
    passed, why = gate(metrics, champion_metrics, metric, config.promotion_margin)
    return passed, True, why


def _decide(
    config: RegistryConfig,
    mlflow_client: Any,
    number: str,
    metrics: dict[str, float],
    profile: dict[str, Any],
) -> dict[str, Any]:
    """Gates the candidate against the champion and promotes it if it passes (see the module's doc)."""
    name = config.registered_model_name
    set_alias(mlflow_client, name, CHALLENGER, number, "new version from a pipeline run")
    champion = None
    for _ in range(_PROMOTION_ATTEMPTS):
        champion = alias_version(mlflow_client, name, CHAMPION)
        if champion == number:  # a retry of a registration that promoted before it could record so
            return {
                "promoted": True,
                "gate_passed": True,
                "comparable": True,
                "gate": "already the champion",
                "champion": number,
            }
        passed, comparable, why = _gate_against(config, mlflow_client, metrics, profile, champion)
        decision = {"gate_passed": passed, "comparable": comparable, "gate": why}
        if not (passed and config.auto_promote):
            return {"promoted": False, "champion": champion, **decision}
        if alias_version(mlflow_client, name, CHAMPION) != champion:
            continue  # the champion moved while this candidate was gated: gate it against the new one
        set_alias(mlflow_client, name, CHAMPION, number, f"passed the gate: {why}")
        if alias_version(mlflow_client, name, CHAMPION) == number:
            return {"promoted": True, "champion": number, **decision}
        # another writer set the alias just after this one: the candidate must beat theirs too
    return {
        "promoted": False,
        "gate_passed": False,
        "comparable": True,
        "gate": f"the champion alias kept moving (now version {champion}); not promoted, promote by hand",
        "champion": champion,
    }


def register_candidate(
    config: RegistryConfig,
    model_uri: str,
    summary: dict[str, Any],
    run_id: str,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Registers the model as a new version (alias challenger) and promotes it if it passes the gate.

    A retry (same model, evaluation and ``kfp.run_id`` tag) reuses the version it created and returns
    its recorded decision. Registrations of one model decide one at a time, in version order.
    """
    mlflow_client = client(config)
    name = config.registered_model_name
    _ensure_registered_model(mlflow_client, name)
    metrics, profile = eval_metrics(summary), eval_profile(summary)
    key = registration_key(model_uri, summary, tags)

    def create() -> Any:
        source, model_id = _log_model(model_uri, config.log_weights, tracking_uri(config), run_id)
        version_tags = {
            **(tags or {}),
            "longrl.model_uri": model_uri,
            _KEY_TAG: key,
            _PROFILE_TAG: json.dumps(profile),
            **{f"{_EVAL_TAG}{k}": str(v) for k, v in metrics.items()},
        }
        return mlflow_client.create_model_version(
            name, source=source, run_id=run_id, tags=version_tags, model_id=model_id
        )

    version, reused = _own_version(mlflow_client, name, key, create)
    number = str(version.version)
    recorded = mlflow_client.get_model_version(name, number).tags.get(_DECISION_TAG)
    if recorded:
        return {**json.loads(recorded), "reused": True}
    skipped = _wait_for_turn(mlflow_client, name, version, config.turn_timeout_s)
    outcome = {
        "name": name,
        "version": number,
        **_decide(config, mlflow_client, number, metrics, profile),
        "source": version.source,
    }
    if skipped:
        outcome["undecided_earlier_versions"] = skipped
    if not outcome["comparable"]:
        logger.warning("%s version %s: no automatic promotion, %s", name, number, outcome["gate"])
    mlflow_client.set_model_version_tag(name, number, _DECISION_TAG, json.dumps(outcome))
    return {**outcome, "reused": reused}


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
                    "gate": json.loads(v.tags[_DECISION_TAG])["gate"] if _DECISION_TAG in v.tags else None,
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
