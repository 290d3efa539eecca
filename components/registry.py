from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def register_model(
    trained: Input[Model],
    evaluation: Input[Dataset],
    tracking_uri: str,
    experiment: str,
    registered_model_name: str,
    promotion_margin: float,
    auto_promote: bool,
) -> str:
    """Registers the model (alias challenger) and promotes it to champion if its evaluation passes the gate."""
    import json

    from longrl.artifacts import read_pointer
    from longrl.registry import RegistryConfig
    from longrl.steps import register_step, step_tracking

    outcome = register_step(
        read_pointer(trained.path).location,
        read_pointer(evaluation.path).location,
        RegistryConfig(
            tracking_uri=tracking_uri,
            registered_model_name=registered_model_name,
            promotion_margin=promotion_margin,
            auto_promote=auto_promote,
        ),
        step_tracking(tracking_uri, experiment, "registration"),
    )
    print(json.dumps(outcome, indent=2))
    return json.dumps(outcome)
