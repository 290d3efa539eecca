"""Registration, gated promotion, manual promotion and rollback against a real MLflow server."""

import json
import uuid

import pytest

from longrl import registry
from longrl.registry import CHALLENGER, CHAMPION, RegistryConfig, RegistryError, gate, register_candidate


def summary(average: float) -> dict:
    return {
        "average": average,
        "benchmarks": {"hotpotqa": {"score": average}, "docmath": {"score": average / 2}},
    }


@pytest.fixture
def config(mlflow_server):
    return RegistryConfig(
        tracking_uri=mlflow_server, registered_model_name=f"m-{uuid.uuid4().hex[:8]}", promotion_margin=0.02
    )


def a_run(config: RegistryConfig) -> str:
    import mlflow

    client = mlflow.MlflowClient(config.tracking_uri)
    experiment = client.get_experiment_by_name("registry-tests") or client.get_experiment(
        client.create_experiment("registry-tests")
    )
    return client.create_run(experiment.experiment_id).info.run_id


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "passed"),
    [
        (0.50, None, 0.0, True),
        (0.50, 0.40, 0.05, True),
        (0.44, 0.40, 0.05, False),
        (0.40, 0.40, 0.0, True),  # margin 0: not worse than the champion
        (0.39, 0.40, 0.0, False),
    ],
)
def test_gate(candidate, champion, margin, passed) -> None:
    ok, why = gate(
        {"average": candidate}, None if champion is None else {"average": champion}, "average", margin
    )
    assert ok is passed, why


def test_first_version_becomes_champion_and_aliases_are_recorded(config, tiny_model_dir) -> None:
    outcome = register_candidate(
        config, str(tiny_model_dir), summary(0.30), a_run(config), tags={"kfp.run_id": "r1"}
    )
    assert outcome["version"] == "1" and outcome["promoted"] and outcome["gate"] == "no champion yet"
    client = registry.client(config)
    assert registry.alias_version(client, config.registered_model_name, CHAMPION) == "1"
    assert registry.alias_version(client, config.registered_model_name, CHALLENGER) == "1"
    version = client.get_model_version(config.registered_model_name, "1")
    assert version.tags["kfp.run_id"] == "r1"
    assert registry.version_metrics(client, config.registered_model_name, "1") == {
        "average": 0.30,
        "hotpotqa": 0.30,
        "docmath": 0.15,
    }
    assert outcome["source"].startswith(("models:/", "runs:/"))  # the small checkpoint was copied into MLflow
    changes = registry.history(client, config.registered_model_name)
    assert [(c["alias"], c["version"], c["previous"]) for c in changes] == [
        (CHALLENGER, "1", None),
        (CHAMPION, "1", None),
    ]
    import mlflow

    loaded = mlflow.transformers.load_model(
        f"models:/{config.registered_model_name}/1", return_type="components"
    )
    assert loaded["model"].config.model_type == "qwen2"


def test_a_worse_candidate_stays_challenger_then_manual_promote_and_rollback(
    config, tiny_model_dir, tmp_path
) -> None:
    reference = config.model_copy(update={"log_weights": "reference"})
    register_candidate(reference, str(tiny_model_dir), summary(0.40), a_run(config))
    worse = register_candidate(
        reference, str(tiny_model_dir), summary(0.41), a_run(config)
    )  # +0.01 < margin 0.02
    assert (worse["version"], worse["promoted"], worse["champion"]) == ("2", False, "1")
    assert "average 0.4100 vs champion 0.4000" in worse["gate"]
    assert worse["source"].startswith("runs:/")  # reference mode: a pointer, not a copy of the weights
    version = registry.client(config).get_model_version(config.registered_model_name, "2")
    assert version.tags["longrl.model_uri"] == str(tiny_model_dir)
    client = registry.client(config)
    assert registry.alias_version(client, config.registered_model_name, CHALLENGER) == "2"
    assert registry.alias_version(client, config.registered_model_name, CHAMPION) == "1"

    better = register_candidate(reference, str(tiny_model_dir), summary(0.50), a_run(config))
    assert better["promoted"] and better["champion"] == "3"

    registry.promote(config, "2", reason="hand-picked for a demo")
    assert registry.alias_version(client, config.registered_model_name, CHAMPION) == "2"
    registry.rollback(config, reason="demo over")
    assert registry.alias_version(client, config.registered_model_name, CHAMPION) == "3"
    champion_changes = [
        c for c in registry.history(client, config.registered_model_name) if c["alias"] == CHAMPION
    ]
    assert [(c["version"], c["previous"]) for c in champion_changes] == [
        ("1", None),
        ("3", "1"),
        ("2", "3"),
        ("3", "2"),
    ]
    assert champion_changes[-1]["reason"] == "rollback: demo over" and champion_changes[-1]["actor"]


def test_promote_unknown_version_and_nothing_to_roll_back(config, tiny_model_dir) -> None:
    from mlflow.exceptions import MlflowException

    register_candidate(
        config.model_copy(update={"log_weights": "reference"}),
        str(tiny_model_dir),
        summary(0.3),
        a_run(config),
    )
    with pytest.raises(MlflowException):
        registry.promote(config, "42", reason="typo")
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(config, reason="nothing to go back to")


def test_cli(config, tiny_model_dir, capsys) -> None:
    register_candidate(
        config.model_copy(update={"log_weights": "reference"}),
        str(tiny_model_dir),
        summary(0.3),
        a_run(config),
    )
    args = ["--tracking-uri", config.tracking_uri, "--name", config.registered_model_name]
    capsys.readouterr()
    assert registry.main([*args, "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["aliases"] == {CHAMPION: "1", CHALLENGER: "1"} and len(status["history"]) == 2
    assert registry.main([*args, "rollback", "--reason", "x"]) == 1
    assert "no earlier champion" in capsys.readouterr().err
    assert registry.main([*args, "promote", "1", "--reason", "again"]) == 0


def test_registering_from_inside_the_steps_own_run(config, tiny_model_dir) -> None:
    """The pipeline's registration step registers while its MLflow run is the active one."""
    from longrl.tracking import TrackingConfig, step_run

    tracking = TrackingConfig(
        tracking_uri=config.tracking_uri, experiment="registry-tests", run_name="registration"
    )
    with step_run(tracking) as run_id:
        outcome = register_candidate(config, str(tiny_model_dir), summary(0.2), run_id)
    assert outcome["version"] == "1"
    import mlflow

    assert mlflow.MlflowClient(config.tracking_uri).get_run(run_id).info.status == "FINISHED"
