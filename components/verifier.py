from kfp import dsl

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def start_verifier(
    mode: str, model: str, max_model_len: int, namespace: str, image: str, gpus: int, cluster: dict
) -> str:
    """Serves the judge model with vLLM (local process or Deployment + Service); returns its API base URL."""
    import os

    from longrl.steps import start_verifier_step

    watch = int(os.environ["LONGRL_WATCH_PID"]) if os.environ.get("LONGRL_WATCH_PID") else None
    return start_verifier_step(
        mode, model, max_model_len, namespace, image, gpus, watch_pid=watch, cluster=cluster
    )
