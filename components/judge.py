from kfp import dsl
from kfp.dsl import Metrics, Model, Output

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def build_judge(
    base_model: str,
    verifier_model: str,
    train: bool,
    tracking_uri: str,
    experiment: str,
    judge: Output[Model],
    metrics: Output[Metrics],
) -> str:
    """The model the verifier serves: verifier_model as configured, or (train) a tiny judge trained here on
    generated equivalence pairs, with its accuracy on held-out pairs. Returns the model's location."""
    from longrl.artifacts import data_location, publish
    from longrl.serving.judge_model import JudgeBuildConfig, judge_metrics, judge_step
    from longrl.steps import keep_metrics_file, step_tracking

    output = data_location(judge.uri, judge.path)
    config = JudgeBuildConfig(base_model=base_model, output_dir=output)
    if train:
        config.tracking = step_tracking(tracking_uri, experiment, "judge")
    served, result = judge_step(train, verifier_model, config)
    publish(judge, output, {"served_model": served, **({"accuracy": result["accuracy"]} if result else {})})
    metrics.log_metric("served", float(bool(served)))
    for key, value in (judge_metrics(result) if result else {}).items():
        metrics.log_metric(key.replace("/", "_"), value)
    keep_metrics_file(metrics)
    return served
