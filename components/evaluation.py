from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def evaluate_model(
    trained: Input[Model],
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
    """Scores the model on the long-document QA benchmarks and compares it with the current champion.
    With launcher kuberay the model is served by vLLM on a worker pod's GPUs (a RayJob); else here."""
    import base64
    from pathlib import Path

    from longrl import storage
    from longrl.artifacts import data_location, publish, read_pointer
    from longrl.registry import RegistryConfig
    from longrl.steps import Placement, evaluate_step, keep_metrics_file, pipeline_judge, step_tracking

    output = data_location(evaluation.uri, evaluation.path)
    summary = evaluate_step(
        read_pointer(trained.path).location,
        output,
        benchmarks,
        overrides,
        pipeline_judge(verifier_mode, namespace, judge_max_tokens),
        RegistryConfig(tracking_uri=tracking_uri, registered_model_name=registered_model_name),
        step_tracking(tracking_uri, experiment, "evaluation", {"verifier.model": verifier_model}),
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
    Path(report.path).write_text(storage.read_text(storage.join(output, "comparison.md")))
    png = storage.localize(storage.join(output, "comparison.png")).read_bytes()
    Path(chart.path).write_text(
        f'<html><body><img alt="comparison" src="data:image/png;base64,{base64.b64encode(png).decode()}"/></body></html>'
    )
