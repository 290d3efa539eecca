from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def evaluate_model(
    trained: Input[Model],
    sft: Input[Model],
    base_model: str,
    stages: bool,
    benchmarks: dict,
    overrides: dict,
    verifier_mode: str,
    verifier_model: str,
    namespace: str,
    launcher: str,
    trainer_image: str,
    gpus_per_worker: int,
    worker_memory_gib: int,
    cluster: dict,
    judge_max_tokens: int,
    tracking_uri: str,
    experiment: str,
    registered_model_name: str,
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[Markdown],
    chart: Output[HTML],
):
    """Scores the model on the long-document QA benchmarks and compares it with the current champion;
    with stages, also the base model, SFT and each earlier RL phase on the same questions (a column each).
    With launcher kuberay the model is served by vLLM on a worker pod's GPUs (a RayJob); else here."""
    import base64
    from pathlib import Path

    from longrl import storage
    from longrl.artifacts import data_location, publish, read_pointer
    from longrl.evaluation.stages import STAGE_PLOT_FILE, STAGE_TABLE_FILE
    from longrl.registry import RegistryConfig
    from longrl.steps import (
        Placement,
        evaluate_step,
        keep_metrics_file,
        pipeline_judge,
        stage_models,
        step_tracking,
    )

    output = data_location(evaluation.uri, evaluation.path)
    trained_location = read_pointer(trained.path).location
    summary = evaluate_step(
        trained_location,
        output,
        benchmarks,
        overrides,
        pipeline_judge(verifier_mode, namespace, judge_max_tokens),
        RegistryConfig(tracking_uri=tracking_uri, registered_model_name=registered_model_name),
        step_tracking(tracking_uri, experiment, "evaluation", {"verifier.model": verifier_model}),
        stage_models(base_model, read_pointer(sft.path).location, trained_location) if stages else None,
        placement=Placement(
            launcher=launcher,
            namespace=namespace,
            image=trainer_image,
            gpus_per_worker=gpus_per_worker,
            worker_memory_gib=worker_memory_gib,
            cluster=cluster,
        ),
    )
    publish(evaluation, output, {"average": summary["average"]})
    metrics.log_metric("average", summary["average"])
    for name, values in summary["benchmarks"].items():
        metrics.log_metric(f"{name}_score", values["score"])
    keep_metrics_file(metrics)
    table, plot = (STAGE_TABLE_FILE, STAGE_PLOT_FILE) if stages else ("comparison.md", "comparison.png")
    Path(report.path).write_text(storage.read_text(storage.join(output, table)))
    png = storage.localize(storage.join(output, plot)).read_bytes()
    Path(chart.path).write_text(
        f'<html><body><img alt="comparison" src="data:image/png;base64,{base64.b64encode(png).decode()}"/></body></html>'
    )
