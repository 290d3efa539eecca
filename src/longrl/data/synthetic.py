"""Synthetic long-document QA with verifiable answers, in DocQA-RL-1.6K's schema.

Everything runs without downloads, so the data is made here, deterministically by seed:

* ``docmath``: financial-report-like documents (segment revenue tables, results, share data)
  with a numeric question whose answer is computed from the facts (percentage change, total,
  margin, earnings per share, difference), plus a peer company's figures as distractors;
* ``choice``: handbook-like documents in titled sections, each stating one specific rule, with a
  four-option question about which section says what, or what a rule says;
* ``multihop``: a web of invented companies, founders, cities and countries whose facts are
  spread across the document, with distractor chains and near-miss facts; questions take one to
  three hops, or compare two founding years.

Documents are padded with generated business prose to a requested length in tokens (of a given
tokenizer, or estimated from words without one). Record ``i`` depends only on (seed, i).
SFT records also carry a reasoning response that quotes the facts and reaches the answer.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, model_validator
from tqdm.auto import tqdm

TokenCounter = Callable[[str], int]
Kind = Literal["docmath", "choice", "multihop"]
ALL_KINDS: tuple[Kind, ...] = ("docmath", "choice", "multihop")


class GenerateConfig(BaseModel):
    """Generate synthetic long-document QA records (and SFT records with reasoning)."""

    output: str = Field(description="File to write: .jsonl or .parquet")
    num_records: int = Field(96, ge=1, description="How many records")
    kinds: list[Kind] = Field(list(ALL_KINDS), min_length=1, description="Question kinds, used in turn")
    doc_tokens_min: int = Field(512, ge=16, description="Shortest document, in tokens")
    doc_tokens_max: int = Field(2048, ge=16, description="Longest document, in tokens")
    distractors: int = Field(3, ge=0, le=20, description="Distractor entities/facts per document")
    max_hops: int = Field(2, ge=1, le=3, description="Most hops a multi-hop question takes")
    sft: bool = Field(False, description="Also write a reasoning 'response' (SFT records)")
    alternate_references: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of founder questions whose reference names the person surname first ('Mervin, "
        "Kalo'), as published references often differ in form from the document: the rule check misses "
        "a right answer there, the LLM judge accepts it",
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer to measure document length with; else estimated"
    )
    seed: int = Field(0, description="Seed: the same seed gives the same records")

    @model_validator(mode="after")
    def _range(self) -> GenerateConfig:
        if self.doc_tokens_min > self.doc_tokens_max:
            raise ValueError(
                f"doc_tokens_min ({self.doc_tokens_min}) > doc_tokens_max ({self.doc_tokens_max})"
            )
        return self


def estimate_tokens(text: str) -> int:
    """Rough sub-word token count for when no tokenizer is given (words and punctuation, +30 %)."""
    return int(len(re.findall(r"\w+|[^\w\s]", text)) * 1.3) + 1


# ----- names -----------------------------------------------------------------------------------

_SYLLABLES = (
    "ka lo mer vin tas dra bel sor qui nex pol ran tor vel zan mi os tek lum gar fen hal ist jor kel "
    "mar nor pra ros sil tam ul var wen yar bri cas dun eld fro gil hov ine"
).split()
_COMPANY_SUFFIX = (
    "Systems Holdings Industries Logistics Biotech Energy Foods Capital Networks Materials".split()
)
_CITY_SUFFIX = ("", "ton", "burg", "ville", "stad", "mouth", "field", "haven")
_COUNTRY_SUFFIX = ("ia", "land", "stan", "ria", "ovia")


def _word(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(*syllables))).capitalize()


class _Names:
    """Invented names, never the same twice within one document."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _unique(self, make: Callable[[], str]) -> str:
        while True:
            name = make()
            if name not in self.used and name.lower() not in self.used:
                self.used.add(name)
                self.used.add(name.lower())
                return name

    def company(self) -> str:
        return self._unique(lambda: f"{_word(self.rng)} {self.rng.choice(_COMPANY_SUFFIX)}")

    def person(self) -> str:
        return self._unique(lambda: f"{_word(self.rng, (2, 2))} {_word(self.rng)}")

    def city(self) -> str:
        return self._unique(lambda: _word(self.rng, (2, 2)) + self.rng.choice(_CITY_SUFFIX))

    def country(self) -> str:
        return self._unique(lambda: _word(self.rng, (1, 2)) + self.rng.choice(_COUNTRY_SUFFIX))


