import re

import pytest

from longrl.data import GenerateConfig, QARecord, SFTRecord, canonical_fields, generate_records
from longrl.data.synthetic import generate_record
from longrl.rewards import rule_reward


def records(**overrides):
    settings = {
        "output": "-",
        "num_records": 24,
        "doc_tokens_min": 80,
        "doc_tokens_max": 300,
        "sft": True,
    } | overrides
    return list(generate_records(GenerateConfig(**settings)))


def test_deterministic_by_seed_and_index() -> None:
    assert records(seed=5) == records(seed=5)
    assert records(seed=5) != records(seed=6)
    assert records(seed=5, num_records=30)[:24] == records(seed=5)  # record i depends on (seed, i) only


def test_every_record_is_valid_and_its_reasoning_earns_full_reward() -> None:
    for record in records(num_records=60, distractors=4, max_hops=3):
        parsed = SFTRecord.model_validate(canonical_fields(record))
        assert rule_reward(parsed.data_source, parsed.response, parsed.answer) == 1.0, record["id"]
        wrong = re.sub(rf"answer is {re.escape(parsed.answer)}", "answer is 999999 nothing", parsed.response)
        assert wrong != parsed.response
        assert rule_reward(parsed.data_source, wrong, parsed.answer) == 0.0


def test_kinds_and_sources() -> None:
    made = records(num_records=30, kinds=["docmath", "choice", "multihop"])
    sources = {r["data_source"] for r in made}
    assert {"docmath_synthetic", "long_toc_choices_synthetic", "musique_synthetic"} <= sources
    only_math = records(num_records=5, kinds=["docmath"], sft=False)
    assert {r["data_source"] for r in only_math} == {"docmath_synthetic"}
    assert all("response" not in r for r in only_math)
    QARecord.model_validate(canonical_fields(only_math[0]))


def _segment_revenue(context: str, segment: str) -> tuple[int, int]:
    match = re.search(rf"\| {re.escape(segment)} \| ([\d,]+) \| ([\d,]+) \|", context)
    return tuple(int(v.replace(",", "")) for v in match.groups())


def test_docmath_answers_are_computed_from_the_document() -> None:
    checked = 0
    for record in records(num_records=60, kinds=["docmath"], sft=False):
        question = re.search(r"revenue of (.+?)'s (.+?) segment change", record["question"])
        if question is None:
            continue
        company, segment = question.groups()
        table = record["context"].split(f"Revenue by segment for {company} ")[1]
        before, after = _segment_revenue(table, segment)
        assert float(record["answer"]) == pytest.approx((after - before) / before * 100, abs=0.006)
        checked += 1
    assert checked >= 5


def test_multihop_facts_are_spread_with_distractors() -> None:
    for record in records(
        num_records=30, kinds=["multihop"], distractors=3, doc_tokens_min=400, doc_tokens_max=500
    ):
        context = record["context"]
        assert record["answer"] in context
        assert len(re.findall(r" was founded in \d{4} by ", context)) == 4  # the chain and three distractors
        assert "later moved to" in context  # near misses
        paragraphs = context.split("\n\n")
        fact_positions = [i for i, p in enumerate(paragraphs) if " was born in " in p]
        assert max(fact_positions) - min(fact_positions) > 1  # not all in one place


def test_choice_questions_have_four_options_and_a_letter() -> None:
    for record in records(num_records=12, kinds=["choice"], sft=False):
        assert re.fullmatch(r"\([ABCD]\)", record["answer"])
        assert [line[:3] for line in record["question"].splitlines()[1:]] == ["(A)", "(B)", "(C)", "(D)"]


def test_documents_reach_the_requested_token_length(tiny_tokenizer) -> None:
    count = lambda text: len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    config = GenerateConfig(output="-", num_records=9, doc_tokens_min=3000, doc_tokens_max=3500)
    for index in range(config.num_records):
        tokens = count(generate_record(index, config, count)["context"])
        assert 3000 <= tokens <= 3500 + 200, tokens  # one filler paragraph of slack


def test_long_documents() -> None:
    config = GenerateConfig(output="-", num_records=3, doc_tokens_min=20_000, doc_tokens_max=20_000)
    for record in generate_records(config):
        assert len(record["context"].split()) > 12_000


def test_bad_ranges_are_rejected() -> None:
    with pytest.raises(ValueError, match="doc_tokens_min"):
        GenerateConfig(output="x.jsonl", doc_tokens_min=500, doc_tokens_max=100)


def test_alternate_references_name_founders_surname_first_and_leave_the_rest_as_they_were() -> None:
    plain = records(num_records=60, kinds=["multihop"], max_hops=1, sft=True)
    alternate = records(num_records=60, kinds=["multihop"], max_hops=1, sft=True, alternate_references=1.0)
    changed = [(p, a) for p, a in zip(plain, alternate, strict=True) if p != a]
    assert changed and all(p["question"].startswith("Who founded") for p, _ in changed)
    for before, after in changed:
        given, family = before["answer"].split(" ", 1)
        assert after == {**before, "answer": f"{family}, {given}"}
        # The reasoning still answers as the document writes the name: the rule check misses it.
        assert rule_reward(after["data_source"], after["response"], after["answer"]) == 0.0
    founders = [p for p in plain if p["question"].startswith("Who founded")]
    assert len(changed) == len(founders)
