"""The SQuAD v1.1 metric (what ``evaluate.load("squad")`` computes), in a few lines and without the package.

Answers are normalised (lower case, ASCII punctuation removed, articles a/an/the removed, whitespace
collapsed); each prediction scores the best exact match and token F1 over its gold answers; the corpus
scores are means over questions on a 0-100 scale.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 between the normalised strings (0 when they share no token, as in SQuAD v1.1)."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], gold_answers: list[list[str]]) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent: per question the max over its gold answers, then the mean."""
    if len(predictions) != len(gold_answers):
        raise ValueError(f"{len(predictions)} predictions for {len(gold_answers)} questions")
    if not predictions:
        raise ValueError("squad_scores needs at least one prediction")
    empty = [i for i, golds in enumerate(gold_answers) if not golds]
    if empty:
        raise ValueError(f"questions {empty[:5]} have no gold answer; SQuAD scoring needs at least one each")
    em = sum(max(exact_match_score(p, g) for g in golds) for p, golds in zip(predictions, gold_answers))
    f1 = sum(max(f1_score(p, g) for g in golds) for p, golds in zip(predictions, gold_answers))
    return {"exact_match": 100.0 * em / len(predictions), "f1": 100.0 * f1 / len(predictions)}
