"""The local judge: its accuracy measure, its training rows, what is served, and (slow) a judge trained and measured."""

import json

import pytest

from longrl.data.judge_pairs import FAMILIES, judge_pairs, judge_training_row
from longrl.serving.judge_model import (
    RESULT_FILE,
    JudgeBuildConfig,
    _reading_ids,
    _reply_loss,
    _token_rows,
    build_judge,
    configured_judge,
    judge_accuracy,
    trained_judge,
)


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


def test_without_training_the_configured_judge_is_served(tmp_path) -> None:
    served = configured_judge("Qwen/Qwen2.5-1.5B-Instruct", str(tmp_path / "judge"))
    assert served == "Qwen/Qwen2.5-1.5B-Instruct"
    assert json.loads((tmp_path / "judge" / RESULT_FILE).read_text()) == {"served_model": served}


@pytest.mark.slow
def test_a_judge_measured_below_the_bar_is_not_served_and_a_rebuild_reuses_it(
    tiny_model_dir, tmp_path
) -> None:
    """A barely trained judge cannot tell near misses from equivalents: it is measured, recorded and not
    served (the run keeps the rule reward). About 20 s."""
    output = tmp_path / "judge"
    config = JudgeBuildConfig(
        base_model=str(tiny_model_dir),
        output_dir=str(output),
        max_steps=3,
        batch_size=8,
        train_pairs=56,
        eval_pairs=14,
        max_new_tokens=40,
        reading_steps=2,
    )
    result = build_judge(config)
    assert result["pairs"] == 14 and 0 <= result["accuracy"] <= 1
    assert set(result["by_family"]) == set(FAMILIES)
    assert (output / "model" / "config.json").is_file()
    assert build_judge(config) == result  # built once: the same config finds it done
    served, again = trained_judge(config.model_copy(update={"min_accuracy": 1.01}))
    assert served == "" and again["accuracy"] == result["accuracy"]
    assert json.loads((output / RESULT_FILE).read_text())["served"] is False
    served, _ = trained_judge(config.model_copy(update={"min_accuracy": 0.0}))
    assert served == str(output / "model")


def test_a_batch_in_two_length_sorted_halves_has_the_loss_and_gradient_of_the_whole(tiny_model_dir) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    prefix, rows = _token_rows(tokenizer, list(judge_pairs(12, seed=0)))
    rows.sort(key=lambda row: len(row[0]))

    def gradient(parts):
        model.zero_grad()
        count = sum(n for _, n in parts)
        for total, _ in parts:
            (total / count).backward()
        return sum(float(total) for total, _ in parts) / count, model.model.embed_tokens.weight.grad.clone()

    whole = gradient([_reply_loss(model, prefix, rows, tokenizer.pad_token_id)])
    halves = gradient(
        [_reply_loss(model, prefix, part, tokenizer.pad_token_id) for part in (rows[:6], rows[6:])]
    )
    assert len(rows[0][0]) < len(rows[-1][0])  # the halves are padded to different widths
    assert whole[0] == pytest.approx(halves[0], rel=1e-5)
    assert torch.allclose(whole[1], halves[1], atol=1e-6)


def test_reading_practice_copies_both_near_identical_blocks_and_marks_where_the_second_parts(
    tiny_tokenizer,
) -> None:
    import difflib
    import random

    from longrl.serving.judge_model import reading_practice_row

    ids = _reading_ids(tiny_tokenizer)

    def split(row: list[int], marker: list[int]) -> tuple[list[int], list[int]]:
        at = next(i for i in range(len(row)) if row[i : i + len(marker)] == marker)
        return row[:at], row[at + len(marker) :]

    rng = random.Random(0)
    digit_spans = 0
    for _ in range(200):
        row, reply_start = reading_practice_row(rng, ids)
        prompt, reply = row[:reply_start], row[reply_start:]
        assert prompt[: len(ids["open"])] == ids["open"]
        first, rest = split(prompt[len(ids["open"]) :], ids["between"])
        second, ask = split(rest, ids["close"])
        assert ask == ids["ask"]
        copied, then = split(reply, ids["then"])
        assert copied == first  # answer 1 verbatim
        assert then[-len(ids["mark"]) :] == ids["mark"]
        shared = then[: -len(ids["mark"])]
        assert second[: len(shared)] == first[: len(shared)] == shared  # answer 2 as far as it agrees
        ends_where_they_part = len(shared) == min(len(first), len(second)) or (
            first[len(shared)] != second[len(shared)]
        )
        assert ends_where_they_part  # and no further
        edits = difflib.SequenceMatcher(a=first, b=second, autojunk=False).get_opcodes()
        changed = [op for op in edits if op[0] != "equal"]
        assert first != second and 1 <= len(changed) <= 2  # a token changed or dropped, or two swapped
        assert not set(first + second) & set(tiny_tokenizer.all_special_ids)
        digit_spans += set(first) <= set(ids["digits"])
    assert 60 < digit_spans < 140  # about half the spans are digits
