"""Near duplicates: MinHash signatures, LSH candidates and exact Jaccard, independent of how texts are
batched."""

from __future__ import annotations

import random
from itertools import pairwise

import numpy as np

from tasks.prepare import near_dup
from tasks.prepare.near_dup import (
    MAX_CANDIDATES,
    _chunks,
    candidate_pairs,
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


REFUSAL = (
    "I'm sorry, but I can't help with that. Giving a medicine to someone without their knowledge could "
    "seriously harm them and goes against medical ethics. Please talk to a licensed doctor or pharmacist "
    "about safe options, and if anyone is in danger call your local emergency number now."
)


def _refusal_rows(n: int, seed: int = 9) -> list[dict[str, str]]:
    """n rows answered by one refusal, their questions behind one shared framing: real safety data."""
    rng = random.Random(seed)
    words = [f"{a}{b}{c}" for a in "bcdfgklmnprst" for b in "aeiou" for c in "lmnrstx"]
    return [
        {
            "id": f"r{k}",
            "question": "As a nurse on night shifts, " + " ".join(rng.sample(words, 9)) + "?",
            "answer": REFUSAL,
        }
        for k in range(n)
    ]


def _verifications(
    monkeypatch, rows: list[dict[str, str]], red_team: list[bool] | None = None
) -> tuple[int, dict, list[str]]:
    """dedup_near's result on rows, and how many candidate pairs it verified with exact Jaccard."""
    calls = []
    jaccard = near_dup._ShingleSets.jaccard
    monkeypatch.setattr(
        near_dup._ShingleSets, "jaccard", lambda self, k, i, j: calls.append(k) or jaccard(self, k, i, j)
    )
    dropped, groups = near_dup.dedup_near(rows, red_team or [False] * len(rows), 0.9)
    return len(calls), dropped, groups


def test_rows_sharing_an_answer_get_a_bounded_number_of_candidates(monkeypatch):
    n = 1200
    rows = _refusal_rows(n)
    sigs = minhash_signatures([near_dup.near_dup_text(r) for r in rows])
    uncapped = lsh_pairs(sigs)
    similar = uncapped[near_dup.estimates(sigs, uncapped) >= 0.45]
    # the rows all resemble each other: some have more similar earlier rows than a row may verify
    assert np.bincount(similar[:, 1]).max() > 1.5 * MAX_CANDIDATES
    pairs, est = candidate_pairs(sigs, 0.45)
    assert np.bincount(pairs[:, 1]).max() <= MAX_CANDIDATES
    assert np.all(est >= 0.45) and np.all(np.diff(pairs[:, 1] * n + pairs[:, 0]) > 0)  # in (j, i) order
    verified, dropped, groups = _verifications(monkeypatch, rows)
    assert verified <= len(pairs) <= MAX_CANDIDATES * n  # exact Jaccard at most MAX_CANDIDATES times a row
    assert not dropped and set(groups) == {"r0"}  # all distinct rows, and one group of paraphrases


def test_a_near_copy_among_rows_sharing_an_answer_is_still_dropped(monkeypatch):
    rows = _refusal_rows(800)
    rows.append(rows[500] | {"id": "copy", "question": rows[500]["question"].replace("?", "!")})
    _, dropped, groups = _verifications(monkeypatch, rows)
    assert set(dropped) == {800} and dropped[800][0] == 500 and dropped[800][1] >= 0.9


def test_candidate_pairs_keep_each_rows_most_similar_earlier_rows():
    base = np.random.default_rng(4).integers(0, 2**32, near_dup.NUM_PERM, dtype=np.uint64).astype(np.uint32)
    sigs = np.tile(base, (21, 1))
    for k in range(20):  # row k differs from row 20 in (k % 10) + 1 positions: ties between k and k + 10
        sigs[k, np.arange(k % 10 + 1) * 6] = 1000 + 100 * k + np.arange(k % 10 + 1)
    pairs, est = candidate_pairs(sigs, 0.45, max_candidates=5)
    assert pairs[pairs[:, 1] == 20, 0].tolist() == [0, 1, 2, 10, 11]  # 1, 1, 2, 2 and 3 changes: the earlier
    assert est[pairs[:, 1] == 20].tolist() == [63 / 64, 62 / 64, 61 / 64, 63 / 64, 62 / 64]


def test_skipping_verifications_changes_nothing_against_verifying_every_candidate(monkeypatch):
    rng = random.Random(2)
    rows = _refusal_rows(300) + [
        {"id": f"t{k}", "question": t, "answer": "ok"} for k, t in enumerate(_texts(300))
    ]
    for k in rng.sample(range(len(rows)), 60):  # near copies and paraphrases
        words = rows[k]["question"].split(" ")
        words[rng.randrange(len(words))] = "changed"
        rows.append(rows[k] | {"id": f"c{k}", "question": " ".join(words)})
    rng.shuffle(rows)
    red_team = [rng.random() < 0.1 for _ in rows]
    # the reference: every candidate verified, in (j, i) order
    clusters = near_dup._Clusters(list(range(len(rows))))
    expected: dict[int, tuple[int, float]] = {}
    for i, j, jac in similar_pairs([near_dup.near_dup_text(r) for r in rows], 0.6):
        if jac >= 0.6:
            clusters.union(i, j)
        if jac >= 0.9 and j not in expected and i not in expected and red_team[i] == red_team[j]:
            expected[j] = (i, jac)
    verified, dropped, groups = _verifications(monkeypatch, rows, red_team)
    assert dropped == expected and len(expected) > 10
    roots = [clusters.find(i) for i in range(len(rows))]
    assert [groups.index(g) for g in groups] == [roots.index(r) for r in roots]  # the same partition
    assert verified < len(similar_pairs([near_dup.near_dup_text(r) for r in rows], 0.0)) / 2
