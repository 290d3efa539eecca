"""The judge's training pairs: deterministic, balanced, labelled right, rendered exactly as the reward asks."""

import collections

import pytest

from longrl.data.judge_pairs import (
    FAMILIES,
    KIND_CYCLE,
    judge_pair,
    judge_pairs,
    judge_reply,
    judge_training_row,
)
from longrl.rewards.choice import extract_option_letter
from longrl.rewards.judge import judge_messages, parse_verdict
from longrl.rewards.numeric import numeric_match, parse_numeric_answer
from longrl.rewards.rule import AnswerKind, score_answer


def test_pair_i_depends_only_on_seed_and_index() -> None:
    assert list(judge_pairs(30, seed=3)) == list(judge_pairs(30, seed=3))
    assert list(judge_pairs(40, seed=3))[:30] == list(judge_pairs(30, seed=3))
    assert list(judge_pairs(30, seed=3)) != list(judge_pairs(30, seed=4))
    assert judge_pair(17, seed=3) == list(judge_pairs(30, seed=3))[17]


def test_every_family_has_as_many_equivalents_as_near_misses_and_half_as_many_unrelated_answers() -> None:
    pairs = list(judge_pairs(len(KIND_CYCLE) * 4 * len(FAMILIES), seed=0))
    counts = collections.Counter((p.family, p.kind) for p in pairs)
    kinds = ("equivalent", "near_miss", "unrelated")
    assert set(counts) == {(family, kind) for family in FAMILIES for kind in kinds}
    for family in FAMILIES:
        assert counts[family, "equivalent"] == counts[family, "near_miss"] == 2 * counts[family, "unrelated"]
    assert all(p.equivalent is (p.kind == "equivalent") for p in pairs)


def test_an_unrelated_answer_is_another_kind_of_thing_or_a_fragment() -> None:
    unrelated = [p for p in judge_pairs(40 * len(FAMILIES), seed=6) if p.kind == "unrelated"]
    assert len(unrelated) == 8 * len(FAMILIES)
    for pair in unrelated:
        assert pair.prediction == pair.prediction_means != pair.reference_means
        assert pair.prediction.lower() not in pair.reference.lower()
    assert any(p.prediction in {"is", "the", "it"} for p in unrelated)


def test_places_are_accepted_in_other_words_and_refused_a_syllable_off() -> None:
    places = list(judge_pairs(10 * len(FAMILIES), seed=7, families=("place",)))
    for pair in places:
        if pair.kind == "equivalent":
            assert pair.reference in pair.prediction and pair.prediction != pair.reference
        elif pair.kind == "near_miss":
            assert pair.prediction_means != pair.reference_means
            assert pair.prediction_means in pair.prediction


def test_equivalents_are_written_differently_and_mean_the_same() -> None:
    for pair in judge_pairs(700, seed=1):
        assert pair.prediction.strip() and pair.reference.strip()
        if pair.equivalent:
            assert pair.prediction != pair.reference
            assert pair.prediction_means == pair.reference_means
        else:
            assert pair.prediction_means != pair.reference_means


@pytest.mark.parametrize("family", ["number", "percent"])
def test_numeric_labels_agree_with_the_numeric_rule(family) -> None:
    """The numeric rule parses what it can of both answers: where it reads both, it agrees with the label
    (near misses within DocMath's 0.15 % tolerance excepted: the rule accepts them, so the judge is never asked)."""
    read = 0
    for pair in judge_pairs(2000, seed=2, families=(family,)):
        predicted, expected = parse_numeric_answer(pair.prediction), parse_numeric_answer(pair.reference)
        if isinstance(predicted, float) and isinstance(expected, float):
            read += 1
            within_tolerance = abs(predicted - expected) <= 0.0015 * abs(expected)
            if (family == "number" or pair.equivalent) and (pair.equivalent or not within_tolerance):
                assert numeric_match(predicted, expected) == pair.equivalent, pair
    assert read > 1500


def test_option_labels_agree_with_the_option_letters() -> None:
    for pair in judge_pairs(600, seed=2, families=("option",)):
        letter = extract_option_letter(pair.prediction)
        if letter is not None and len(pair.prediction) <= 3:  # "B" or "(B)"
            assert (letter == extract_option_letter(pair.reference)) == pair.equivalent, pair


def test_near_miss_names_are_what_the_rule_check_cannot_tell_apart_from_a_typo() -> None:
    """Equivalent names in another order fail the rule's sub-exact match: the judge is what accepts them."""
    reordered = [
        p
        for p in judge_pairs(700, seed=5, families=("person",))
        if p.equivalent and ("," in p.prediction) != ("," in p.reference)
    ]
    assert reordered
    assert all(score_answer(AnswerKind.TEXT, p.prediction, p.reference) == 0.0 for p in reordered)


def test_a_row_is_the_rewards_judge_prompt_and_a_reply_the_parser_reads(tiny_tokenizer) -> None:
    for pair in judge_pairs(2 * len(FAMILIES), seed=0):
        row = judge_training_row(tiny_tokenizer, pair)
        messages = judge_messages(pair.question, pair.prediction, pair.reference)
        assert row["prompt"] == tiny_tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        assert row["completion"] == judge_reply(pair, tiny_tokenizer)
        assert parse_verdict(row["completion"]) is pair.equivalent
        assert "</think>" in row["completion"]


def test_held_out_pairs_are_not_training_pairs() -> None:
    key = lambda p: (p.question, p.prediction, p.reference)  # noqa: E731
    training = {key(p) for p in judge_pairs(3000, seed=0)}
    held_out = [key(p) for p in judge_pairs(280, seed=1000)]
    assert sum(k in training for k in held_out) <= 2


def test_the_reply_marks_where_answer_2_first_parts_from_answer_1_and_stops_there(tiny_tokenizer) -> None:
    for pair in judge_pairs(20 * len(FAMILIES), seed=4):
        after = judge_reply(pair, tiny_tokenizer).split("answer 2 means", 1)[1]
        if pair.equivalent:
            assert after == f" {pair.reference_means}; the same answer.\n</think>\n\n[[YES]]"
            continue
        agreed, rest = after.split("|", 1)
        assert rest == " different answers.\n</think>\n\n[[NO]]"
        agreed = agreed.strip()
        assert pair.prediction_means.startswith(agreed) and pair.reference_means.startswith(agreed)
