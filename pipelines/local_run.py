"""``make run``: the whole DAG on this machine with ``kfp.local``, on embedded defaults.

Everything is made here first: the tiny Qwen2 model (base model and verifier), generated SFT,
RL and benchmark files, an MLflow store (SQLite + local artifacts). Then the very pipeline a
cluster runs is executed by ``kfp.local``'s subprocess runner, training through the local
launcher (a local Ray) and the verifier as a local ``vllm serve`` process.
"""

import contextlib
import json
import logging
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from longrl.data.synthetic import GenerateConfig, generate, generate_records
from longrl.evaluation.benchmarks import write_benchmark_file
from longrl.tiny_model import LEARNER_SHAPE, TinyModelConfig, build_tiny_model

# CPU-sized overrides on top of the 'tiny' preset: minutes, not hours.
LOCAL_SFT = {
    "max_steps": 500,
    "per_device_train_batch_size": 16,
    "learning_rate": 2e-3,
    "lr_scheduler_type": "constant",  # held-out answers come late (a phase change near step 300): no decay
    "save_steps": 200,
    "validation_max_examples": 24,
}
LOCAL_RL = {
    "max_steps": 4,
    "save_steps": 2,
    "train_batch_prompts": 4,
    "generation_batch_prompts": 4,
    "validation_max_examples": 24,
    "learning_rate": 1e-5,
}
# Greedy over every held-out question (24 per benchmark): sampling at the recipe's 0.7 moved one stage's
# score by up to 17 points between two runs of the same model, more than training did.
LOCAL_EVAL = {
    "max_input_tokens": 512,
    "max_examples": 24,
    "generation": {
        "max_new_tokens": 64,
        "samples": 1,
        "dtype": "float32",
        "temperature": 0.0,
        "enforce_eager": True,  # compiling each stage's model would take longer than its 72 answers
    },
}
PHASE_MAX_TOKENS = [320, 448]
# The learner shape, given in-context copying first (see longrl.tiny_model): without it, no amount of
# fine-tuning that fits a local run teaches the model to copy an answer out of a document.
LOCAL_BASE_MODEL = {**LEARNER_SHAPE, "copy_pretraining_steps": 1000}
# What a local run can teach a 2-layer model in a few CPU minutes: founder questions and founding-date
# comparisons over short company histories (copying a name out of the document). SFT sees one hop; RL also
# two hops and longer documents (the curriculum's second phase), with half the references written surname
# first, which only the judge accepts. The facts of three companies alone are ~190 tokens: SFT's documents
# get no filler beyond them (the longest batch then pads to ~320 tokens, not ~390: SFT is ~20% faster).
_TRAINED_LENGTHS = {"doc_tokens_min": 32, "doc_tokens_max": 120, "distractors": 2}
_RL_LENGTHS = {"doc_tokens_min": 32, "doc_tokens_max": 320}
LOCAL_SFT_DATA = {"kinds": ["multihop"], "max_hops": 1, **_TRAINED_LENGTHS}
LOCAL_RL_DATA = {"kinds": ["multihop"], "max_hops": 2, "alternate_references": 0.5, **_RL_LENGTHS}
# Held-out questions (seeds training never used): the taught kind (musique), two hops with references
# written surname first (hotpotqa), and arithmetic over a revenue table, which the local run does not
# teach (docmath: an honest 0 beside the others).
LOCAL_BENCHMARKS: dict[str, dict[str, Any]] = {
    "musique": {"kinds": ["multihop"], "max_hops": 1, **_TRAINED_LENGTHS},
    "hotpotqa": {"kinds": ["multihop"], "max_hops": 2, "alternate_references": 1.0, **_TRAINED_LENGTHS},
    "docmath": {"kinds": ["docmath"], **_RL_LENGTHS},
}


