from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def build_judge(
    start_from: Input[Model],
    verifier_model: str,
    train: bool,
    tracking_uri: str,
    experiment: str,
    judge: Output[Model],
    metrics: Output[Metrics],
) -> str:
    """The model the verifier serves: verifier_model as configured, or (train) a tiny judge trained here from
    start_from (the warm-up SFT model) on generated equivalence pairs, with its accuracy on held-out pairs
    ('' when it measured too low to serve). Returns the model's location."""
    from longrl.artifacts import data_location, publish, read_pointer
    from longrl.serving.judge_model import JudgeBuildConfig, configured_judge, judge_metrics, trained_judge
    from longrl.steps import keep_metrics_file, model_dir, step_tracking

    output = data_location(judge.uri, judge.path)
    result = None
    if train:
        config = JudgeBuildConfig(
            base_model=model_dir(read_pointer(start_from.path).location),
            output_dir=output,
            tracking=step_tracking(tracking_uri, experiment, "judge"),
        )
        served, result = trained_judge(config)
    else:
        served = configured_judge(verifier_model, output)
    publish(judge, output, {"served_model": served, **({"accuracy": result["accuracy"]} if result else {})})
    metrics.log_metric("served", float(bool(served)))
    for key, value in (judge_metrics(result) if result else {}).items():
        metrics.log_metric(key.replace("/", "_"), value)
    keep_metrics_file(metrics)
    return served
