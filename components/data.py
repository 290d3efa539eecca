from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.image import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def prepare_data(
    inputs: list,
    tokenizer_model: str,
    sft: bool,
    phase_max_tokens: list,
    sft_max_tokens: int,
    validation_fraction: float,
    on_bad_row: str,
    tracking_uri: str,
    experiment: str,
    name: str,
    data: Output[Dataset],
    stats: Output[Metrics],
    preset: str = "",
    rl_overrides: dict = {},  # noqa: B006 - KFP takes a literal default
):
    """Validates, de-duplicates and tokenises QA/SFT files into per-phase datasets.

    RL data is split into the phases' length bands; SFT data is one band, up to sft_max_tokens.
    (The band is chosen here: KFP cannot pass a list built from pipeline parameters.) The data
    artifact is a pointer to the prepared files (longrl.artifacts). RL data needs preset and
    rl_overrides: each phase must hold at least one RL step's train_batch_prompts training rows.
    """
    from longrl.artifacts import data_location, publish
    from longrl.steps import keep_metrics_file, log_dataset_lineage, prepare_step, rl_batch_prompts

    location = data_location(data.uri, data.path)
    result = prepare_step(
        inputs,
        tokenizer_model,
        location,
        sft,
        [sft_max_tokens] if sft else phase_max_tokens,
        validation_fraction,
        on_bad_row,
        min_phase_rows=1 if sft else rl_batch_prompts(preset, rl_overrides),
    )
    publish(data, location, {"dataset_hash": result["dataset_hash"], "rows_used": result["rows_used"]})
    stats.log_metric("rows_read", result["rows_read"])
    stats.log_metric("rows_used", result["rows_used"])
    for reason, count in result["rejected"].items():
        stats.log_metric(f"rejected_{reason}", count)
    for phase in result["phases"]:
        stats.log_metric(f"phase{phase['phase']}_train_rows", phase["train_rows"])
    keep_metrics_file(stats)
    log_dataset_lineage(tracking_uri, experiment, name, result)
