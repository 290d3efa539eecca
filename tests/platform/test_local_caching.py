"""kfp.local reuses a step with a Metrics output only when the artifact has a file (keep_metrics_file)."""

import logging

import pytest
from kfp import dsl, local
from kfp.dsl import Metrics, Output


@dsl.component(install_kfp_package=False)
def count_words(text: str, metrics: Output[Metrics], keep_file: bool):
    from longrl.steps import keep_metrics_file

    metrics.log_metric("words", len(text.split()))
    if keep_file:
        keep_metrics_file(metrics)


@dsl.pipeline
def counting(text: str, keep_file: bool):
    count_words(text=text, keep_file=keep_file)


@pytest.mark.parametrize("keep_file", [True, False])
def test_a_rerun_is_served_from_the_cache_only_with_the_metrics_file(tmp_path, caplog, keep_file) -> None:
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path),
        raise_on_error=True,
        enable_caching=True,
    )
    with caplog.at_level(logging.INFO):
        counting(text="three little words", keep_file=keep_file)
        assert "cache hit" not in caplog.text
        counting(text="three little words", keep_file=keep_file)
    assert ("Task count-words cache hit" in caplog.text) is keep_file
    if keep_file:
        (metrics_file,) = tmp_path.glob("counting-*/count-words/metrics")  # the re-run made none
        assert '"words": 3' in metrics_file.read_text()
