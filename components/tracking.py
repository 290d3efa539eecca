from kfp import dsl

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def open_tracking(
    tracking_uri: str,
    experiment: str,
    base_model: str,
    preset: str,
    algorithm: str,
    reward: str,
    verifier_model: str,
    launcher: str,
    phase_max_tokens: list,
    sft_overrides: dict,
    rl_overrides: dict,
) -> str:
    """Opens the pipeline run's parent MLflow run, with the run's main parameters; returns its id."""
    from longrl.steps import open_pipeline_run

    parameters = {
        "base_model": base_model,
        "preset": preset,
        "algorithm": algorithm,
        "reward": reward,
        "verifier_model": verifier_model,
        "launcher": launcher,
        "phase_max_tokens": phase_max_tokens,
        "sft_overrides": sft_overrides,
        "rl_overrides": rl_overrides,
    }
    return open_pipeline_run(tracking_uri, experiment, parameters)


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def finish_pipeline(tracking_uri: str, experiment: str, verifier_mode: str, namespace: str, launcher: str):
    """Exit handler: stops the verifier, deletes what the run left in the cluster (whatever happened
    before) and closes the pipeline's MLflow run."""
    from longrl.steps import close_pipeline_run, end_run_step

    try:
        end_run_step(verifier_mode, namespace, launcher)
    finally:
        close_pipeline_run(tracking_uri, experiment)
