"""Multiple-choice answers: the option letter a model picked."""

from __future__ import annotations

import re

# Tried in order; the first that matches wins. A letter the answer starts with comes first, so that
# "B, not (C)" is B.
_OPTION_PATTERNS = (
    re.compile(r"^\s*\(([A-J])\)", re.IGNORECASE),  # "(B)", "(b) Paris"
    re.compile(r"^\s*\[?([A-J])\]?\s*(?:[.):,\-]|$)"),  # "B", "B.", "B) Paris", "[B]"
    re.compile(r"\(([A-J])\)", re.IGNORECASE),  # "Definitely (C)", "The correct answer is (B)"
    re.compile(r"\b(?:option|choice|answer)\s*:?\s*\(?((?-i:[A-J]))\b", re.IGNORECASE),  # "option B"
)


def extract_option_letter(text: str) -> str | None:
    """The upper-case option letter in an answer such as "(B)", "B. Paris" or "option B"; else None."""
    text = text.replace("*", "").strip()
    for pattern in _OPTION_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1).upper()
    return None
