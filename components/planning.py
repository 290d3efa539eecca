from kfp import dsl
from kfp.dsl import Markdown, Output

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def plan_training(
    base_model: str,
    preset: str,
    sft_overrides: dict,
    rl_overrides: dict,
    phase_max_tokens: list,
    algorithm: str,
    launcher: str,
    ray_workers: int,
    gpus_per_worker: int,
    gpu_memory_gib: float,
    worker_memory_gib: int,
    shared_volume_claim: str,
    cluster: dict,
    plan: Output[Markdown],
) -> str:
    """Plans SFT and every RL phase on the pipeline's GPUs; fails, naming each step that cannot fit.

    Runs first, so that an impossible request stops before any GPU is asked for. Returns the plan as JSON.
    """
    import json

    from longrl.steps import Placement, plan_markdown, plan_training_steps

    rows = plan_training_steps(
        base_model,
        preset,
        sft_overrides,
        rl_overrides,
        [int(bound) for bound in phase_max_tokens],
        algorithm,
        Placement(
            launcher=launcher,
            workers=ray_workers,
            gpus_per_worker=gpus_per_worker,
            gpu_memory_gib=gpu_memory_gib,
            worker_memory_gib=worker_memory_gib,
            shared_volume_claim=shared_volume_claim,
            cluster=cluster,
        ),
    )
    table = plan_markdown(rows)
    print(table)
    with open(plan.path, "w") as f:
        f.write(table)
    return json.dumps(rows)
