"""The compiled pipeline, its parameters, and the client commands against a fake KFP REST server."""

import pytest
import yaml
from pipelines import cli
from pipelines.longrl_pipeline import PARAMETERS, RL_PHASES

from tests.support.kfp_server import serve_kfp


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    cli.compile_pipeline(path)
    return path


def test_every_parameter_has_a_description_and_a_default(compiled) -> None:
    spec, _ = yaml.safe_load_all(compiled.read_text())
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == set(PARAMETERS)
    for name, definition in parameters.items():
        assert definition.get("description", "").strip(), name
        assert "defaultValue" in definition, name


def test_the_dag_has_every_step_and_the_exit_handler(compiled) -> None:
    spec, _ = yaml.safe_load_all(compiled.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    inner = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert (
        "finish-pipeline" in tasks
        and tasks["finish-pipeline"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    )
    expected = {
        "plan-training",
        "open-tracking",
        "prepare-data",
        "prepare-data-2",
        "build-judge",
        "start-verifier",
        "train-sft",
        "evaluate-model",
        "register-model",
        *(f"train-rl-phase{'' if k == 1 else f'-{k}'}" for k in range(1, RL_PHASES + 1)),
    }
    assert expected <= set(inner)
    assert (
        inner["train-rl-phase-2"]["inputs"]["artifacts"]["start"]["taskOutputArtifact"]["producerTask"]
        == "train-rl-phase"
    )
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"].startswith("ghcr.io/longrl/pipeline:")
        assert "pip install" not in " ".join(executor["container"]["command"])  # the image already has kfp


def test_the_verifier_serves_what_the_judge_step_chose_and_the_judged_steps_name_it(compiled) -> None:
    spec, _ = yaml.safe_load_all(compiled.read_text())
    inner = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    chosen = {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "build-judge"}}
    assert inner["start-verifier"]["inputs"]["parameters"]["model"] == chosen
    for judged in ("train-rl-phase", "train-rl-phase-2", "evaluate-model"):
        assert inner[judged]["inputs"]["parameters"]["verifier_model"] == chosen, judged
    built = inner["build-judge"]["inputs"]["parameters"]
    assert built["train"]["componentInputParameter"] == "pipelinechannel--train_judge"
    assert built["verifier_model"]["componentInputParameter"] == "pipelinechannel--verifier_model"
    start_from = inner["build-judge"]["inputs"]["artifacts"]["start_from"]["taskOutputArtifact"]
    assert start_from == {
        "outputArtifactKey": "model",
        "producerTask": "train-sft",
    }  # a judge learns from SFT
    evaluation = inner["evaluate-model"]["inputs"]
    assert evaluation["artifacts"]["sft"]["taskOutputArtifact"]["producerTask"] == "train-sft"
    assert evaluation["parameters"]["stages"]["componentInputParameter"] == "pipelinechannel--eval_stages"


def test_rl_data_must_hold_an_rl_step_of_prompts_per_phase_and_sft_data_ignores_rl_settings(compiled) -> None:
    spec, _ = yaml.safe_load_all(compiled.read_text())
    inner = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    prepared = {
        task["inputs"]["parameters"]["name"]["runtimeValue"]["constant"]: task["inputs"]["parameters"]
        for name, task in inner.items()
        if name.startswith("prepare-data")
    }
    for wired in ("preset", "rl_overrides"):
        assert prepared["rl"][wired]["componentInputParameter"] == f"pipelinechannel--{wired}"
        assert wired not in prepared["sft"]  # KFP caches on inputs: new RL settings do not redo SFT data


def test_an_rl_phase_needs_the_rl_steps_train_batch_prompts_rows() -> None:
    from pipelines.local_run import LOCAL_RL

    from longrl.steps import rl_batch_prompts
    from longrl.train.config import RLStepConfig

    assert rl_batch_prompts("paper", {}) == RLStepConfig.model_fields["train_batch_prompts"].default
    assert rl_batch_prompts("tiny", {}) == 4
    assert rl_batch_prompts("paper", {"train_batch_prompts": 16, "max_steps": 3}) == 16
    assert rl_batch_prompts("tiny", {"train_batch_prompts": 8.0}) == 8  # kfp.local passes ints as floats
    assert rl_batch_prompts("tiny", LOCAL_RL) <= 135  # the local run's RL phases hold 224 and 135 rows


def _upstream(tasks: dict, name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for before in tasks[todo.pop()].get("dependentTasks", []):
            if before not in seen:
                seen.add(before)
                todo.append(before)
    return seen


def test_the_plan_comes_before_every_other_step(compiled) -> None:
    spec, _ = yaml.safe_load_all(compiled.read_text())
    inner = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert _upstream(inner, "plan-training") == set()
    for name in set(inner) - {"plan-training"}:
        assert "plan-training" in _upstream(inner, name), name
    planned = inner["plan-training"]["inputs"]["parameters"]
    for wired in (
        "base_model",
        "preset",
        "rl_overrides",
        "sft_overrides",
        "phase_max_tokens",
        "gpu_memory_gib",
    ):
        assert planned[wired]["componentInputParameter"] == f"pipelinechannel--{wired}"


def _constants(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "constant":
                yield value
            else:
                yield from _constants(value)
    elif isinstance(node, list):
        for value in node:
            yield from _constants(value)


def test_no_task_input_embeds_a_pipeline_parameter_in_a_constant(compiled) -> None:
    # A list or dict literal around a pipeline parameter compiles to a templated constant that
    # the backends substitute unquoted (kfp.local: ints become '640.0', strings break the JSON).
    spec, _ = yaml.safe_load_all(compiled.read_text())
    templated = [c for c in _constants(spec) if "{{$.inputs.parameters" in yaml.safe_dump(c)]
    assert templated == []


def test_every_step_but_tracking_gets_the_s3_secret(compiled) -> None:
    spec, platform = yaml.safe_load_all(compiled.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_secret = {
        name
        for name, config in executors.items()
        for secret in config.get("secretAsEnv", [])
        if secret["secretName"] == "longrl-s3"
        and {k["envVar"] for k in secret["keyToEnv"]}
        == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LONGRL_S3_ENDPOINT_URL"}
    }
    every = set(spec["deploymentSpec"]["executors"])
    assert every - with_secret == {"exec-open-tracking", "exec-finish-pipeline"}


def test_every_step_requests_and_is_limited_in_cpu_and_memory(compiled) -> None:
    spec, _ = yaml.safe_load_all(compiled.read_text())
    for name, executor in spec["deploymentSpec"]["executors"].items():
        resources = executor["container"].get("resources", {})
        for field in ("CpuRequest", "MemoryRequest", "CpuLimit", "MemoryLimit"):
            assert resources.get(f"resource{field}"), (name, field)
        assert resources["cpuRequest"] <= resources["cpuLimit"], name
        assert resources["memoryRequest"] <= resources["memoryLimit"], name
    executors = spec["deploymentSpec"]["executors"]
    data, launch = executors["exec-prepare-data"]["container"], executors["exec-train-sft"]["container"]
    assert data["resources"]["memoryRequest"] > launch["resources"]["memoryRequest"]  # sized by what they do


def test_steps_that_call_the_judge_from_their_pod_get_its_api_key(compiled) -> None:
    from longrl.rewards.judge import JudgeConfig

    spec, platform = yaml.safe_load_all(compiled.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    key = JudgeConfig.model_fields["api_key_env"].default
    with_key = {
        name
        for name, config in executors.items()
        for secret in config.get("secretAsEnv", [])
        if secret["secretName"] == "longrl-judge-client"
        and secret["keyToEnv"] == [{"envVar": key, "secretKey": key}]
        and secret["optional"]  # a verifier without a key: nothing to send, the pod still starts
    }
    rl_phases = {f"exec-train-rl-phase{'' if k == 1 else f'-{k}'}" for k in range(1, RL_PHASES + 1)}
    assert with_key == {"exec-evaluate-model", *rl_phases}


ACT_FOR_ONE_RUN = {"open-tracking", "start-verifier", "register-model", "finish-pipeline"}


def _tasks(spec) -> dict:
    tasks = {}
    for component in (spec["root"], *spec["components"].values()):
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_only_steps_that_act_for_one_run_are_never_reused(compiled) -> None:
    spec, _ = yaml.safe_load_all(compiled.read_text())
    cached = {
        name for name, task in _tasks(spec).items() if task.get("cachingOptions", {}).get("enableCache")
    }
    steps = set(_tasks(spec)) - {"exit-handler-1"}
    assert steps - cached == ACT_FOR_ONE_RUN
    # A reusable step's inputs must not change from run to run, or KFP's cache never hits.
    assert "{{$.pipeline_job" not in compiled.read_text()


def test_every_step_learns_its_run_id_from_its_pod(compiled) -> None:
    from longrl.steps import RUN_ID_ENV

    spec, platform = yaml.safe_load_all(compiled.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(spec["deploymentSpec"]["executors"])
    for name, config in executors.items():
        assert {"name": RUN_ID_ENV, "fieldPath": "metadata.labels['pipeline/runid']"} in config[
            "fieldPathAsEnv"
        ], name


def test_compiling_is_deterministic(compiled, tmp_path) -> None:
    again = cli.compile_pipeline(tmp_path / "again.yaml")
    assert again.read_text() == compiled.read_text()


def test_parameter_parsing() -> None:
    assert cli.parse_arguments(
        ["preset=tiny", "phase_max_tokens=[100, 200]", "rl_overrides={max_steps: 3}"], None
    ) == {"preset": "tiny", "phase_max_tokens": [100, 200], "rl_overrides": {"max_steps": 3}}
    with pytest.raises(cli.KfpError, match="unknown pipeline parameter"):
        cli.parse_arguments(["learning_rate=1"], None)
    with pytest.raises(cli.KfpError, match="expected name=value"):
        cli.parse_arguments(["preset"], None)


def test_upload_submit_and_schedule_against_a_kfp_server(compiled, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KFP_TOKEN", "t0ken")
    with serve_kfp() as (url, kfp):
        assert cli.main(["upload", "--host", url, "--package", str(compiled), "--version", "v1"]) == 0
        assert cli.main(["upload", "--host", url, "--package", str(compiled), "--version", "v2"]) == 0
        assert len(kfp.pipelines) == 1 and [v["display_name"] for v in kfp.versions] == ["v1", "v2"]
        submit = ["submit", "--host", url, "--package", str(compiled), "--experiment", "nightly"]
        parameters = ["--param", "preset=tiny", "--param", "phase_max_tokens=[1000, 2000]"]
        assert cli.main([*submit, *parameters]) == 0
        (run,) = kfp.runs
        assert run["runtime_config"]["parameters"] == {"preset": "tiny", "phase_max_tokens": [1000, 2000]}
        caching = {
            name: task.get("cachingOptions", {}).get("enableCache", False)
            for name, task in _tasks(run["pipeline_spec"]["pipeline_spec"]).items()
        }
        assert caching["train-sft"] and not caching["start-verifier"]  # each task's own setting
        assert cli.main([*submit, "--no-caching"]) == 0
        sent = _tasks(kfp.runs[-1]["pipeline_spec"]["pipeline_spec"])
        assert not any(task.get("cachingOptions", {}).get("enableCache") for task in sent.values())
        kfp.runs.pop()
        # with Kubernetes settings the client sends the pipeline spec and the platform spec together
        assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "longrl"
        assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]
        assert [e["display_name"] for e in kfp.experiments.values()] == ["nightly"]
        assert (
            cli.main(
                [
                    "schedule",
                    "--host",
                    url,
                    "--package",
                    str(compiled),
                    "--experiment",
                    "nightly",
                    "--cron",
                    "0 0 3 * * 1",
                ]
            )
            == 0
        )
        (recurring,) = kfp.recurring
        assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
        assert set(kfp.auth_headers) == {"Bearer t0ken"}
    out = capsys.readouterr().out
    assert '"run_id"' in out and '"recurring_run_id"' in out


def test_unreachable_or_missing_endpoint_is_a_clear_error(compiled, capsys, monkeypatch) -> None:
    from tests.support.s3_server import free_port

    assert cli.main(["submit", "--host", f"http://127.0.0.1:{free_port()}", "--package", str(compiled)]) == 2
    assert "cannot reach Kubeflow Pipelines at http://127.0.0.1:" in capsys.readouterr().err
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert cli.main(["upload", "--package", str(compiled)]) == 2
    assert "pass --host or set KFP_HOST" in capsys.readouterr().err
