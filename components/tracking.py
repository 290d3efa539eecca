from kfp import dsl

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def open_tracking(tracking_uri: str, experiment: str, kfp_run_id: str, parameters: dict) -> str:
    """Opens the pipeline run's parent MLflow run; returns its id."""
    from longrl.steps import open_pipeline_run

    return open_pipeline_run(tracking_uri, experiment, kfp_run_id, parameters)


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def finish_pipeline(tracking_uri: str, experiment: str, verifier_mode: str, kfp_run_id: str, namespace: str):
    """Exit handler: stops the verifier (whatever happened before) and closes the pipeline's MLflow run."""
    from longrl.steps import close_pipeline_run, stop_verifier_step

    try:
        stop_verifier_step(verifier_mode, kfp_run_id, namespace)
    finally:
        close_pipeline_run(tracking_uri, experiment, kfp_run_id)
