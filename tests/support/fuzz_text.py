"""Generated hostile text for fuzzing scorers: random unicode, huge numbers and exponents, nested and
unbalanced tags, answer markers, verdict tokens and chat end tokens."""

from __future__ import annotations

import random

from longrl.rewards.extraction import END_TOKENS

_FRAGMENTS = (
    "<think>",
    "</think>",
    "</think></think>",
    "the answer is",
    "Therefore, the answer is ",
    "The correct answer is ",
    "THE ANSWER IS:",
    "[[YES]]",
    "[[NO]]",
    "(B)",
    "(J)",
    "option C",
    "\\boxed{",
    "}",
    "$",
    "%",
    "≈",
    "=",
    "−",
    "×10^",
    "10^",
    "e",
    "E-",
    "/",
    "/0",
    ",",
    ".",
    "**",
    "`",
    "True",
    "no",
    "approximately ",
    "million",
    "US$",
    "\x00",
    "\u202e",
    "\ufeff",
    "\ud800",
    "\U0001f600",
    "٣",  # an Arabic-Indic digit: a decimal digit to \d
    "１２",  # full-width digits
    "inf",
    "nan",
    *END_TOKENS,
)


def _huge_number(rng: random.Random) -> str:
    length = rng.choice([1, 20, 400, 5000, 20000])
    digits = ("".join(rng.choices("0123456789", k=min(length, 64))) * (length // 64 + 1))[:length]
    shape = rng.randrange(6)
    if shape == 0:
        return f"{digits}e{'-' if rng.random() < 0.5 else ''}{digits}"
    if shape == 1:
        return f"1.5 × 10^{digits}"
    if shape == 2:
        return f"10^({digits})"
    if shape == 3:
        return f"{digits}/{digits}"
    if shape == 4:
        return ",".join([digits[:3]] * rng.randint(1, 2000))
    return f"-{digits}.{digits}"


def _random_unicode(rng: random.Random) -> str:
    return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(1, 40)))


def fuzz_string(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.45:
            parts.append(rng.choice(_FRAGMENTS))
        elif kind < 0.6:
            parts.append(_huge_number(rng))
        elif kind < 0.8:
            parts.append(_random_unicode(rng))
        elif kind < 0.9:
            parts.append(rng.choice(_FRAGMENTS) * rng.randint(2, 3000))  # nesting and repetition
        else:
            parts.append(str(rng.uniform(-1e6, 1e6)))
    return "".join(parts)
