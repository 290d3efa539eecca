"""Registration, gated promotion, manual promotion and rollback against a real MLflow server."""

import itertools
import json
import math
import threading
import uuid

import pytest

from longrl import registry
from longrl.registry import CHALLENGER, CHAMPION, RegistryConfig, RegistryError, gate, register_candidate


def summary(
    average: float, n: int = 40, judge_model: str | None = "verifier", judge_unavailable: int = 0
) -> dict:
    """An evaluation summary as ``longrl.evaluation`` writes it (metrics.json)."""

    def benchmark(score: float, questions: str) -> dict:
        return {"score": score, "n": n, "questions": questions, "judge_unavailable": judge_unavailable}

    return {
        "average": average,
        "benchmarks": {"hotpotqa": benchmark(average, "h1"), "docmath": benchmark(average / 2, "d1")},
        "judge_model": judge_model,
        "max_input_tokens": 4000,
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
    assert status["versions"][0]["gate"] == "no champion yet"
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


@pytest.mark.parametrize(
    ("candidate", "champion"),
    [
        ({"average": math.nan}, {"average": 0.40}),
        ({"average": math.inf}, {"average": 0.40}),
        ({}, {"average": 0.40}),
        ({"average": 0.0}, {}),  # a champion without the metric lets nothing through
        ({"average": 0.0}, {"average": math.nan}),
        ({"average": 0.9}, {"average": -math.inf}),
    ],
)
def test_a_missing_or_nan_metric_never_passes(candidate, champion) -> None:
    passed, why = gate(candidate, champion, "average", 0.0)
    assert not passed, why


def profile(**changes) -> dict:
    base = registry.eval_profile(summary(0.5))
    return {**base, **changes}


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (profile(), None),
        (registry.eval_profile(summary(0.5, n=41)), "docmath: 41 answers vs the champion's 40"),
        (profile(benchmarks={"hotpotqa": {"n": 40, "questions": "h1"}}), "different benchmarks"),
        (
            profile(
                benchmarks={"hotpotqa": {"n": 40, "questions": "h2"}, "docmath": {"n": 40, "questions": "d1"}}
            ),
            "hotpotqa: different questions",
        ),
        (registry.eval_profile(summary(0.5, judge_model="other")), "judge model 'other'"),
        (registry.eval_profile(summary(0.5, judge_model=None)), "judge model None"),
        (registry.eval_profile(summary(0.5, judge_unavailable=20)), "no verdict on 50.0% of the candidate's"),
        (profile(max_input_tokens=8000), "input limit 8000"),
        ({"benchmarks": {"hotpotqa": {"n": 40}}}, "does not record max_input_tokens, judge_model"),
    ],
)
def test_only_comparable_evaluations_are_compared(candidate, reason) -> None:
    found = registry.incomparability(candidate, profile(), max_judge_unavailable=0.01)
    if reason is None:
        assert found is None
    else:
        assert reason in found


def test_an_incomparable_candidate_is_not_promoted_and_says_why(config, tiny_model_dir) -> None:
    reference = config.model_copy(update={"log_weights": "reference"})
    register_candidate(reference, str(tiny_model_dir), summary(0.40), a_run(config))
    outcome = register_candidate(reference, str(tiny_model_dir), summary(0.90, n=80), a_run(config))
    assert (outcome["promoted"], outcome["comparable"], outcome["champion"]) == (False, False, "1")
    assert (
        "not comparable with champion version 1: docmath: 80 answers vs the champion's 40" in outcome["gate"]
    )
    client = registry.client(config)
    recorded = json.loads(client.get_model_version(config.registered_model_name, "2").tags["longrl.gate"])
    assert recorded["comparable"] is False and recorded["gate"] == outcome["gate"]
    assert registry.alias_version(client, config.registered_model_name, CHAMPION) == "1"


def test_a_champion_without_the_metric_or_profile_lets_no_candidate_through(config, tiny_model_dir) -> None:
    reference = config.model_copy(update={"log_weights": "reference"})
    no_average = summary(0.40)
    del no_average["average"]
    first = register_candidate(reference, str(tiny_model_dir), no_average, a_run(config))
    assert not first["promoted"] and first["gate"] == "the candidate's 'average' is missing"
    registry.promote(config, "1", reason="by hand")
    zero = register_candidate(reference, str(tiny_model_dir), summary(0.0), a_run(config))
    assert not zero["promoted"] and "its 'average' is missing" in zero["gate"]

    client = registry.client(config)
    client.delete_model_version_tag(config.registered_model_name, "2", "longrl.eval_profile")
    registry.promote(config, "2", reason="a champion registered before profiles were kept")
    better = register_candidate(reference, str(tiny_model_dir), summary(0.9), a_run(config))
    assert not better["promoted"] and "evaluation profile is not recorded" in better["gate"]
    assert registry.alias_version(client, config.registered_model_name, CHAMPION) == "2"


def test_a_retried_registration_finds_its_own_version(config, tiny_model_dir) -> None:
    reference = config.model_copy(update={"log_weights": "reference"})
    tags = {"kfp.run_id": "run-7"}
    first = register_candidate(reference, str(tiny_model_dir), summary(0.40), a_run(config), tags=tags)
    again = register_candidate(reference, str(tiny_model_dir), summary(0.40), a_run(config), tags=tags)
    assert (first["version"], again["version"]) == ("1", "1")
    assert (first["reused"], again["reused"], again["promoted"]) == (False, True, True)
    client = registry.client(config)
    assert len(client.search_model_versions(f"name='{config.registered_model_name}'")) == 1
    other_run = register_candidate(
        reference, str(tiny_model_dir), summary(0.40), a_run(config), tags={"kfp.run_id": "run-8"}
    )
    assert other_run["version"] == "2" and not other_run["reused"]