def prepare_inputs(work: Path) -> dict[str, Any]:
    """The tiny model and generated data a local run trains and evaluates on."""
    model = work / "base-model"
    if not (model / "config.json").is_file():
        build_tiny_model(TinyModelConfig(output_dir=str(model), **LOCAL_BASE_MODEL))
    data = work / "data"
    if not (data / "sft.jsonl").is_file():
        generate(
            GenerateConfig(
                output=str(data / "sft.jsonl"), num_records=6400, sft=True, seed=1, **LOCAL_SFT_DATA
            )
        )
        generate(GenerateConfig(output=str(data / "rl.jsonl"), num_records=400, seed=2, **LOCAL_RL_DATA))
    benchmarks = {}
    for name, settings in LOCAL_BENCHMARKS.items():
        path = data / "eval" / f"{name}.jsonl"
        if not path.is_file():
            held_out = GenerateConfig(output="-", num_records=24, seed=10 + len(benchmarks), **settings)
            write_benchmark_file(name, list(generate_records(held_out)), path)
        benchmarks[name] = str(path)
    return {
        "base_model": str(model),
        "sft_data": [str(data / "sft.jsonl")],
        "rl_data": [str(data / "rl.jsonl")],
        "eval_benchmarks": benchmarks,
    }


def local_arguments(work: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    tracking = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    return {
        **inputs,
        "phase_max_tokens": PHASE_MAX_TOKENS,
        "sft_max_tokens": PHASE_MAX_TOKENS[-1],
        "validation_fraction": 0.1,
        "preset": "tiny",
        "sft_overrides": LOCAL_SFT,
        "rl_overrides": LOCAL_RL,
        "eval_overrides": LOCAL_EVAL,
        "reward": "hybrid",
        "verifier_mode": "local",
        "verifier_model": inputs["base_model"],
        "train_judge": True,  # the verifier serves a tiny judge trained in the run (the base model cannot judge)
        "verifier_max_model_len": 2048,
        "judge_max_tokens": 64,
        "eval_stages": True,
        "launcher": "local",
        "mlflow_tracking_uri": tracking,
        "mlflow_experiment": "longrl-local",
        "registered_model_name": "longrl-local",
    }


def prepare_tracking(work: Path, tracking_uri: str, experiment: str) -> None:
    """MLflow's experiment with its artifacts under the run directory (not wherever a step runs)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment, artifact_location=(work / "mlartifacts").resolve().as_uri())


class ReusedTasks(logging.Handler):
    """Collects and prints the tasks kfp.local serves from its cache.

    kfp.local says so with ``logging.info`` on the root logger, which prints nothing by default.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.tasks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"Task (\S+) cache hit", record.getMessage())
        if found and "kfp" in record.pathname:
            self.tasks.append(found.group(1))
            print(record.getMessage(), flush=True)


def run(
    work_dir: str, caching: bool = True, artifacts: str = "local", verbose: bool = False
) -> dict[str, Any]:
    """Runs the DAG in ``work_dir``; with ``caching``, steps whose inputs did not change since an
    earlier run in the same directory are reused (kfp.local's cache, under ``kfp/.kfp_cache``).
    With ``artifacts="s3"`` the inputs and outputs are in the local S3 server ``local_bucket`` runs.
    Unless ``verbose``, each step prints one line and its output goes to a file under ``logs/``."""
    from kfp import local

    from longrl.steps import RUN_ID_ENV
    from pipelines.console import StepConsole, console_stream, count_steps, quietly
    from pipelines.longrl_pipeline import longrl_pipeline

    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["LONGRL_CACHE_DIR"] = str(work / "cache")
    os.environ["LONGRL_WATCH_PID"] = str(os.getpid())  # the local verifier stops if this process dies
    run_id = f"local-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    os.environ[RUN_ID_ENV] = run_id  # on a cluster, each step pod's pipeline/runid label
    started = time.monotonic()
    reused = ReusedTasks()
    steps = None
    if not verbose:
        total = count_steps(longrl_pipeline.pipeline_spec)
        steps = StepConsole(work / "logs" / run_id, total, console_stream(), lambda: reused.tasks)
    with quietly(steps, "preparing the tiny model, generated data and MLflow store", "inputs"):
        inputs = prepare_inputs(work)
        arguments = local_arguments(work, inputs)
        prepare_tracking(work, arguments["mlflow_tracking_uri"], arguments["mlflow_experiment"])
    if artifacts == "s3":
        from pipelines.local_s3 import upload_inputs

        with quietly(steps, "uploading the inputs to the local S3 bucket", "upload"):
            arguments.update(upload_inputs(inputs))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(work / "kfp"),
        raise_on_error=True,
        enable_caching=caching,
    )
    root = logging.getLogger()
    root.addHandler(reused)
    level = root.level
    root.setLevel(min(level, logging.INFO))
    try:
        with steps.attached() if steps else contextlib.nullcontext():
            longrl_pipeline(**arguments)
    finally:
        root.removeHandler(reused)
        root.setLevel(level)
    return {
        "work_dir": str(work),
        "run_id": run_id,
        "reused": reused.tasks,
        "logs": str(steps.log_dir) if steps else None,
        "artifacts": artifacts,
        "arguments": arguments,
        "seconds": round(time.monotonic() - started, 1),
    }


