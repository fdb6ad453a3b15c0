"""Logistic regression over word and character n-grams: the generic part of the learned terms.

A text becomes its distinct n-grams (latin words and word pairs, Chinese character pairs); a row is the
L2-normalized binary vector of them; the model is a bias and a dict of weights, so inference is pure
Python (no numpy on `medsafe score`'s path): `probability` (the fitted model) or `evidence` (one-sided:
only the features that weigh for the positive class count). Training (`fit`, numpy, imported lazily) is
full-batch gradient descent from zero: deterministic, byte-identical weights on a re-run.
`choose_threshold` picks the lowest score that at most a given share of guarded negatives reach.

Used by the reward's learned answer-safety term (tasks/reward/answer_model.py); the risk backstop
(tasks/risk/backstop.py) is the same kind of model with its own, question-specific features.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

_EN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+")
_ZH_RUN = re.compile(r"[\u4e00-\u9fff]+")


def normalize(text: str) -> str:
    """Fold width and case, hyphens to spaces, curly apostrophes to straight ones."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    return text.lower().replace("-", " ")


def ngrams(norm: str, stop: frozenset[str] = frozenset(), zh_stop: frozenset[str] = frozenset()) -> list[str]:
    """The distinct n-grams of a normalized text, in first-seen order: `w:word` (not a stop word),
    `b:word word` (not two stop words), `c:两字` (Chinese character pairs not in zh_stop). Both scripts are
    read in every text, so mixed answers need no language tag."""
    out: dict[str, None] = {}
    words = [w.replace("'", "") for w in _EN_WORD.findall(norm)]
    for i, word in enumerate(words):
        if word not in stop:
            out[f"w:{word}"] = None
        if i and not (word in stop and words[i - 1] in stop):
            out[f"b:{words[i - 1]} {word}"] = None
    for run in _ZH_RUN.findall(norm):
        for i in range(len(run) - 1):
            if (pair := run[i : i + 2]) not in zh_stop:
                out[f"c:{pair}"] = None
    return list(out)


def probability(
    feats: Sequence[str], bias: float, weights: dict[str, float]
) -> tuple[float, list[tuple[str, float]]]:
    """The model's probability for a row of features and each known feature's contribution, largest first."""
    if not feats:
        return 1.0 / (1.0 + math.exp(-bias)), []
    scale = 1.0 / math.sqrt(len(feats))  # rows are L2-normalized binary vectors, as in training
    parts = [(f, w * scale) for f in feats if (w := weights.get(f))]
    z = bias + sum(p for _, p in parts)
    p = 1.0 / (1.0 + math.exp(-z)) if z > -50 else 0.0
    return p, sorted(parts, key=lambda fp: fp[1], reverse=True)


def evidence(
    feats: Sequence[str], weights: dict[str, float], min_len: int = 1
) -> tuple[float, list[tuple[str, float]]]:
    """One-sided evidence for the positive class: the sum of the positive contributions only, each scaled
    by 1/sqrt(max(len(feats), min_len)); and those contributions, largest first. Features that weigh
    against the class cannot offset those that weigh for it (safety words do not excuse unsafe advice), and
    a short text needs as much evidence as a text of min_len features (a few common words are not enough)."""
    scale = 1.0 / math.sqrt(max(len(feats), min_len, 1))
    parts = [(f, w * scale) for f in feats if (w := weights.get(f, 0.0)) > 0]
    return sum(p for _, p in parts), sorted(parts, key=lambda fp: fp[1], reverse=True)


def fit(
    rows: Sequence[Sequence[str]],
    y: Sequence[int],
    strata: Sequence[object],
    *,
    l2: float,
    steps: int = 6000,
    lr: float = 15.0,
    min_df: int = 2,
) -> tuple[float, dict[str, float]]:
    """L2-regularized logistic regression on rows of features (those seen in at least min_df rows); each
    stratum (e.g. (language, label)) weighs equally. Deterministic."""
    import numpy as np

    df = Counter(f for fs in rows for f in fs)
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in df.items() if n >= min_df))}
    idx, row_of, val = [], [], []
    for r, fs in enumerate(rows):
        if fs:
            scale = 1.0 / math.sqrt(len(fs))  # as at inference: every feature of the text counts
            for f in fs:
                if (i := vocab.get(f)) is not None:
                    idx.append(i)
                    row_of.append(r)
                    val.append(scale)
    idx_a, row_a, val_a = np.array(idx, dtype=int), np.array(row_of, dtype=int), np.array(val)
    y_a = np.array(y, dtype=float)
    counts = Counter(strata)
    sw = np.array([len(rows) / (len(counts) * counts[s]) for s in strata])
    sw /= sw.sum()
    w, b = np.zeros(len(vocab)), 0.0
    for _ in range(steps):
        z = np.bincount(row_a, weights=w[idx_a] * val_a, minlength=len(rows)) + b
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
        g = sw * (p - y_a)
        grad_w = np.bincount(idx_a, weights=g[row_a] * val_a, minlength=len(vocab)) + l2 * w
        w -= lr * grad_w
        b -= lr * float(g.sum())
    names = sorted(vocab, key=vocab.__getitem__)
    return b, {names[i]: float(w[i]) for i in range(len(names))}


def top_weights(weights: dict[str, float], keep: int, digits: int = 4) -> dict[str, float]:
    """The keep largest weights by magnitude, rounded, in name order (a stable file)."""
    top = sorted(weights, key=lambda f: (-abs(weights[f]), f))[:keep]
    return {f: round(weights[f], digits) for f in sorted(top)}


def choose_threshold(negatives: Iterable[float], max_fa: float, floor: float) -> float:
    """The lowest probability (>= floor, rounded up to 1e-4) that at most max_fa of the negatives reach."""
    benign = sorted(negatives, reverse=True)
    t = floor
    allowed = math.floor(max_fa * len(benign))
    if len(benign) > allowed:
        t = max(t, benign[allowed] + 1e-4)
    return math.ceil(t * 1e4) / 1e4
