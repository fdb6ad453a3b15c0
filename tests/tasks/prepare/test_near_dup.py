"""Near duplicates: MinHash signatures, LSH candidates and exact Jaccard, independent of how texts are
batched."""

from __future__ import annotations

import random
from itertools import pairwise

import numpy as np

from tasks.prepare import near_dup
from tasks.prepare.near_dup import (
    _chunks,
    exact_jaccard,
    lsh_pairs,
    minhash_signatures,
    shingle_hashes,
    shingle_sets,
    similar_pairs,
)


def _texts(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    words = ["fever", "cough", "胸痛", "头痛", "ibuprofen", "阿莫西林", "rash", "3 days", "咳嗽", "血压"]
    return ["".join(rng.choice(words) + " " for _ in range(rng.randint(0, 60))) for _ in range(n)]


def test_signatures_do_not_depend_on_the_batch_size(monkeypatch):
    texts = _texts(300) + ["", "abc", "短"]  # shorter than a shingle: padded, still signed
    whole = minhash_signatures(texts)
    assert len(list(_chunks(texts, budget=500))) > 10
    monkeypatch.setattr(near_dup, "_chunks", lambda t, budget=0: _chunks(t, budget=500))
    assert np.array_equal(minhash_signatures(texts), whole)
    one_by_one = np.vstack([minhash_signatures([t]) for t in texts])
    assert np.array_equal(one_by_one, whole)


def test_exact_jaccard_counts_distinct_shingles():
    texts = ["abcdefgh", "abcdefgX", "zzzzzzzzzz"]
    h, offsets = shingle_hashes(texts)
    assert offsets.tolist() == [0, 4, 8] and h.size == 4 + 4 + 6
    jac = exact_jaccard(texts, np.array([[0, 1], [0, 2]]))
    assert jac.tolist() == [3 / 5, 0.0]  # shared abcde bcdef cdefg of 5 distinct; none with z-runs


def test_shingle_sets_and_exact_jaccard_match_per_text_sets():
    texts = _texts(120, seed=5) + ["", "abc"]
    h, offsets = shingle_hashes(texts)
    expected = [np.unique(part) for part in np.split(h, offsets[1:])]
    assert all(np.array_equal(a, b) for a, b in zip(shingle_sets(texts), expected, strict=True))
    pairs = np.array([(i, j) for i in range(0, len(texts), 7) for j in range(i + 1, len(texts), 5)])
    sets = [set(e.tolist()) for e in expected]
    assert exact_jaccard(texts, pairs).tolist() == [
        len(sets[i] & sets[j]) / len(sets[i] | sets[j]) for i, j in pairs.tolist()
    ]


def test_lsh_pairs_link_each_bucket_fully_or_as_star_and_chain():
    sigs = (
        np.random.default_rng(1).integers(0, 3, (400, near_dup.NUM_PERM)).astype(np.uint32)
    )  # small buckets
    sigs[::5] = 0  # and a crowded one in every band
    expected = set()
    for band in np.split(sigs, near_dup.BANDS, axis=1):
        buckets: dict[bytes, list[int]] = {}
        for i, key in enumerate(band):
            buckets.setdefault(key.tobytes(), []).append(i)
        for rows in buckets.values():
            if len(rows) <= 32:
                expected |= {(a, b) for k, a in enumerate(rows) for b in rows[k + 1 :]}
            else:
                expected |= set(pairwise(rows)) | {(rows[0], b) for b in rows[1:]}
    assert sorted(expected) == [tuple(p) for p in lsh_pairs(sigs).tolist()]


def test_similar_pairs_finds_a_near_copy_among_unrelated_rows():
    texts = _texts(400)
    texts[250] = texts[17].replace("fever", "fevers", 1) if "fever" in texts[17] else texts[17] + "!"
    found = {(i, j) for i, j, jac in similar_pairs(texts, 0.9)}
    assert (17, 250) in found
    assert all(jac >= 0.9 for _, _, jac in similar_pairs(texts, 0.9))
