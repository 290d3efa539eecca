"""make bench: the report's arithmetic (median, ratio, targets, comparison), the CLI, and a real smoke run."""

import json

import pytest

from longrl.bench import gpu_memory, pipeline, rewards
from longrl.bench.cli import main
from longrl.bench.config import BenchConfig
from longrl.bench.core import BenchContext, Skip
from longrl.bench.judge_server import serve_judge
from longrl.bench.report import (
    BenchmarkResult,
    Report,
    Target,
    change_verdict,
    compare_reports,
    figure,
    read_report,
    summarize,
    to_markdown,
    write_report,
)
from longrl.bench.runner import run_benchmarks


def make_report(**figures) -> Report:
    """A report with one benchmark 'b' holding figures given as name=(values, baseline, better)."""
    made = [
        figure(name, "x/s", v, b, baseline_name="base", better=better)
        for name, (v, b, better) in figures.items()
    ]
    return Report(
        created="2026-01-01T00:00:00+00:00",
        machine={"hostname": "h", "cpus_usable": 2, "git": {"commit": "abc", "dirty": False}},
        config={"size": "small", "repeats": 3},
        benchmarks={
            "b": BenchmarkResult(figures=made),
            "g": BenchmarkResult(status="skipped", reason="no GPU"),
        },
    )


def test_summarize_gives_median_min_max() -> None:
    stat = summarize([3.0, 1.0, 10.0])
    assert (stat.median, stat.min, stat.max) == (3.0, 1.0, 10.0)
    assert summarize([1.0, 2.0, 3.0, 4.0]).median == 2.5
    with pytest.raises(ValueError):
        summarize([])


def test_ratio_is_median_over_median_and_checks_the_target() -> None:
    fig = figure(
        "f", "s", [11.0, 12.0, 30.0], [10.0, 10.0, 9.0], better="lower", target=Target(op="<", bound=1.1)
    )
    assert fig.ratio == pytest.approx(1.2)
    assert fig.met is False
    fast = figure("f", "s", [10.5], [10.0], target=Target(op="<", bound=1.1))
    assert fast.met is True
    assert figure("f", "s", [1.0]).ratio is None  # no baseline
    assert figure("f", "s", [1.0], [0.0]).ratio is None  # a zero baseline has no ratio
    assert Target(op=">", bound=0.5).met(0.7) and Target(op=">", bound=0.5).met(None) is None


def test_change_verdict_follows_the_better_direction() -> None:
    assert change_verdict(0.2, "higher", 0.05) == "better"
    assert change_verdict(0.2, "lower", 0.05) == "worse"
    assert change_verdict(-0.02, "lower", 0.05) == "same"
    assert change_verdict(None, "higher", 0.05) == "n/a"


def test_compare_reports_per_figure() -> None:
    old = make_report(
        fast=([200.0], [100.0], "higher"), slow=([12.0], [10.0], "lower"), gone=([1.0], [1.0], "higher")
    )
    new = make_report(
        fast=([300.0], [100.0], "higher"), slow=([12.0], [10.0], "lower"), added=([1.0], [1.0], "higher")
    )
    rows = {row["figure"]: row for row in compare_reports(old, new)}
    assert rows["b/fast"]["old_ratio"] == 2.0 and rows["b/fast"]["new_ratio"] == 3.0
    assert rows["b/fast"]["ratio_change"] == pytest.approx(0.5)
    assert rows["b/fast"]["verdict"] == "better"
    assert rows["b/slow"]["verdict"] == "same"
    assert rows["b/gone"]["new_ratio"] is None and rows["b/gone"]["verdict"] == "n/a"
    assert rows["b/added"]["old_ratio"] is None