# ----- filler prose ----------------------------------------------------------------------------

_FILLER = {
    "dept": "procurement compliance treasury engineering marketing logistics audit research".split(),
    "thing": [
        "supplier contracts",
        "inventory levels",
        "warehouse leases",
        "pricing models",
        "vendor audits",
        "customer renewals",
        "hiring plans",
        "data pipelines",
        "travel policies",
        "training programs",
    ],
    "adj": "steady moderate uneven gradual notable limited broad cautious".split(),
    "region": "northern coastal inland regional overseas metropolitan rural".split(),
    "period": [
        "first quarter",
        "second quarter",
        "third quarter",
        "fourth quarter",
        "review period",
        "prior year",
    ],
    "verb": "improved stabilised declined expanded slowed recovered".split(),
    "risk": [
        "currency movements",
        "input costs",
        "regulatory changes",
        "customer concentration",
        "interest rates",
        "labour availability",
        "shipping delays",
        "cyber threats",
    ],
}
_FILLER_SENTENCES = (
    "The {dept} team reviewed {thing} across {n} {region} sites during the {period}.",
    "Management noted {adj} progress as {thing} {verb} over the {period}.",
    "Exposure to {risk} remained a consideration for the {dept} function.",
    "A committee met {n} times to assess {thing} and related controls.",
    "Activity in the {region} markets {verb}, reflecting {adj} demand.",
    "The board asked the {dept} group to report on {thing} each quarter.",
    "Work on {thing} continued, with {n} initiatives completed in the {period}.",
    "Changes in {risk} could affect {thing} in future periods.",
    "The {dept} department introduced revised guidance on {thing}.",
    "Staff in {n} {region} offices completed training on {thing}.",
)


def filler_paragraph(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(3, 6)):
        template = rng.choice(_FILLER_SENTENCES)
        sentences.append(
            template.format(
                n=rng.randint(2, 40),
                **{key: rng.choice(values) for key, values in _FILLER.items() if "{" + key + "}" in template},
            )
        )
    return " ".join(sentences)


def assemble_document(
    rng: random.Random,
    title: str,
    blocks: Sequence[str],
    target_tokens: int,
    count_tokens: TokenCounter,
    keep_order: bool = True,
) -> str:
    """The title and the fact blocks, with filler paragraphs between them up to ``target_tokens``."""
    blocks = list(blocks)
    if not keep_order:
        rng.shuffle(blocks)
    used = count_tokens(title) + sum(count_tokens(block) for block in blocks)
    slots: list[list[str]] = [[] for _ in range(len(blocks) + 1)]
    while used < target_tokens:
        paragraph = filler_paragraph(rng)
        slots[rng.randrange(len(slots))].append(paragraph)
        used += count_tokens(paragraph) + 1
    parts = [title]
    for slot, block in zip(slots, [*blocks, None], strict=True):
        parts.extend(slot)
        if block is not None:
            parts.append(block)
    return "\n\n".join(parts)


