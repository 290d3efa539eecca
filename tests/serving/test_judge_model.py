"""The local judge: its accuracy measure, its training rows, and (slow) a judge trained and measured."""

import pytest

from longrl.data.judge_pairs import judge_pairs, judge_training_row
from longrl.serving.judge_model import JudgeBuildConfig, _token_rows, build_judge, judge_accuracy


def test_accuracy_counts_a_reply_without_a_final_verdict_as_wrong() -> None:
    pairs = list(judge_pairs(4, seed=0, families=("number", "option")))  # number+, option+, number-, option-
    replies = ["… [[YES]]", "[[YES]] so they match", "… [[NO]]", "… [[YES]]"]
    measured = judge_accuracy(pairs, replies)
    assert measured["accuracy"] == 0.5
    assert measured["unparseable"] == 1
    assert measured["by_family"] == {"number": 1.0, "option": 0.0}
    assert measured["by_kind"] == {"equivalent": 0.5, "near_miss": 0.5}


def test_training_rows_share_the_system_prompt_and_keep_every_token(tiny_tokenizer) -> None:
    pairs = list(judge_pairs(14, seed=0))
    prefix, rows = _token_rows(tiny_tokenizer, pairs)
    assert tiny_tokenizer.decode(prefix).startswith("<|im_start|>system\nYou check whether two answers")
    for pair, (ids, reply_start) in zip(pairs, rows, strict=True):
        row = judge_training_row(tiny_tokenizer, pair)
        assert tiny_tokenizer.decode(prefix + ids[:reply_start]) == row["prompt"]
        assert tiny_tokenizer.decode(ids[reply_start:]) == row["completion"] + tiny_tokenizer.eos_token


@pytest.mark.slow
def test_a_trained_judge_tells_equivalents_from_near_misses(tiny_model_dir, tmp_path) -> None:
    result = build_judge(JudgeBuildConfig(base_model=str(tiny_model_dir), output_dir=str(tmp_path / "judge")))
    assert result["accuracy"] >= 0.9, result
    assert (tmp_path / "judge" / "model" / "config.json").is_file()
    again = build_judge(JudgeBuildConfig(base_model=str(tiny_model_dir), output_dir=str(tmp_path / "judge")))
    assert again == result  # built once: the same config finds it done
