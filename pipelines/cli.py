"""``python -m pipelines.cli``: compile the pipeline, run it locally, and talk to Kubeflow Pipelines.

    compile           write the pipeline IR YAML (build/longrl_pipeline.yaml)
    run-local         the whole DAG on this machine (kfp.local), embedded defaults
    upload            upload the pipeline (or a new version of it) so the UI can retrain from it
    submit            compile and start a run
    schedule          create a recurring run (cron)
    templates         write the reference RayJob and verifier objects to manifests/base/templates

The Kubeflow endpoint comes from --host or $KFP_HOST, the namespace from --namespace or
$KFP_NAMESPACE, a bearer token from $KFP_TOKEN (never a flag: it would land in shell history).
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PACKAGE = Path("build/longrl_pipeline.yaml")
PIPELINE_NAME = "longrl"
# The runs' pods use this ServiceAccount (manifests/base/rbac): KFP's shared pipeline-runner gets no
# rights from longrl.
SERVICE_ACCOUNT = "longrl-pipeline"


class KfpError(RuntimeError):
    """Kubeflow Pipelines could not be reached or refused a request; the message says which and why."""


def compile_pipeline(output: Path = DEFAULT_PACKAGE) -> Path:
    from kfp import compiler

    from pipelines.longrl_pipeline import longrl_pipeline

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(longrl_pipeline, str(output))
    return output


def kfp_client(host: str | None, namespace: str | None) -> Any:
    """A kfp.Client for the endpoint, checked for reachability (a clear error instead of a long traceback)."""
    import kfp

    host = host or os.environ.get("KFP_HOST")
    if not host:
        raise KfpError(
            "no Kubeflow Pipelines endpoint: pass --host or set KFP_HOST (e.g. http://localhost:8080)"
        )
    try:
        client = kfp.Client(
            host=host,
            namespace=namespace or os.environ.get("KFP_NAMESPACE"),
            existing_token=os.environ.get("KFP_TOKEN"),
        )
        client.get_kfp_healthz(sleep_duration=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means the endpoint is not usable
        raise KfpError(f"cannot reach Kubeflow Pipelines at {host}: {type(exc).__name__}: {exc}") from exc
    return client


def parse_arguments(pairs: list[str], params_file: str | None) -> dict[str, Any]:
    """Pipeline arguments from a YAML/JSON file and ``key=value`` pairs (values parsed as YAML: 1, [1,2], {a: 1})."""
    arguments: dict[str, Any] = {}
    if params_file:
        loaded = yaml.safe_load(Path(params_file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise KfpError(f"{params_file}: expected a mapping of parameter names to values")
        arguments.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise KfpError(f"--param {pair!r}: expected name=value")
        arguments[key.strip()] = yaml.safe_load(value)
    from pipelines.longrl_pipeline import PARAMETERS

    unknown = sorted(set(arguments) - set(PARAMETERS))
    if unknown:
        raise KfpError(f"unknown pipeline parameter(s): {', '.join(unknown)}; known: {', '.join(PARAMETERS)}")
    return arguments


def upload(client: Any, package: Path, version: str | None) -> dict[str, str]:
    """Uploads the pipeline the first time, a new version of it afterwards."""
    version = version or datetime.datetime.now(datetime.UTC).strftime("v%Y%m%d-%H%M%S")
    pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(
            str(package), pipeline_name=PIPELINE_NAME, description="QwenLong-L1 long-context reasoning RL"
        )
        pipeline_id = pipeline.pipeline_id
    created = client.upload_pipeline_version(
        str(package), pipeline_version_name=version, pipeline_id=pipeline_id
    )
    return {"pipeline_id": pipeline_id, "version_id": created.pipeline_version_id, "version": version}


def without_caching(package: Path, output: Path) -> Path:
    """A copy of ``package`` in which no task is reused from KFP's cache.

    The client's ``enable_caching=False`` reaches only the DAG's top-level tasks, not the steps
    inside the exit handler, and ``True`` would even cache the steps that must run every time.
    """
    documents = list(yaml.safe_load_all(package.read_text()))
    spec = documents[0]
    for component in (spec["root"], *spec.get("components", {}).values()):
        for task in component.get("dag", {}).get("tasks", {}).values():
            task.setdefault("cachingOptions", {})["enableCache"] = False
    output.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return output


def submit(
    client: Any,
    package: Path,
    arguments: dict[str, Any],
    experiment: str,
    run_name: str | None,
    caching: bool,
    service_account: str = SERVICE_ACCOUNT,
) -> dict[str, str]:
    """One run; with ``caching`` unchanged steps are reused (each task's own setting decides)."""
    with tempfile.TemporaryDirectory() as scratch:
        if not caching:
            package = without_caching(package, Path(scratch) / package.name)
        run = client.create_run_from_pipeline_package(
            str(package),
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment,
            service_account=service_account,
        )
    return {"run_id": run.run_id}


def schedule(
    client: Any,
    package: Path,
    arguments: dict[str, Any],
    experiment: str,
    name: str,
    cron: str,
    max_concurrency: int,
    service_account: str = SERVICE_ACCOUNT,
) -> dict[str, str]:
    found = client.create_experiment(experiment)
    recurring = client.create_recurring_run(
        experiment_id=found.experiment_id,
        job_name=name,
        cron_expression=cron,
        pipeline_package_path=str(package),
        params=arguments,
        max_concurrency=max_concurrency,
        enabled=True,
        service_account=service_account,
    )
    return {"recurring_run_id": recurring.recurring_run_id}


TEMPLATES_DIR = Path("manifests/base/templates")


def reference_templates() -> dict[str, str]:
    """The objects longrl generates for a cluster run, as YAML documents (file name -> text)."""
    from longrl.launchers.kuberay import KubeRayConfig, build_rayjob, rayjob_name
    from longrl.rewards.judge import JudgeConfig
    from longrl.serving import ClusterVerifierConfig, VerifierConfig, build_verifier_objects
    from longrl.train.config import RLStepConfig

    cluster_verifier = ClusterVerifierConfig()  # the default namespace, where manifests/base expects it
    rl = RLStepConfig(
        model="s3://longrl-artifacts/pipelines/RUN/train-sft/model/model",
        output_dir="s3://longrl-artifacts/pipelines/RUN/train-rl-phase-1/model",
        train_file="s3://longrl-artifacts/pipelines/RUN/prepare-data/data/train-phase1.parquet",
        judge=JudgeConfig(base_url=cluster_verifier.base_url, model="verifier"),
        ray={"num_workers": 8, "use_gpu": True},
    )
    kuberay = KubeRayConfig()
    kuberay.workers.gpus = 8
    rayjob = build_rayjob("rl", rl, kuberay, rayjob_name("RUN", "rl-phase1"))
    verifier = build_verifier_objects(VerifierConfig(model="Qwen/Qwen2.5-1.5B-Instruct"), cluster_verifier)

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # plain YAML, no &anchors
            return True

    header = "# Generated by `make templates` from longrl's code; a reference, not applied by kustomize.\n"
    return {
        "rayjob-rl-phase.yaml": header + yaml.dump(rayjob, Dumper=Dumper, sort_keys=False),
        "verifier.yaml": header + yaml.dump_all(verifier, Dumper=Dumper, sort_keys=False),
    }


def write_templates(directory: Path = TEMPLATES_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in reference_templates().items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


def build_parser() -> argparse.ArgumentParser:
    from pipelines.console import add_console_arguments

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    compile_parser = commands.add_parser("compile", help="write the pipeline IR YAML")
    compile_parser.add_argument("--output", type=Path, default=DEFAULT_PACKAGE)
    local = commands.add_parser("run-local", help="run the whole DAG here with kfp.local")
    local.add_argument(
        "--work-dir",
        default="build/local",
        help="where the run keeps everything it makes (default: %(default)s)",
    )
    local.add_argument("--no-caching", action="store_true", help="run every step, even unchanged ones")
    add_console_arguments(local)
    commands.add_parser("templates", help="write the reference RayJob and verifier objects to manifests/")
    for name, text in (
        ("upload", "upload the pipeline or a new version"),
        ("submit", "compile and start a run"),
        ("schedule", "create a recurring run"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--host", help="Kubeflow Pipelines endpoint (default: $KFP_HOST)")
        sub.add_argument("--namespace", help="Kubeflow namespace (default: $KFP_NAMESPACE)")
        sub.add_argument(
            "--package", type=Path, default=DEFAULT_PACKAGE, help="compiled pipeline (compiled if missing)"
        )
        if name == "upload":
            sub.add_argument("--version", help="version name (default: a UTC timestamp)")
        else:
            sub.add_argument("--experiment", default="longrl", help="KFP experiment")
            sub.add_argument(
                "--param",
                action="append",
                default=[],
                metavar="NAME=VALUE",
                help="pipeline argument (repeatable; value parsed as YAML)",
            )
            sub.add_argument("--params-file", help="YAML/JSON file of pipeline arguments")
            sub.add_argument(
                "--service-account",
                default=SERVICE_ACCOUNT,
                help="ServiceAccount of the run's pods (%(default)s)",
            )
        if name == "submit":
            sub.add_argument("--run-name", help="run name")
            sub.add_argument("--no-caching", action="store_true", help="run every step, even unchanged ones")
        if name == "schedule":
            sub.add_argument("--name", default="longrl-retrain", help="recurring run name")
            sub.add_argument("--cron", required=True, help="cron expression with seconds, e.g. '0 0 3 * * 1'")
            sub.add_argument("--max-concurrency", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "compile":
            print(f"wrote {compile_pipeline(args.output)}")
            return 0
        if args.command == "templates":
            for path in write_templates():
                print(f"wrote {path}")
            return 0
        if args.command == "run-local":
            from pipelines.local_run import main as run_local

            return run_local(
                [
                    *("--work-dir", args.work_dir, "--artifacts", args.artifacts),
                    *(["--no-caching"] if args.no_caching else []),
                    *(["--verbose"] if args.verbose else []),
                ]
            )
        arguments = {} if args.command == "upload" else parse_arguments(args.param, args.params_file)
        client = kfp_client(args.host, args.namespace)
        package = args.package if args.package.is_file() else compile_pipeline(args.package)
        if args.command == "upload":
            outcome = upload(client, package, args.version)
        elif args.command == "submit":
            outcome = submit(
                client,
                package,
                arguments,
                args.experiment,
                args.run_name,
                not args.no_caching,
                args.service_account,
            )
        else:
            outcome = schedule(
                client,
                package,
                arguments,
                args.experiment,
                args.name,
                args.cron,
                args.max_concurrency,
                args.service_account,
            )
    except KfpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the API's answer, shortened to what a person needs
        print(f"error: Kubeflow Pipelines refused the request: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(outcome, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
