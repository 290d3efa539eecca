"""Equivalence pairs that teach a tiny model to be the LLM judge, in exactly the judge's own format.

A pair is a question, a prediction and a reference, and whether they are the same answer. Positives
write one answer two ways (number formats: ``1,000`` / ``1000`` / ``1e3``; percentages and
fractions: ``50%`` / ``0.5`` / ``1/2``; amounts with and without units; numbers in words; option
forms: ``B`` / ``(B)`` / ``B. 30 days`` / the option's text; names in another order or with a
title; places as "the city of X"; dates in three notations). Case is never what differs: the rule
check ignores it, so the judge is never asked about it. Negatives are near misses of the same kind
(a digit off by one, swapped digits, a slipped decimal point, another option, another entity or
place that differs by a syllable, a day or a year off) or unrelated answers (a fragment such as
"is", a thing of another kind), in the proportions of ``KIND_CYCLE``. Pair ``i`` depends only on
(seed, i).

``judge_training_row`` renders a pair as the reward sends it (``longrl.rewards.judge.judge_messages``
through the model's chat template) and the reply the judge's parser reads: a short explanation
that names what both answers mean in one canonical form (the second only up to where it first parts
from the first, marked there), then the final ``[[YES]]`` / ``[[NO]]``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from longrl.data.synthetic import _RULES, _Names

Family = Literal["number", "percent", "words", "option", "person", "company", "place", "date"]
FAMILIES: tuple[Family, ...] = ("number", "percent", "words", "option", "person", "company", "place", "date")
Kind = Literal["equivalent", "near_miss", "unrelated"]
# Pairs come in blocks of one per family; the kind of each block, in turn. Equivalents and near misses
# are what a judge must tell apart; an unrelated answer (another kind of thing, a fragment) is what a
# policy writes most, and a judge never shown one answers it at random.
KIND_CYCLE: tuple[Kind, ...] = ("equivalent", "near_miss", "equivalent", "near_miss", "unrelated")


@dataclasses.dataclass(frozen=True)
class JudgePair:
    family: Family
    question: str
    prediction: str
    reference: str
    equivalent: bool
    prediction_means: str  # both answers in one canonical form: what the judge's explanation says
    reference_means: str
    kind: Kind = "equivalent"  # equivalent, near miss, or an unrelated answer (set by ``judge_pair``)


# ----- numbers -----------------------------------------------------------------------------------


def _grouped(n: int) -> str:
    return f"{n:,}"


def _near_miss_digits(rng: random.Random, text: str) -> str:
    """The same digits with one changed by one, two neighbours swapped, or one dropped or doubled."""
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    while True:
        chars = list(text)
        how = rng.choice(("bump", "bump", "swap", "drop", "double"))
        i = rng.choice(digits)
        if how == "bump":
            d = int(chars[i])
            chars[i] = str(d + 1 if d < 9 and (d == 0 or rng.random() < 0.5) else d - 1)
        elif how == "swap" and len(digits) > 1:
            j = digits[digits.index(i) + 1] if i != digits[-1] else digits[digits.index(i) - 1]
            chars[i], chars[j] = chars[j], chars[i]
        elif how == "drop" and len(digits) > 1:
            del chars[i]
        else:
            chars.insert(i, chars[i])
        candidate = "".join(chars).lstrip("0") or "0"
        if candidate.startswith("."):
            candidate = "0" + candidate
        if candidate != text:
            return candidate


def _plain_number(rng: random.Random) -> int:
    digits = rng.choice((2, 3, 3, 4, 4, 5, 6, 7))
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def _round_number(rng: random.Random) -> tuple[int, str]:
    """A number with one or two significant digits and its scientific notation: (12000, "1.2e4")."""
    exponent = rng.randint(3, 7)
    significant = rng.randint(1, 99)
    if significant < 10:
        return significant * 10**exponent, rng.choice(
            (f"{significant}e{exponent}", f"{significant}0e{exponent - 1}")
        )
    mantissa = f"{significant // 10}.{significant % 10}".removesuffix(".0")
    return significant * 10 ** (exponent - 1), rng.choice(
        (f"{mantissa}e{exponent}", f"{mantissa} × 10^{exponent}")
    )


def _number_forms(n: int, unit: str) -> list[str]:
    forms = [str(n), _grouped(n), f"{_grouped(n)} {unit}", f"{n}.0"]
    if unit == "million":
        forms += [f"${_grouped(n)} million", f"${n} million"]
    return forms


_AMOUNT_QUESTIONS = (
    ("What was {company}'s total revenue in fiscal {year}, in millions of USD?", "million"),
    ("How many units did {company} ship in fiscal {year}?", "units"),
    ("How many employees did {company} have at the end of {year}?", "employees"),
)


def number_pair(rng: random.Random, names: _Names, equivalent: bool) -> JudgePair:
    template, unit = rng.choice(_AMOUNT_QUESTIONS)
    question = template.format(company=names.company(), year=rng.randint(2010, 2025))
    if rng.random() < 0.3:
        n, scientific = _round_number(rng)
        forms = [*_number_forms(n, unit), scientific]
    else:
        n = _plain_number(rng)
        forms = _number_forms(n, unit)
    reference = rng.choice(forms[:3])
    if equivalent:
        prediction = rng.choice([f for f in forms if f != reference])
        return JudgePair("number", question, prediction, reference, True, str(n), str(n))
    wrong = int(_near_miss_digits(rng, str(n)))
    prediction = rng.choice(_number_forms(wrong, unit)[:3])
    return JudgePair("number", question, prediction, reference, False, str(wrong), str(n))


# Fractions a person writes for a percentage.
_FRACTIONS = {
    "1/2": 50,
    "1/4": 25,
    "3/4": 75,
    "1/5": 20,
    "2/5": 40,
    "3/5": 60,
    "4/5": 80,
    "1/10": 10,
    "1/8": 12.5,
}


def _fmt(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def _percent_forms(percent: float) -> list[str]:
    forms = [f"{_fmt(percent)}%", f"{_fmt(percent)} percent", _fmt(percent / 100)]
    forms += [fraction for fraction, value in _FRACTIONS.items() if value == percent]
    return forms


def percent_pair(rng: random.Random, names: _Names, equivalent: bool) -> JudgePair:
    question = rng.choice(
        (
            "By what percentage did {company}'s revenue grow in fiscal {year}?",
            "What share of {company}'s revenue came from its largest segment in fiscal {year}?",
            "What was {company}'s net profit margin in fiscal {year}?",
        )
    ).format(company=names.company(), year=rng.randint(2010, 2025))
    if rng.random() < 0.35:
        percent = float(rng.choice(list(_FRACTIONS.values())))
    else:
        percent = rng.randint(1, 99) + rng.choice((0, 0, 0.5, 0.25, rng.randint(1, 99) / 100))
    reference = rng.choice(_percent_forms(percent)[:2])
    canonical = f"{_fmt(percent)}%"
    if equivalent:
        prediction = rng.choice([f for f in _percent_forms(percent) if f != reference])
        return JudgePair("percent", question, prediction, reference, True, canonical, canonical)
    how = rng.random()
    if how < 0.3:
        wrong = percent / 10 if rng.random() < 0.5 else percent * 10  # the decimal point slipped
    elif how < 0.45 and percent != 50:
        wrong = 100 - percent
    else:
        wrong = float(_near_miss_digits(rng, _fmt(percent)))
    wrong = round(wrong, 4)
    if wrong == percent:
        wrong = percent + 1
    prediction = rng.choice(_percent_forms(wrong))
    return JudgePair("percent", question, prediction, reference, False, f"{_fmt(wrong)}%", canonical)


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = {
    20: "twenty",
    30: "thirty",
    40: "forty",
    50: "fifty",
    60: "sixty",
    70: "seventy",
    80: "eighty",
    90: "ninety",
}


def number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens * 10] + ("" if ones == 0 else f"-{_ONES[ones]}")


def words_pair(rng: random.Random, names: _Names, equivalent: bool) -> JudgePair:
    things = rng.choice(("years", "offices", "times", "days", "members", "sites"))
    question = rng.choice(
        (
            "How many {things} are mentioned for {company}?",
            "How many {things} did {company} report?",
            "According to the text, how many {things} does {company} have?",
        )
    ).format(things=things, company=names.company())
    n = rng.randint(0, 99)
    forms = [str(n), number_words(n), f"{n} {things}", f"{number_words(n)} {things}"]
    reference = rng.choice(forms)
    if equivalent:
        prediction = rng.choice([f for f in forms if f != reference and f.split()[0] != reference.split()[0]])
        return JudgePair("words", question, prediction, reference, True, str(n), str(n))
    wrong = rng.choice(
        [m for m in (n - 1, n + 1, n + 10, n - 10, int(str(n)[::-1])) if 0 <= m <= 99 and m != n]
    )
    prediction = rng.choice(
        [str(wrong), number_words(wrong), f"{number_words(wrong)} {things}", f"{wrong} {things}"]
    )
    return JudgePair("words", question, prediction, reference, False, str(wrong), str(n))


# ----- options, names, dates ----------------------------------------------------------------------

_LETTERS = "ABCD"


def option_pair(rng: random.Random, names: _Names, equivalent: bool) -> JudgePair:
    _, _, what, pool = rng.choice([rule for rule in _RULES if len(rule[3]) >= 4])
    options = rng.sample(list(pool), 4)
    question = (
        f"According to the {names.company()} handbook, which option correctly states {what}?\n"
        + "\n".join(f"({_LETTERS[i]}) {option}" for i, option in enumerate(options))
    )

    def forms(index: int) -> list[str]:
        letter = _LETTERS[index]
        return [
            letter,
            f"({letter})",
            f"{letter}. {options[index]}",
            f"({letter}) {options[index]}",
            f"option {letter}",
            options[index],
        ]

    right = rng.randrange(4)
    reference = rng.choice(forms(right)[:2])
    if equivalent:
        prediction = rng.choice([f for f in forms(right) if f != reference])
        return JudgePair(
            "option", question, prediction, reference, True, f"({_LETTERS[right]})", f"({_LETTERS[right]})"
        )
    wrong = rng.choice([i for i in range(4) if i != right])
    prediction = rng.choice(forms(wrong))
    return JudgePair(
        "option", question, prediction, reference, False, f"({_LETTERS[wrong]})", f"({_LETTERS[right]})"
    )


def _person_forms(given: str, family: str) -> list[str]:
    return [
        f"{given} {family}",
        f"{family}, {given}",
        f"Dr. {given} {family}",
        f"Dr. {family}, {given}",
    ]


def _near_miss_name(rng: random.Random, names: _Names, name: str) -> str:
    """Another name that shares most of this one: a syllable changed, or another whole name."""
    if rng.random() < 0.35:
        return names.person() if " " in name else names.company().split()[0]
    while True:
        syllables = [name[i : i + 3] for i in range(0, len(name), 3)]
        i = rng.randrange(len(syllables))
        vowel = rng.choice("aeiou")
        syllables[i] = "".join(vowel if c in "aeiou" else c for c in syllables[i])
        candidate = "".join(syllables)
        if candidate.lower() != name.lower() and candidate[0].isupper():
            return candidate


def person_pair(rng: random.Random, names: _Names, equivalent: bool) -> JudgePair:
    given, family = names.person().split(" ", 1)
    company = names.company()
    question = rng.choice(
        ("Who founded {company}?", "Who is the founder of {company}?", "Which person started {company}?")
    )
    question = question.format(company=company)
    reference = rng.choice(_person_forms(given, family)[:2])
    canonical = f"{given} {family}"
    if equivalent:
        prediction = rng.choice([f for f in _person_forms(given, family) if f != reference])
        return JudgePair("person", question, prediction, reference, True, canonical, canonical)
    if rng.random() < 0.5:
        wrong_given, wrong_family = given, _near_miss_name(rng, names, family)
    else:
        wrong_given, wrong_family = _near_miss_name(rng, names, given), family
    if " " in wrong_family:  # a whole other person
        wrong_given, wrong_family = wrong_family.split(" ", 1)
    prediction = rng.choice(_person_forms(wrong_given, wrong_family)[:3])
    return JudgePair(
        "person", question, prediction, reference, False, f"{wrong_given} {wrong_family}", canonical
    )


_COMPANY_TAILS = ("", " Inc.", " Ltd.", " Group", " company")


def company_pair(rng: random.Random, names: _Names, equivalent: bool) -> JudgePair:
    name = names.company()
    other = names.company()
    question = f"Which company was founded earlier, {name} or {other}?"
    if rng.random() < 0.5:
        question = f"Which company was founded earlier, {other} or {name}?"

    def forms(company: str) -> list[str]:
        return [company, f"the {company} company", f"{company} Inc.", f"{company} Ltd."]

    reference = name
    if equivalent:
        prediction = rng.choice(forms(name)[1:])
        return JudgePair("company", question, prediction, reference, True, name, name)
    root, suffix = name.split(" ", 1)
    how = rng.random()
    if how < 0.4:
        wrong = other
    elif how < 0.7:
        wrong = f"{_near_miss_name(rng, names, root)} {suffix}"
    else:
        wrong = f"{root} {rng.choice([s for s in ('Systems', 'Holdings', 'Energy', 'Foods', 'Capital') if s != suffix])}"
    prediction = rng.choice(forms(wrong)[:3])
    return JudgePair("company", question, prediction, reference, False, wrong, name)


def place_pair(rng: random.Random, names: _Names, equivalent: bool) -> JudgePair:
    company = names.company()
    question = rng.choice(
        (
            "In which city is {company} headquartered?",
            "Where was {company} founded?",
            "In which city did {company} open its first office?",
        )
    ).format(company=company)
    city = names.city()

    def forms(place: str) -> list[str]:
        return [place, f"the city of {place}", f"in {place}", f"{place} city"]

    reference = city
    if equivalent:
        return JudgePair("place", question, rng.choice(forms(city)[1:]), reference, True, city, city)
    wrong = names.city() if rng.random() < 0.35 else _near_miss_name(rng, names, city)
    return JudgePair("place", question, rng.choice(forms(wrong)[:3]), reference, False, wrong, city)


_FRAGMENTS = ("is", "the", "it", "none", "unknown", "not stated", "the company", "the answer", "yes", "no")


def unrelated_answer(rng: random.Random, names: _Names) -> str:
    """What a policy writes instead of an answer: a fragment of a sentence, or a thing of another kind."""
    return rng.choice(
        (
            lambda: rng.choice(_FRAGMENTS),
            names.person,
            names.company,
            names.city,
            lambda: str(_plain_number(rng)),
            lambda: f"founded in {rng.randint(1900, 2020)}",
        )
    )()


_MONTHS = "January February March April May June July August September October November December".split()


def _date_forms(year: int, month: int, day: int) -> list[str]:
    name = _MONTHS[month - 1]
    return [
        f"{day} {name} {year}",
        f"{name} {day}, {year}",
        f"{year}-{month:02d}-{day:02d}",
        f"{name[:3]}. {day}, {year}",
    ]


def date_pair(rng: random.Random, names: _Names, equivalent: bool) -> JudgePair:
    company = names.company()
    question = rng.choice(
        ("When was {company} founded?", "On what date did {company} open its first office?")
    )
    question = question.format(company=company)
    year, month, day = rng.randint(1900, 2020), rng.randint(1, 12), rng.randint(1, 28)
    reference = rng.choice(_date_forms(year, month, day)[:3])
    canonical = f"{year}-{month:02d}-{day:02d}"
    if equivalent:
        prediction = rng.choice([f for f in _date_forms(year, month, day) if f != reference])
        return JudgePair("date", question, prediction, reference, True, canonical, canonical)
    how = rng.choice(("year", "month", "day"))
    wrong = {
        "year": (year + rng.choice((-1, 1, 10, -10)), month, day),
        "month": (year, month % 12 + 1, day),
        "day": (year, month, day % 28 + 1),
    }[how]
    prediction = rng.choice(_date_forms(*wrong)[:3])
    return JudgePair(
        "date", question, prediction, reference, False, f"{wrong[0]}-{wrong[1]:02d}-{wrong[2]:02d}", canonical
    )


_MAKERS: dict[Family, Callable[[random.Random, _Names, bool], JudgePair]] = {
    "number": number_pair,
    "percent": percent_pair,
    "words": words_pair,
    "option": option_pair,
    "person": person_pair,
    "company": company_pair,
    "place": place_pair,
    "date": date_pair,
}


def judge_pair(index: int, seed: int, families: tuple[Family, ...] = FAMILIES) -> JudgePair:
    """Pair ``index`` of the stream: families in turn, blocks of each kind in ``KIND_CYCLE``'s turn."""
    rng = random.Random(f"longrl-judge-pairs:{seed}:{index}")
    family = families[index % len(families)]
    kind = KIND_CYCLE[(index // len(families)) % len(KIND_CYCLE)]
    names = _Names(rng)
    pair = _MAKERS[family](rng, names, kind == "equivalent")
    if kind == "unrelated":
        prediction = unrelated_answer(rng, names)
        return dataclasses.replace(
            pair, prediction=prediction, prediction_means=prediction, equivalent=False, kind=kind
        )
    return dataclasses.replace(pair, kind=kind)


def judge_pairs(num_pairs: int, seed: int, families: tuple[Family, ...] = FAMILIES) -> Iterator[JudgePair]:
    for index in range(num_pairs):
        yield judge_pair(index, seed, families)


# ----- the judge's reply ----------------------------------------------------------------------------


# The reply's own words, which the judge's reading practice (``longrl.serving.judge_model``) writes too.
ANSWER_1_MEANS = "Answer 1 means"
ANSWER_2_MEANS = "; answer 2 means"
MARK = "|"


def parting_index(mine: Sequence[int], theirs: Sequence[int]) -> int:
    """Where two token sequences first differ (the shorter one's length when it starts the other)."""
    shared = min(len(mine), len(theirs))
    return next((i for i in range(shared) if mine[i] != theirs[i]), shared)


def _marked(tokenizer: Any, means: str, other: str) -> str:
    """`` {means};`` up to where its tokens first part from those of `` {other};``, then ``|`` (the whole
    of it, unmarked, if they never part)."""
    mine = tokenizer(f" {means};", add_special_tokens=False)["input_ids"]
    theirs = tokenizer(f" {other};", add_special_tokens=False)["input_ids"]
    parted = parting_index(mine, theirs)
    if parted == len(mine) == len(theirs):
        return tokenizer.decode(mine)
    return tokenizer.decode(mine[:parted]) + MARK


def judge_reply(pair: JudgePair, tokenizer: Any) -> str:
    """What the judge should answer: both answers in one form, the second written only up to where it first
    parts from the first and marked there with ``|``, whether they agree, the final verdict.

    The mark is what makes the comparison learnable for a small model: writing answer 2's form token by
    token, it sees (by in-context copying) what answer 1's form has next, and a mismatch shows as the mark
    it writes instead. The agreement then follows from the token just before it (``|`` or ``;``), so the
    verdict cannot contradict the comparison. Without a mark, a 2-layer judge learned both forms but never
    the comparison (held-out accuracy 0.51 after 1,200 steps); with the mark followed by the rest of answer
    2's form, 0.76, but its verdict often ignored its own mark; stopping at the mark, 0.78 in 20% less time.
    """
    agreement = "the same answer" if pair.equivalent else "different answers"
    verdict = "[[YES]]" if pair.equivalent else "[[NO]]"
    marked = _marked(tokenizer, pair.reference_means, pair.prediction_means)
    return f"{ANSWER_1_MEANS} {pair.prediction_means}{ANSWER_2_MEANS}{marked} {agreement}.\n</think>\n\n{verdict}"


def judge_training_row(tokenizer: Any, pair: JudgePair) -> dict[str, Any]:
    """A prompt/completion row: the prompt exactly as the verifier's chat endpoint renders the reward's
    messages, the completion the reply (the chat template's generation prompt already opened <think>)."""
    from longrl.rewards.judge import judge_messages

    prompt = tokenizer.apply_chat_template(
        judge_messages(pair.question, pair.prediction, pair.reference),
        tokenize=False,
        add_generation_prompt=True,
    )
    return {
        "prompt": prompt,
        "completion": judge_reply(pair, tokenizer),
        "family": pair.family,
        "equivalent": pair.equivalent,
    }
