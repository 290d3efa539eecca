"""The quiet console of ``make run``: one line per kfp.local task, each task's output in its own file."""

import io
import logging
import os
import subprocess
import sys

import pytest
from kfp import dsl, local
from kfp.dsl import Metrics, Output
from pipelines.console import StepConsole, count_steps, key_figures, redirected, step_line


def test_a_step_line_gives_the_outcome_time_and_key_figures() -> None:
    metrics = Metrics(name="metrics", uri="unused")
    for key, value in (("val_accuracy", 0.41234), ("val_examples", 24.0), ("tokens", 1234.5)):
        metrics.log_metric(key, value)
    returned = '{"version": "3", "promoted": true, "gate": [1], "name": "longrl"}'
    figures = key_figures({"metrics": metrics, "Output": returned})
    assert figures == {
        "val_accuracy": "0.412",
        "val_examples": "24",
        "tokens": "1234",
        "version": "3",
        "promoted": "true",
    }
    assert step_line("done", 83.6, figures) == (
        "done in 84 s  val_accuracy 0.412 val_examples 24 tokens 1234 version 3 promoted true"
    )
    assert step_line("reused", 0.1, {}) == "reused (unchanged since an earlier run)"
    assert step_line("failed", 12, {}) == "FAILED after 12 s"
    assert key_figures({"Output": "http://127.0.0.1:8000/v1"}) == {"Output": "http://127.0.0.1:8000/v1"}
    counts = Metrics(name="stats", uri="unused")
    for key, value in (
        ("rejected_invalid", 0),
        ("rows_read", 400),
        ("rejected_duplicate", 0),
        ("rows_used", 266),
    ):
        counts.log_metric(key, value)
    assert list(key_figures({"stats": counts})) == [
        "rows_read",
        "rows_used",
        "rejected_invalid",
        "rejected_duplicate",
    ]


def test_everything_written_while_redirected_goes_to_the_file(tmp_path, capfd) -> None:
    log = tmp_path / "logs" / "step.log"
    with redirected(log):
        print("from print")
        os.write(1, b"from descriptor 1\n")
        os.write(2, b"from descriptor 2\n")
        subprocess.run(
            [sys.executable, "-c", "import sys; print('from a child'); print('child err', file=sys.stderr)"]
        )
    print("after")
    assert log.read_text().splitlines() == [
        "from print",
        "from descriptor 1",
        "from descriptor 2",
        "from a child",
        "child err",
    ]
    assert capfd.readouterr().out == "after\n"


def test_the_step_count_is_the_compiled_pipelines_executors() -> None:
    from pipelines.longrl_pipeline import longrl_pipeline

    spec = longrl_pipeline.pipeline_spec
    assert count_steps(spec) == len(spec.deployment_spec["executors"]) >= 10


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def count_words(text: str, metrics: Output[Metrics]):
    import json
    import os

    print("a noisy line from the step")
    metrics.log_metric("words", len(text.split()))
    os.makedirs(os.path.dirname(metrics.path), exist_ok=True)
    with open(
        metrics.path, "w"
    ) as handle:  # kfp.local's cache wants the file (longrl.steps.keep_metrics_file)
        json.dump(metrics.metadata, handle)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def shout(text: str) -> str:
    if text == "fail":
        raise ValueError("the step broke here")
    return text.upper()


@dsl.pipeline
def noisy(text: str):
    shout(text=text).after(count_words(text=text))


def test_a_kfp_local_run_prints_one_line_per_task_and_keeps_each_log(tmp_path, capfd) -> None:
    from pipelines.local_run import ReusedTasks

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp"),
        raise_on_error=True,
        enable_caching=True,
    )
    reused = ReusedTasks()
    root = logging.getLogger()
    root.addHandler(reused)
    level = root.level
    root.setLevel(logging.INFO)
    console = io.StringIO()
    try:
        for attempt in ("first", "again"):
            steps = StepConsole(tmp_path / "logs" / attempt, 2, console, lambda: reused.tasks)
            with steps.attached():
                noisy(text="three little words")
        steps = StepConsole(tmp_path / "logs" / "failing", 2, console, lambda: reused.tasks)
        with pytest.raises(RuntimeError), steps.attached():
            noisy(text="fail")
    finally:
        root.removeHandler(reused)
        root.setLevel(level)
    lines = console.getvalue().splitlines()
    assert lines[0].startswith("[1/2] count-words ... done in ") and lines[0].endswith(" s  words 3"), lines
    assert lines[1].startswith("[2/2] shout ... done in ") and lines[1].endswith(
        " s  Output THREE LITTLE WORDS"
    )
    assert lines[2:4] == [
        "[1/2] count-words ... reused (unchanged since an earlier run)  words 3",
        "[2/2] shout ... reused (unchanged since an earlier run)  Output THREE LITTLE WORDS",
    ]
    failed = next(line for line in lines[4:] if "shout" in line)
    assert "FAILED after" in failed
    assert f"its log: {steps.failed[0]}" in console.getvalue()
    assert "ValueError: the step broke here" in console.getvalue()  # the log's tail
    first = sorted((tmp_path / "logs" / "first").iterdir())
    assert [p.name for p in first] == ["01-count-words.log", "02-shout.log", "kfp.log"]
    assert "a noisy line from the step" in first[0].read_text()
    assert "Running pipeline" in first[2].read_text()
    assert capfd.readouterr().out == ""  # nothing of kfp.local's reached the terminal


def test_the_summary_says_whether_the_trained_judge_was_served(tmp_path) -> None:
    import json

    from pipelines.local_run import judge_line

    measured = {"accuracy": 0.79, "pairs": 400, "by_family": {"number": 0.7}, "train_seconds": 250.0}
    result = tmp_path / "judge.json"
    result.write_text(json.dumps({**measured, "served": False}))
    assert "accuracy 0.790 on 400 held-out pairs" in judge_line(result)
    assert "NOT served" in judge_line(result)
    result.write_text(json.dumps({**measured, "served": True}))
    assert judge_line(result).endswith("; served")
    result.write_text(json.dumps(measured))  # written before the step decided whether to serve it
    assert "served" not in judge_line(result)