def test_report_round_trips_and_renders(tmp_path) -> None:
    report = make_report(fast=([200.0, 210.0, 190.0], [100.0, 100.0, 100.0], "higher"))
    json_path, markdown_path = write_report(report, tmp_path)
    assert read_report(json_path) == report
    first = json_path.read_text()
    write_report(report, tmp_path)
    assert json_path.read_text() == first  # stable output
    assert json.loads(first)["benchmarks"]["b"]["figures"][0]["ratio"] == 2.0
    markdown = markdown_path.read_text()
    assert "| fast | 200 (190–210) | x/s | base | 100 (100–100) | 2 | higher |" in markdown
    assert "skipped: no GPU" in to_markdown(report)


def test_config_selection() -> None:
    assert "pipeline" not in BenchConfig().selected()
    assert "pipeline" in BenchConfig(size="full").selected()
    assert BenchConfig(only="rollout,rewards").selected() == ["rewards", "rollout"]
    assert BenchConfig(only=["pipeline"]).selected() == ["pipeline"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        BenchConfig(only="nope")
    assert not BenchConfig().time_launcher() and BenchConfig(size="full").time_launcher()


def test_cli_compare_and_bad_options(tmp_path, capsys) -> None:
    write_report(make_report(fast=([200.0], [100.0], "higher")), tmp_path / "old")
    write_report(make_report(fast=([100.0], [100.0], "higher")), tmp_path / "new")
    assert main(["compare", str(tmp_path / "old" / "bench.json"), str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "| b/fast | 2 | 1 | -50.0% |" in out and "worse" in out
    assert main(["--only", "nope"]) == 2
    assert main(["compare", str(tmp_path / "missing.json"), str(tmp_path / "new")]) == 2


def test_gpu_memory_grid_logic_without_a_gpu() -> None:
    def step_for(limit):
        def step():
            if limit < 0:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

        return step

    assert gpu_memory.measure(step_for(-1), 2, lambda: None).fits is False
    fitted = gpu_memory.measure(step_for(1), 2, lambda: None)
    assert fitted.fits and len(fitted.seconds) == 2
    with pytest.raises(ValueError):
        gpu_memory.measure(lambda: (_ for _ in ()).throw(ValueError("a real bug")), 1, lambda: None)
    grid = {
        "plain": {8192: gpu_memory.StepResult(True, [1.0], 10.0), 20480: gpu_memory.StepResult(False)},
        "checkpointing": {
            8192: gpu_memory.StepResult(True, [2.0], 5.0),
            20480: gpu_memory.StepResult(True, [4.0], 8.0),
        },
    }
    figures = {f.name: f for f in gpu_memory.grid_figures(grid, completion=0)}
    assert figures["plain/largest_prompt"].value.median == 8192
    assert figures["checkpointing/largest_prompt"].ratio == 2.5
    assert figures["8k/checkpointing/tokens_per_s"].ratio == 0.5
    assert figures["8k/checkpointing/peak_memory"].ratio == 0.5
    assert figures["20k/checkpointing/tokens_per_s"].ratio is None  # plain did not fit


def test_gpu_memory_records_the_planners_prediction_over_the_measured_peak() -> None:
    measured = {"checkpointing": {8192: gpu_memory.StepResult(True, [1.0], 20.0)}}
    [planned] = gpu_memory.planner_figures(measured, completion=512, gpu_memory_gib=80)
    predicted = gpu_memory.planner_prediction(gpu_memory.VARIANTS[1], 8192, 512, 80)
    assert planned.name == "planner/8k/checkpointing/predicted_peak"
    assert planned.value.median == predicted and planned.ratio == pytest.approx(predicted / 20.0)
    assert predicted > gpu_memory.planner_prediction(gpu_memory.VARIANTS[1], 4096, 512, 80)
    # the planner is asked about the model the benchmark builds: Qwen2.5-1.5B's shape
    from longrl.plan import BUILTIN_SHAPES, ModelShape

    built = ModelShape.from_config(gpu_memory.qwen2_1_5b_config().to_dict(), name="x")
    assert built.parameters == BUILTIN_SHAPES["Qwen/Qwen2.5-1.5B"].parameters


def test_gpu_memory_steps_a_tiny_model_on_cpu() -> None:
    import torch
    from transformers import Qwen2Config

    config = Qwen2Config(
        vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1, use_cache=False,
    )  # fmt: skip
    stepper = gpu_memory.Stepper(config, "cpu", torch.bfloat16)
    variants = [v for v in gpu_memory.VARIANTS if not v.fused_loss]
    grid = gpu_memory.measure_grid(stepper, variants, [32, 64], completion=8, repeats=1)
    assert all(r.fits for results in grid.values() for r in results.values())
    if not torch.cuda.is_available():
        with pytest.raises(Skip, match="no CUDA"):
            gpu_memory.run(BenchContext(BenchConfig()))


def test_pipeline_log_counts(tmp_path) -> None:
    log = (
        "Executing task prepare\nTask train cache hit (key=abc); skipping execution.\n"
        "Executing task eval\nalready holds this\ncache hit rate of the judge"
    )
    assert pipeline.count_log(log) == {"executed": 2, "cache_hits": 1, "longrl_skips": 1}


def test_judge_server_answers_like_a_verifier() -> None:
    import asyncio

    from longrl.rewards import JudgeConfig, LLMJudge

    async def ask(url):
        async with LLMJudge(JudgeConfig(base_url=url, model="v", max_retries=0)) as judge:
            return await judge.judge("q", "Paris", "paris"), await judge.judge("q", "Rome", "paris")

    with serve_judge(0.0) as (url, stats):
        assert asyncio.run(ask(url)) == (True, False)
    assert stats.requests == 2


def test_reward_cases_cover_every_route() -> None:
    cases = rewards.rule_cases(300, seed=0)
    assert {str(rewards.answer_kind(c.data_source)) for c in cases} == {"numeric", "choice", "text"}
    judged = rewards.judged_cases(cases, 10)
    assert len(judged) == 10 and all(
        rewards.rule_reward(c.data_source, c.response, c.ground_truth) < 1 for c in judged
    )


def test_smoke_rewards_benchmark(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(
        rewards.SIZES, "small", rewards.Sizes(rule_responses=300, rule_passes=1, judge_items=8)
    )
    report = run_benchmarks(
        BenchConfig(
            output_dir=str(tmp_path), only="rewards", repeats=2, judge_latency_ms=5, judge_concurrency=4
        )
    )
    result = report.benchmarks["rewards"]
    assert result.status == "ok", result.reason
    figures = {f.name: f for f in result.figures}
    assert {
        "rule/mixed",
        "rule/numeric",
        "rule/choice",
        "rule/text",
        "hybrid/concurrency",
        "hybrid/warm_cache",
    } <= set(figures)
    assert all(len(f.value.samples) == 2 and f.ratio for f in figures.values())
    assert figures["hybrid/concurrency"].ratio > 1.5  # 4 requests in flight beat 1
    assert result.details["server_max_in_flight"] <= 4
    assert (tmp_path / "bench.json").is_file() and (tmp_path / "bench.md").is_file()


def test_smoke_cli_data_prep_and_gpu_skip(tmp_path, monkeypatch, capsys) -> None:
    from longrl.bench import data_prep

    monkeypatch.setitem(data_prep.SIZES, "small", data_prep.Sizes(documents=12, doc_tokens=300))
    assert main(["--output-dir", str(tmp_path), "--only", "data_prep,gpu_memory", "--repeats", "1"]) == 0
    report = read_report(tmp_path / "bench.json")
    assert report.benchmarks["data_prep"].status == "ok", report.benchmarks["data_prep"].reason
    assert {f.name for f in report.benchmarks["data_prep"].figures} == {
        "prepare/end_to_end",
        "prepare/tokenise",
    }
    assert report.machine["git"]["commit"] and report.machine["cpu_count"]
    import torch

    if not torch.cuda.is_available():
        assert report.benchmarks["gpu_memory"].status == "skipped"
    assert "## data_prep" in capsys.readouterr().out