def summary(outcome: dict[str, Any]) -> str:
    """Where to look after a local run: MLflow, the registered version, the evaluation table."""
    from longrl.registry import RegistryConfig, status

    arguments = outcome["arguments"]
    work = Path(outcome["work_dir"])
    registry = status(
        RegistryConfig(
            tracking_uri=arguments["mlflow_tracking_uri"],
            registered_model_name=arguments["registered_model_name"],
        )
    )
    tables = sorted(
        [*work.glob("kfp/**/evaluation/stages.md"), *work.glob("kfp/**/evaluation/comparison.md")],
        key=lambda p: (p.stat().st_mtime, p.name == "stages.md"),
    )
    judges = sorted(work.glob("kfp/**/judge/judge.json"), key=lambda p: p.stat().st_mtime)
    if outcome.get("artifacts") == "s3":  # the evaluation is in the bucket; its pointer says where
        from pipelines.local_s3 import bucket_outputs

        tables = bucket_outputs(work, "evaluation", ("comparison.md", "stages.md"))
        judges = bucket_outputs(work, "judge", ("judge.json",))
    latest = registry["versions"][-1] if registry["versions"] else None
    lines = [
        f"longrl local run finished in {outcome['seconds']} s; everything is under {work}",
        "",
        f"MLflow UI:        .venv/bin/mlflow ui --backend-store-uri {arguments['mlflow_tracking_uri']} --port 5000",
        f"Registered model: {registry['name']} version {latest['version'] if latest else '-'} "
        f"(aliases: {json.dumps(registry['aliases'])})",
        f"Evaluation table: {tables[-1] if tables else '-'}",
        judge_line(judges[-1] if judges else None),
        "Reused unchanged: " + (", ".join(outcome["reused"]) or "nothing (every step ran)"),
        *([f"Step logs:        {outcome['logs']}/ (one file per step)"] if outcome.get("logs") else []),
    ]
    if tables:
        lines += ["", tables[-1].read_text()]
    return "\n".join(lines)


def judge_line(result_file: Path | None) -> str:
    """The trained judge's measured accuracy (or that the configured judge model was served)."""
    result = json.loads(result_file.read_text()) if result_file else {}
    if "accuracy" not in result:
        return f"Judge:            {result.get('served_model', '-')} (as configured)"
    families = ", ".join(f"{name} {value:.2f}" for name, value in result["by_family"].items())
    # judge.json says "served" once the step decided; a file without it claims neither
    served = {
        True: "; served",
        False: "; NOT served: measured below min_accuracy, the run kept the rule reward",
    }.get(result.get("served"), "")
    return (
        f"Judge:            trained here, accuracy {result['accuracy']:.3f} on {result['pairs']} held-out pairs "
        f"({families}; trained in {result['train_seconds']} s){served}"
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipelines.cli run-local", description=__doc__)
    parser.add_argument(
        "--work-dir",
        default="build/local",
        help="where the run keeps everything it makes (default: %(default)s)",
    )
    parser.add_argument("--no-caching", action="store_true", help="run every step, even unchanged ones")
    from pipelines.console import add_console_arguments

    add_console_arguments(parser)
    args = parser.parse_args(argv)
    work = Path(args.work_dir).resolve()
    with contextlib.ExitStack() as stack:
        if args.artifacts == "s3":  # up until the summary has read the evaluation from the bucket
            from pipelines.local_s3 import local_bucket

            print("starting a local S3 server (SeaweedFS) ... ", end="", flush=True)
            endpoint = stack.enter_context(local_bucket(work, work / "kfp"))
            print(f"{endpoint}, its data under {work / 'seaweedfs'}")
        try:
            outcome = run(
                args.work_dir, caching=not args.no_caching, artifacts=args.artifacts, verbose=args.verbose
            )
        except RuntimeError as exc:  # kfp.local names the failed task; its log is above, or in logs/
            print(f"error: the local run failed: {exc}", file=sys.stderr)
            print(
                f"everything it made is under {work} (each step's log under {work / 'logs'})", file=sys.stderr
            )
            return 1
        print(summary(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
