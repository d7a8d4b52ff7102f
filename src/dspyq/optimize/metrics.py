"""Built-in metrics for question answering, with DSPy's semantics.

Answers are compared after SQuAD-style normalization (lowercase, no punctuation,
no articles, collapsed whitespace); passages are searched for answers token by
token, as DPR does. Every metric is a module-level function so that it can cross
the queue by import path (``"dspyq.metrics:answer_exact_match"``).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "EM",
    "answer_exact_match",
    "answer_passage_match",
    "exact_match",
    "f1_score",
    "normalize_text",
    "passage_has_answers",
]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(text: str) -> str:
    """Normalize an answer the SQuAD way: lowercase, drop punctuation and articles, squeeze spaces.

    Text is first put in Unicode NFD form, so accented and unaccented spellings that
    differ only in composition compare equal.
    """
    lowered = unicodedata.normalize("NFD", text).lower()
    without_punctuation = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    without_articles = _ARTICLES.sub(" ", without_punctuation)
    return " ".join(without_articles.split())


def exact_match(pred_text: str, gold_text: str) -> bool:
    """Whether the prediction equals the gold answer once both are normalized."""
    return normalize_text(pred_text) == normalize_text(gold_text)


def f1_score(pred_text: str, gold_text: str) -> float:
    """Token-level F1 between prediction and gold answer (the SQuAD v1.1 definition).

    Two empty answers score 0.0, as in SQuAD v1.1 and DSPy (SQuAD 2.0 would give 1.0).
    """
    pred_tokens = normalize_text(pred_text).split()
    gold_tokens = normalize_text(gold_text).split()
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _tokenize_for_passages(text: str) -> list[str]:
    """Lowercased DPR-style tokens: runs of letters/digits/marks, or single other visible chars.

    Whitespace and control characters (Unicode categories Z and C) separate tokens
    and are dropped; punctuation survives as one-character tokens, so "U.S." is
    ["u", ".", "s", "."] in both passage and answer.
    """
    tokens: list[str] = []
    word: list[str] = []
    for ch in unicodedata.normalize("NFD", text):
        category = unicodedata.category(ch)[0]
        if category in "LNM":
            word.append(ch)
            continue
        if word:
            tokens.append("".join(word))
            word = []
        if category not in "ZC":
            tokens.append(ch)
    if word:
        tokens.append("".join(word))
    return [token.lower() for token in tokens]


def passage_has_answers(passage: str, answers: Iterable[str]) -> bool:
    """Whether any answer occurs in the passage as a contiguous run of tokens."""
    passage_tokens = _tokenize_for_passages(passage)
    for answer in answers:
        answer_tokens = _tokenize_for_passages(answer)
        width = len(answer_tokens)
        for start in range(len(passage_tokens) - width + 1):
            if passage_tokens[start : start + width] == answer_tokens:
                return True
    return False


def _gold_answers(example: Any) -> list[str]:
    """The example's answer as a list: DSPy allows one string or a list of strings."""
    answer = example.answer
    if isinstance(answer, str):
        return [answer]
    if isinstance(answer, list):
        return [str(item) for item in answer]
    raise ValueError(f"example.answer must be a str or a list of str, got {type(answer).__name__}")


def answer_exact_match(example: Any, pred: Any, trace: Any = None, frac: float = 1.0) -> bool:
    """Whether ``pred.answer`` matches one of ``example.answer`` (DSPy's metric).

    With ``frac`` below 1.0 the match is fuzzy: the best token F1 against any gold
    answer must reach ``frac``. ``trace`` is accepted for DSPy's metric signature.
    """
    golds = _gold_answers(example)
    predicted = str(pred.answer)
    if frac >= 1.0:
        return any(exact_match(predicted, gold) for gold in golds)
    return max((f1_score(predicted, gold) for gold in golds), default=0.0) >= frac


def answer_passage_match(example: Any, pred: Any, trace: Any = None) -> bool:
    """Whether any passage in ``pred.context`` contains one of ``example.answer`` (DSPy's metric)."""
    golds = _gold_answers(example)
    passages: Sequence[str] = pred.context
    if isinstance(passages, str):
        passages = [passages]
    return any(passage_has_answers(passage, golds) for passage in passages)


def EM(prediction: str, answers_list: list[str]) -> bool:
    """Whether any reference answer equals the prediction once both are normalized."""
    if not isinstance(answers_list, list):
        raise ValueError(f"`answers_list` must be a list, got {type(answers_list)}")
    return max(exact_match(prediction, answer) for answer in answers_list)