def _fmt(value: float) -> str:
    """2 decimals at most, no trailing zeros: 12.5, 7, -3.25."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _think(steps: Sequence[str], answer: str, closing: str = "Therefore, the answer is") -> str:
    """A reasoning response ending in the answer form its prompt asks for."""
    return "<think>\n" + "\n".join(steps) + f"\n</think>\n\n{closing} {answer}."


# ----- docmath ---------------------------------------------------------------------------------

_SEGMENTS = (
    "Cloud Services",
    "Industrial Products",
    "Consumer Devices",
    "Healthcare Solutions",
    "Financial Services",
    "Retail Operations",
    "Energy Systems",
    "Logistics Services",
)


def _segment_table(company: str, segments: dict[str, tuple[int, int]], years: tuple[int, int]) -> str:
    rows = "\n".join(f"| {name} | {a:,} | {b:,} |" for name, (a, b) in segments.items())
    return (
        f"Revenue by segment for {company} (in millions of USD):\n\n"
        f"| Segment | FY{years[0]} | FY{years[1]} |\n|---|---|---|\n{rows}"
    )


def make_docmath(rng: random.Random, target: int, distractors: int, count: TokenCounter) -> dict[str, Any]:
    names = _Names(rng)
    company = names.company()
    y2 = rng.randint(2015, 2025)
    years = (y2 - 1, y2)
    picked = rng.sample(_SEGMENTS, rng.randint(3, 5))
    segments = {}
    for name in picked:
        a = rng.randint(120, 9000)
        segments[name] = (a, max(50, round(a * rng.uniform(0.7, 1.45))))
    total2 = sum(b for _, b in segments.values())
    net_income = round(total2 * rng.uniform(0.03, 0.22))
    net_income_prior = round(net_income * rng.uniform(0.7, 1.3))
    shares = rng.randint(40, 900)

    blocks = [
        f"Section 1. Overview\n\n{company} reports its results for fiscal year {y2} in four parts below.",
        "Section 2. Segment results\n\n" + _segment_table(company, segments, years),
        f"Section 3. Results of operations\n\nNet income for fiscal {y2} was ${net_income:,} million, "
        f"compared with ${net_income_prior:,} million in fiscal {y2 - 1}.",
        f"Section 4. Share information\n\nThe weighted average number of diluted shares outstanding "
        f"in fiscal {y2} was {shares} million.",
    ]
    for _ in range(distractors):
        peer = names.company()
        peer_segments = {
            s: (rng.randint(100, 9000), rng.randint(100, 9000)) for s in rng.sample(_SEGMENTS, 2)
        }
        peer_block = "Peer comparison\n\nFor reference, " + _segment_table(peer, peer_segments, years)
        blocks.insert(rng.randint(1, len(blocks)), peer_block)

    seg, (a, b) = rng.choice(list(segments.items()))
    question_type = rng.choice(("pct_change", "total", "margin", "eps", "difference"))
    if question_type == "pct_change":
        value = (b - a) / a * 100
        question = (
            f"By what percentage did revenue of {company}'s {seg} segment change from fiscal "
            f"{years[0]} to fiscal {years[1]}? Answer in percent, rounded to two decimal places."
        )
        steps = [
            f"The segment table gives {seg} revenue of {a:,} million in FY{years[0]} and {b:,} million in FY{years[1]}.",
            f"Change: ({b} - {a}) / {a} x 100 = {_fmt(value)}%.",
        ]
    elif question_type == "total":
        value = float(total2)
        question = (
            f"What was {company}'s total revenue across all segments in fiscal {y2}, in millions of USD?"
        )
        parts = " + ".join(f"{b_:,}" for _, b_ in segments.values())
        steps = [
            f"The FY{y2} column of {company}'s segment table lists: {parts}.",
            f"Sum: {_fmt(value)} million.",
        ]
    elif question_type == "margin":
        value = net_income / total2 * 100
        question = (
            f"What was {company}'s net profit margin in fiscal {y2} (net income divided by total "
            f"segment revenue), in percent rounded to two decimal places?"
        )
        steps = [
            f"Net income in fiscal {y2} was {net_income:,} million (Section 3).",
            f"Total FY{y2} segment revenue is {total2:,} million.",
            f"Margin: {net_income} / {total2} x 100 = {_fmt(value)}%.",
        ]
    elif question_type == "eps":
        value = net_income / shares
        question = (
            f"What were {company}'s diluted earnings per share in fiscal {y2} (net income divided by "
            f"diluted shares), in USD rounded to two decimal places?"
        )
        steps = [
            f"Net income in fiscal {y2} was {net_income:,} million; diluted shares were {shares} million.",
            f"EPS: {net_income} / {shares} = {_fmt(value)}.",
        ]
    else:
        other, (c, _) = rng.choice([(s, v) for s, v in segments.items() if s != seg])
        value = float(a - c)
        question = (
            f"How much more revenue, in millions of USD, did {company}'s {seg} segment generate than "
            f"its {other} segment in fiscal {years[0]}? A negative number means less."
        )
        steps = [
            f"In FY{years[0]}, {seg} had {a:,} million and {other} had {c:,} million.",
            f"Difference: {a} - {c} = {_fmt(value)}.",
        ]
    answer = _fmt(round(value, 2))
    context = assemble_document(rng, f"{company} Annual Report {y2}", blocks, target, count)
    return {
        "data_source": "docmath_synthetic",
        "context": context,
        "question": question,
        "answer": answer,
        "response": _think(["The question is about " + company + ".", *steps], answer),
    }


# ----- multiple choice -------------------------------------------------------------------------

# (section title, rule with a {v} slot, what the rule sets, values it can take)
_RULES = (
    (
        "Claims Procedure",
        "Claims must be filed within {v} of the incident.",
        "the deadline for filing a claim",
        ("14 days", "30 days", "45 days", "60 days", "90 days"),
    ),
    (
        "Data Retention",
        "Customer records are kept for {v} after the account closes.",
        "how long customer records are kept",
        ("3 years", "5 years", "7 years", "10 years"),
    ),
    (
        "Premium Adjustments",
        "Premiums may be adjusted at most {v} per policy year.",
        "how often premiums may be adjusted",
        ("once", "twice", "three times", "four times"),
    ),
    (
        "Termination of Coverage",
        "Either party may end coverage with {v} of written notice.",
        "the notice period for ending coverage",
        ("10 days", "15 days", "30 days", "60 days"),
    ),
    (
        "Liability Limits",
        "Liability for a single event is capped at {v}.",
        "the cap on liability for a single event",
        ("$50,000", "$100,000", "$250,000", "$1,000,000"),
    ),
    (
        "Travel Expenses",
        "Hotel costs are reimbursed up to {v} per night.",
        "the nightly limit for hotel reimbursement",
        ("$120", "$150", "$200", "$250"),
    ),
    (
        "Inventory Audits",
        "Warehouse stock is counted every {v}.",
        "how often warehouse stock is counted",
        ("week", "month", "quarter", "six months"),
    ),
    (
        "Remote Work",
        "Employees may work remotely up to {v} per week.",
        "how many days per week employees may work remotely",
        ("1 day", "2 days", "3 days", "4 days"),
    ),
    (
        "Vendor Payments",
        "Approved vendor invoices are paid within {v}.",
        "the payment term for approved vendor invoices",
        ("15 days", "30 days", "45 days", "60 days"),
    ),
    (
        "Security Reviews",
        "Access rights are reviewed every {v}.",
        "how often access rights are reviewed",
        ("3 months", "6 months", "9 months", "12 months"),
    ),
    (
        "Product Returns",
        "Unopened products may be returned within {v} of delivery.",
        "the return window for unopened products",
        ("7 days", "14 days", "21 days", "30 days"),
    ),
    (
        "Board Meetings",
        "The board meets at least {v} a year.",
        "how often the board meets",
        ("4 times", "6 times", "8 times", "12 times"),
    ),
)
_LETTERS = "ABCD"


def make_choice(rng: random.Random, target: int, distractors: int, count: TokenCounter) -> dict[str, Any]:
    names = _Names(rng)
    organisation = names.company()
    rules = rng.sample(_RULES, min(len(_RULES), max(4, distractors + 2)))
    values = [rng.choice(rule[3]) for rule in rules]
    blocks = [
        f"Section {i}. {title}\n\n{text.format(v=value)}"
        for i, ((title, text, _, _), value) in enumerate(zip(rules, values, strict=True), start=1)
    ]
    target_index = rng.randrange(len(rules))
    title, text, what, options_pool = rules[target_index]
    value = values[target_index]
    if rng.random() < 0.5:
        wrong = rng.sample([r[0] for i, r in enumerate(rules) if i != target_index], 3)
        options = [title, *wrong]
        rng.shuffle(options)
        letter = _LETTERS[options.index(title)]
        question = f"Which section of the {organisation} handbook sets {what}?"
        steps = [
            f"I look for the section that sets {what}.",
            f'Section {target_index + 1}, "{title}", says: "{text.format(v=value)}"',
            f'"{title}" is option ({letter}).',
        ]
    else:
        wrong = rng.sample([v for v in options_pool if v != value], min(3, len(options_pool) - 1))
        options = [value, *wrong]
        rng.shuffle(options)
        letter = _LETTERS[options.index(value)]
        question = f"According to the {organisation} handbook, which option correctly states {what}?"
        steps = [
            f'Section {target_index + 1}, "{title}", says: "{text.format(v=value)}"',
            f"So the value is {value}, which is option ({letter}).",
        ]
    question += "\n" + "\n".join(f"({_LETTERS[i]}) {option}" for i, option in enumerate(options))
    context = assemble_document(rng, f"{organisation} Policy Handbook", blocks, target, count)
    answer = f"({letter})"
    return {
        "data_source": "long_toc_choices_synthetic",
        "context": context,
        "question": question,
        "answer": answer,
        "response": _think(steps, answer, closing="The correct answer is"),  # the multiple-choice form
    }


# ----- multi-hop -------------------------------------------------------------------------------


def make_multihop(
    rng: random.Random, target: int, distractors: int, max_hops: int, count: TokenCounter
) -> dict[str, Any]:
    names = _Names(rng)
    years = rng.sample(range(1900, 2020), distractors + 1)  # distinct: "founded earlier" has one answer
    chains = [
        {
            "company": names.company(),
            "founder": names.person(),
            "city": names.city(),
            "country": names.country(),
            "year": year,
        }
        for year in years
    ]
    facts = []
    for chain in chains:
        facts.append(f"{chain['company']} was founded in {chain['year']} by {chain['founder']}.")
        facts.append(f"{chain['founder']} was born in {chain['city']}.")
        facts.append(f"{chain['city']} is a city in {chain['country']}.")
    for chain, other in zip(chains, chains[1:] + chains[:1], strict=True):
        if other is not chain:  # near misses: true facts that answer a different question
            facts.append(f"{chain['founder']} later moved to {other['city']}.")
            facts.append(f"{chain['company']} opened an office in {other['city']}.")
    target_chain = chains[0]
    hops = rng.randint(1, max_hops)
    company, founder, city = target_chain["company"], target_chain["founder"], target_chain["city"]
    alternate: str | None = None
    if len(chains) > 1 and rng.random() < 0.25:
        other = rng.choice(chains[1:])
        first = target_chain if target_chain["year"] < other["year"] else other
        pair = [target_chain, other]
        rng.shuffle(pair)
        question = f"Which company was founded earlier, {pair[0]['company']} or {pair[1]['company']}?"
        answer = first["company"]
        steps = [f"{c['company']} was founded in {c['year']}." for c in pair]
        steps.append(f"{answer} was founded earlier.")
        source = "multihoprag_synthetic"
    elif hops == 1:
        question, answer = f"Who founded {company}?", founder
        steps = [f"The founder of {company} is {founder}."]
        source = "musique_synthetic"
        given, family = founder.split(" ", 1)
        alternate = f"{family}, {given}"
    elif hops == 2:
        question, answer = f"In which city was the founder of {company} born?", city
        steps = [
            f"First, the founder of {company}: {founder}.",
            f'Then: "{founder} was born in {city}."',
            "Moving to another city later does not change the birthplace.",
        ]
        source = "musique_synthetic"
    else:
        question, answer = f"In which country was the founder of {company} born?", target_chain["country"]
        steps = [
            f"The founder of {company} is {founder}.",
            f"{founder} was born in {city}.",
            f"{city} is a city in {answer}.",
        ]
        source = "musique_synthetic"
    context = assemble_document(rng, "Company histories", facts, target, count, keep_order=False)
    record = {
        "data_source": source,
        "context": context,
        "question": question,
        "answer": answer,
        "response": _think(steps, answer),
    }
    if alternate is not None:
        record["alternate_answer"] = alternate  # the same person, written as a reference might
    return record


# ----- records ---------------------------------------------------------------------------------


def generate_record(index: int, config: GenerateConfig, count: TokenCounter) -> dict[str, Any]:
    """Record ``index`` of the stream: depends only on the seed and the index."""
    rng = random.Random(f"longrl-synthetic:{config.seed}:{index}")
    kind = config.kinds[index % len(config.kinds)]
    target = rng.randint(config.doc_tokens_min, config.doc_tokens_max)
    if kind == "docmath":
        record = make_docmath(rng, target, config.distractors, count)
    elif kind == "choice":
        record = make_choice(rng, target, config.distractors, count)
    else:
        record = make_multihop(rng, target, config.distractors, config.max_hops, count)
    record["id"] = f"synthetic-{config.seed}-{index:06d}"
    alternate = record.pop("alternate_answer", None)
    # A stream of its own decides, so that records without alternate references stay as they were.
    if (
        alternate
        and random.Random(f"longrl-reference-form:{config.seed}:{index}").random()
        < config.alternate_references
    ):
        record["answer"] = alternate
    if not config.sft:
        record.pop("response")
    return {"id": record.pop("id"), **record}


def token_counter(tokenizer_name: str | None) -> TokenCounter:
    if tokenizer_name is None:
        return estimate_tokens
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def generate_records(config: GenerateConfig, count: TokenCounter | None = None) -> Iterator[dict[str, Any]]:
    count = count or token_counter(config.tokenizer)
    for index in tqdm(range(config.num_records), desc="generating", unit="record", mininterval=2.0):
        yield generate_record(index, config, count)


def write_records(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Writes records as JSONL or parquet, by the file's suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        with path.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif path.suffix in (".parquet", ".pq"):
        pq.write_table(pa.Table.from_pylist(list(records)), path)
    else:
        raise ValueError(f"{path}: write .jsonl or .parquet")
    return path


def generate(config: GenerateConfig, count: TokenCounter | None = None) -> Path:
    return write_records(list(generate_records(config, count)), config.output)