@pytest.mark.parametrize(("worse", "better"), [(0.50, 0.60), (0.50, 0.51)])
def test_concurrent_registrations_never_leave_a_worse_champion(
    config, tiny_model_dir, monkeypatch, worse, better
) -> None:
    """Two registrations that both beat the champion race: each reads the old champion before the
    other sets the alias, and the worse one would set it last. One decision must hold: the champion
    is never worse than an earlier one, and of two within the margin of each other only one wins."""
    reference = config.model_copy(update={"log_weights": "reference"})
    register_candidate(reference, str(tiny_model_dir), summary(0.40), a_run(config))
    worse_read, better_done = threading.Event(), threading.Event()
    wait_s = 4.0  # the race is forced if the code lets it happen; serialised code waits this long once
    read, set_alias = registry.alias_version, registry.set_alias

    def reading(client, name, alias):
        version = read(client, name, alias)
        if alias == CHAMPION and threading.current_thread().name == "worse":
            worse_read.set()
        return version

    def setting(client, name, alias, version, reason):
        if alias == CHAMPION and threading.current_thread().name == "better":
            worse_read.wait(wait_s)
        if alias == CHAMPION and threading.current_thread().name == "worse":
            better_done.wait(wait_s)
        return set_alias(client, name, alias, version, reason)

    monkeypatch.setattr(registry, "alias_version", reading)
    monkeypatch.setattr(registry, "set_alias", setting)
    runs = {name: a_run(config) for name in ("worse", "better")}
    outcomes: dict[str, dict] = {}
    start = threading.Barrier(2)

    def register(name: str, average: float) -> None:
        start.wait()
        try:
            outcomes[name] = register_candidate(reference, str(tiny_model_dir), summary(average), runs[name])
        finally:
            if name == "better":
                better_done.set()

    threads = [
        threading.Thread(target=register, args=(name, average), name=name)
        for name, average in (("worse", worse), ("better", better))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert set(outcomes) == {"worse", "better"}

    client = registry.client(config)
    name = config.registered_model_name
    champion = read(client, name, CHAMPION)
    averages = {v: registry.version_metrics(client, name, v)["average"] for v in ("1", "2", "3")}
    promoted = [who for who, outcome in outcomes.items() if outcome["promoted"]]
    assert champion in {outcomes["worse"]["version"], outcomes["better"]["version"]}
    if better - worse >= config.promotion_margin:
        assert champion == outcomes["better"]["version"]
    else:
        assert len(promoted) == 1 and outcomes[promoted[0]]["version"] == champion
    changes = [c["version"] for c in registry.history(client, name) if c["alias"] == CHAMPION]
    assert all(averages[new] >= averages[old] for old, new in itertools.pairwise(changes)), changes


def test_a_registration_that_crashed_before_deciding_blocks_no_one_and_its_retry_decides(
    config, tiny_model_dir, monkeypatch
) -> None:
    reference = config.model_copy(update={"log_weights": "reference", "turn_timeout_s": 1.0})
    decide = registry._decide

    def crash(*args, **kwargs):
        raise ConnectionError("pod killed")

    monkeypatch.setattr(registry, "_decide", crash)
    crashed_run, tags = a_run(config), {"kfp.run_id": "run-1"}
    with pytest.raises(ConnectionError):
        register_candidate(reference, str(tiny_model_dir), summary(0.40), crashed_run, tags=tags)
    monkeypatch.setattr(registry, "_decide", decide)
    later = register_candidate(reference, str(tiny_model_dir), summary(0.30), a_run(config))
    assert (later["version"], later["promoted"]) == ("2", True)  # version 1 never decided: crashed
    retried = register_candidate(reference, str(tiny_model_dir), summary(0.40), crashed_run, tags=tags)
    assert (retried["version"], retried["reused"], retried["promoted"]) == ("1", True, True)
    assert "average 0.4000 vs champion 0.3000" in retried["gate"]


@pytest.mark.parametrize(("copy_limit", "copied"), [(1, False), (registry.COPY_LIMIT_BYTES, True)])
def test_an_s3_model_is_downloaded_only_when_its_weights_are_copied_into_mlflow(
    config, tiny_model_dir, s3_endpoint, tmp_path, monkeypatch, copy_limit, copied
) -> None:
    from longrl import storage
    from tests.platform.test_artifacts import BytesRead

    monkeypatch.setenv("LONGRL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "COPY_LIMIT_BYTES", copy_limit)
    model_uri = "s3://longrl/kfp/run/train-rl/.longrl-data/model/model"
    storage.copy_tree(str(tiny_model_dir), model_uri)
    model_bytes = sum(size for _, size, _ in storage.list_objects(model_uri))
    read = BytesRead()

    outcome = register_candidate(config, model_uri, summary(0.30), a_run(config))

    if copied:  # below the limit: the weights go into MLflow, so they are downloaded (the counter sees them)
        assert read.take() == model_bytes and outcome["source"].startswith(("models:/", "runs:/"))
    else:  # above it: registered by its location, sized from the listing, not one byte read
        assert read.take() == 0 and outcome["source"] == model_uri
