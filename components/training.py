from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def train_sft(
    base_model: str,
    data: Input[Dataset],
    validation_data: Input[Dataset],
    preset: str,
    overrides: dict,
    launcher: str,
    namespace: str,
    trainer_image: str,
    verl_image: str,
    ray_workers: int,
    gpus_per_worker: int,
    gpu_memory_gib: float,
    worker_memory_gib: int,
    shared_volume_claim: str,
    cluster: dict,
    tracking_uri: str,
    experiment: str,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Warm-up SFT as a Ray job (local Ray or a KubeRay RayJob); scored on the RL validation split."""
    from longrl.artifacts import data_location, publish, read_pointer
    from longrl.steps import Placement, keep_metrics_file, sft_step, step_tracking

    output = data_location(model.uri, model.path)
    result = sft_step(
        base_model,
        read_pointer(data.path).location,
        read_pointer(validation_data.path).location,
        output,
        preset,
        overrides,
        Placement(
            launcher=launcher,
            namespace=namespace,
            image=trainer_image,
            verl_image=verl_image,
            workers=ray_workers,
            gpus_per_worker=gpus_per_worker,
            gpu_memory_gib=gpu_memory_gib,
            worker_memory_gib=worker_memory_gib,
            shared_volume_claim=shared_volume_claim,
            cluster=cluster,
        ),
        step_tracking(tracking_uri, experiment, "sft"),
    )
    publish(model, output, {"step": "sft", "global_step": result["global_step"]})
    for key, value in result.get("validation", {}).items():
        metrics.log_metric(key.replace("/", "_"), value)
    keep_metrics_file(metrics)


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def train_rl_phase(
    start: Input[Model],
    data: Input[Dataset],
    phase: int,
    phase_max_tokens: list,
    preset: str,
    overrides: dict,
    algorithm: str,
    reward: str,
    verifier_mode: str,
    verifier_model: str,
    judge_max_tokens: int,
    launcher: str,
    namespace: str,
    trainer_image: str,
    verl_image: str,
    ray_workers: int,
    gpus_per_worker: int,
    gpu_memory_gib: float,
    worker_memory_gib: int,
    shared_volume_claim: str,
    cluster: dict,
    tracking_uri: str,
    experiment: str,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """One curriculum RL phase (GRPO/DAPO, hybrid reward, retrospective sampling) as a Ray job.

    The judge is this run's verifier (looked up, not an input, so that an unchanged phase is reused);
    verifier_model is an input so that a different judge is a different phase.
    """
    from longrl.artifacts import data_location, publish, read_pointer
    from longrl.steps import Placement, keep_metrics_file, pipeline_judge, rl_step, step_tracking

    output = data_location(model.uri, model.path)
    result = rl_step(
        read_pointer(start.path).location,
        read_pointer(data.path).location,
        phase,
        [int(bound) for bound in phase_max_tokens],
        output,
        preset,
        overrides,
        algorithm,
        reward,
        pipeline_judge(verifier_mode, namespace, judge_max_tokens),
        Placement(
            launcher=launcher,
            namespace=namespace,
            image=trainer_image,
            verl_image=verl_image,
            workers=ray_workers,
            gpus_per_worker=gpus_per_worker,
            gpu_memory_gib=gpu_memory_gib,
            worker_memory_gib=worker_memory_gib,
            shared_volume_claim=shared_volume_claim,
            cluster=cluster,
        ),
        step_tracking(tracking_uri, experiment, f"rl-phase{phase}", {"verifier.model": verifier_model}),
    )
    publish(model, output, {"step": f"rl-phase{phase}", "phase": phase, "global_step": result["global_step"]})
    for key, value in result.get("validation", {}).items():
        metrics.log_metric(key.replace("/", "_"), value)
    metrics.log_metric("retrospective_drawn", result["curriculum"]["retrospective_drawn"])
    keep_metrics_file(metrics)
