"""Text answer scoring: SQuAD normalisation, exact match, sub-exact match and token F1."""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
# F1 treats these as atomic: "yes" must not earn partial credit against "no".
_ATOMIC_ANSWERS = frozenset({"yes", "no", "noanswer"})


def squad_normalize(text: str) -> str:
    """Lower-cases, removes punctuation and articles, folds white space (SQuAD's normalisation)."""
    text = text.lower().translate(_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, ground_truth: str) -> float:
    return float(squad_normalize(prediction) == squad_normalize(ground_truth))


def sub_exact_match(prediction: str, ground_truth: str) -> float:
    """1.0 when either normalised answer contains the other; an empty answer never matches."""
    pred, gold = squad_normalize(prediction), squad_normalize(ground_truth)
    if not pred or not gold:
        return 0.0
    return float(gold in pred or pred in gold)


def token_f1(prediction: str, ground_truth: str) -> float:
    pred, gold = squad_normalize(prediction), squad_normalize(ground_truth)
    if (pred in _ATOMIC_ANSWERS or gold in _ATOMIC_ANSWERS) and pred != gold:
        return 0.0
    pred_tokens, gold_tokens = pred.split(), gold.split()
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)
