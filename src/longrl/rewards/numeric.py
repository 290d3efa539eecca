"""DocMath-style numeric answers: parsed (never evaluated) and compared with a tolerance.

A model writes numbers in many ways: "$1,234.5 million", "12.5%", "approximately 3.2",
"x = 1.2 × 10^3", "1.2e-3", "3/4", "Yes". ``parse_numeric_answer`` turns such text into a float,
a bool or an option letter with regular expressions only. ``numeric_match`` then accepts a
relative tolerance and the unit slips the recipe forgives: a percentage given as a fraction (or
the reverse) and amounts given in another power-of-thousand unit ("1.5 billion" for 1500 when
the question asked for millions).
"""

from __future__ import annotations

import math
import re

NumericAnswer = float | bool | str  # str: an option letter such as "a"

# DocMath's evaluation accepts answers within 0.15 % of the reference.
DEFAULT_REL_TOL = 0.0015
# Answers rounded to three decimals count as right (0.046 for 0.0456).
DEFAULT_ABS_TOL = 0.0005
# Percent vs. fraction, and power-of-thousand unit slips.
_SCALES = (100.0, 0.01, 1e3, 1e-3, 1e6, 1e-6, 1e9, 1e-9)

_TRUE_WORDS = frozenset({"true", "yes", "correct"})
_FALSE_WORDS = frozenset({"false", "no", "incorrect"})
_OPTION = re.compile(r"^\(([a-j])\)")
_LEADING_FILLER = re.compile(
    r"^(?:approximately|approx\.?|about|around|roughly|nearly|almost|circa|~|≈|=)\s*", re.IGNORECASE
)
_CURRENCY = re.compile(r"us\$|\$|£|€|¥|₹|\b(?:usd|rmb|cny|eur|gbp|jpy|inr)\b", re.IGNORECASE)
_SCALE_WORDS = re.compile(r"\b(?:thousands?|millions?|billions?|trillions?|bn|mn)\b", re.IGNORECASE)
_MANTISSA = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
_NUMBER = re.compile(
    rf"(?P<mantissa>{_MANTISSA})"
    r"(?:\s*[eE]\s*(?P<exp>[-+]?\d+)"
    r"|\s*(?:x|×|\*|·)\s*10\s*\^\s*\(?\s*(?P<pow>[-+]?\d+)\s*\)?"
    rf"|\s*/\s*(?P<denominator>{_MANTISSA}))?"
)
_POWER_OF_TEN = re.compile(r"^10\s*\^\s*\(?\s*(?P<pow>[-+]?\d+)\s*\)?")


def _prepare(text: str) -> str:
    text = text.replace("−", "-").replace("\\%", "%").replace("\\$", "$").replace("`", "").replace("*", "")
    for sign in ("=", "≈"):
        if sign in text:
            text = text.rsplit(sign, 1)[-1]
    text = text.strip()
    while True:
        stripped = _LEADING_FILLER.sub("", text)
        if stripped == text:
            break
        text = stripped
    text = _CURRENCY.sub("", text)
    text = _SCALE_WORDS.sub("", text)
    return " ".join(text.split())


# Exponents this long are far past float range (and int() refuses strings past 4300 digits).
_MAX_EXPONENT_DIGITS = 6


def _power_of_ten(exponent: str) -> float:
    digits = exponent.lstrip("+-").lstrip("0")
    if len(digits) > _MAX_EXPONENT_DIGITS:
        return 0.0 if exponent.startswith("-") else math.inf
    try:
        return 10.0 ** int(exponent)
    except OverflowError:
        return math.inf


def _to_float(match: re.Match[str]) -> float | None:
    value = float(match.group("mantissa").replace(",", ""))
    if match.group("exp") is not None:
        value *= _power_of_ten(match.group("exp"))
    elif match.group("pow") is not None:
        value *= _power_of_ten(match.group("pow"))
    elif match.group("denominator") is not None:
        denominator = float(match.group("denominator").replace(",", ""))
        if denominator == 0:
            return None
        value /= denominator
    return value


def _leading_word(text: str) -> str:
    words = re.findall(r"[a-z]+", text.lower()[:32])
    return words[0] if words else ""


def parse_numeric_answer(text: str) -> NumericAnswer | None:
    """A float, bool or option letter read from an answer, or None when it holds no single number."""
    text = _prepare(text)
    if not text:
        return None
    option = _OPTION.match(text.lower())
    if option:
        return option.group(1)
    word = _leading_word(text)
    if word in _TRUE_WORDS and not text[0].isdigit():
        return True
    if word in _FALSE_WORDS and not text[0].isdigit():
        return False
    power = _POWER_OF_TEN.match(text)
    if power:
        return _power_of_ten(power.group("pow"))
    leading = _NUMBER.match(text)
    if leading:
        return _to_float(leading)
    # "revenue grew by 5 %" still states one number; two or more are ambiguous.
    numbers = list(_NUMBER.finditer(text))
    if len(numbers) == 1:
        return _to_float(numbers[0])
    return None


_NON_FINITE = re.compile(r"^[-+]?(?:nan|inf(?:inity)?|∞)$", re.IGNORECASE)


def is_non_finite(text: str) -> bool:
    """Whether an answer states NaN or an infinity ("NaN", "-inf", "Infinity", "∞", "1e999"), which is
    never a value to score: a ``float('nan')`` turned into text reads "nan", not a number."""
    if _NON_FINITE.match(_prepare(text)):
        return True
    value = parse_numeric_answer(text)
    return isinstance(value, float) and not math.isfinite(value)


def numeric_match(
    prediction: NumericAnswer,
    ground_truth: NumericAnswer,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
) -> bool:
    """Whether a parsed prediction equals a parsed reference, within tolerance for numbers."""
    if isinstance(ground_truth, bool) or isinstance(prediction, bool):
        return isinstance(prediction, bool) and isinstance(ground_truth, bool) and prediction == ground_truth
    if isinstance(ground_truth, str) or isinstance(prediction, str):
        return prediction == ground_truth
    if not (math.isfinite(prediction) and math.isfinite(ground_truth)):
        return False
    if math.isclose(prediction, ground_truth, rel_tol=rel_tol, abs_tol=abs_tol):
        return True
    return any(math.isclose(prediction * scale, ground_truth, rel_tol=rel_tol) for scale in _SCALES)
