"""Near duplicates: character 5-shingle MinHash + LSH banding, confirmed by exact Jaccard, and groups.

Groups: rows whose question+answer Jaccard reaches GROUP_THRESHOLD (0.6, deliberately below the
near-duplicate threshold), or whose normalised questions are identical, are linked; each connected
cluster shares `group` = id of its first kept row, so the split stage keeps paraphrases together.
LSH finds a pair at Jaccard 0.6-0.7 with probability about 0.9 and above 0.75 almost surely; the
quarantine threshold (0.9 by default) is applied to the exact Jaccard of each candidate pair.

Cost is linear in rows however repetitive the data (many rows sharing a refusal answer or a question
prefix are all similar to each other, so their true similar pairs grow with the square of their number):
an LSH bucket above MAX_BUCKET rows links as a star plus a chain, each row keeps at most MAX_CANDIDATES
candidates (its most similar earlier rows by MinHash estimate), and a candidate is verified only when
its outcome could still change something - its rows are in different groups, or it could drop a row
(estimate within ESTIMATE_MARGIN of the threshold, neither row dropped yet).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

GROUP_THRESHOLD = 0.6
SHINGLE = 5
NUM_PERM, BANDS = 64, 16  # 16 bands of 4: a pair at Jaccard 0.6 is a candidate with p=0.89, at 0.7 p=0.99
MAX_BUCKET = 32  # rows in one band's bucket linked pairwise; a larger bucket links as a star plus a chain
MAX_CANDIDATES = 32  # candidates verified per row at most (the benchmark's generated rows need up to 28)
ESTIMATE_MARGIN = 0.15  # 2.5 standard errors of a 64-permutation estimate near Jaccard 0.5
_PAIR_BLOCK = 1 << 15  # candidate pairs handled at a time: bounds the memory of estimates and shingle sets

_RNG = np.random.default_rng(20240601)  # fixed: signatures must not change between runs
_PERM_A = (_RNG.integers(0, 2**31, NUM_PERM, dtype=np.uint64) * 2 + 1).astype(np.uint32)
_PERM_B = _RNG.integers(0, 2**32, NUM_PERM, dtype=np.uint64).astype(np.uint32)


def shingle_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every SHINGLE-character window of every text, concatenated, and each text's first
    index."""
    padded = [t if len(t) >= SHINGLE else t.ljust(SHINGLE, "\x01") for t in texts]
    lens = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    codes = np.frombuffer("\x00".join(padded).encode("utf-32-le"), dtype=np.uint32)
    n = codes.size - SHINGLE + 1
    h = codes[:n] * np.uint32(0x01000193)  # FNV-1a over the window's code points
    for j in range(1, SHINGLE):
        h ^= codes[j : j + n]
        h *= np.uint32(0x01000193)
    ends = np.concatenate(([0], np.cumsum(lens + 1)[:-1])) + lens  # where each separator sits
    across = (ends[:, None] - np.arange(1, SHINGLE)).ravel()  # windows that run into a separator
    keep = np.ones(n, dtype=bool)
    keep[across[across < n]] = False
    keep[ends[:-1]] = False
    h = h[keep]
    h ^= h >> np.uint32(16)  # murmur3 finaliser: every input bit reaches the high bits the minimum looks at
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h, np.concatenate(([0], np.cumsum(lens - SHINGLE + 1)[:-1]))


def _chunks(texts: list[str], budget: int = 150_000) -> Iterator[tuple[int, int]]:
    """(start, end) runs of texts of about `budget` characters: hashing memory stays near 20 bytes x budget
    (and, this small, the arrays each permutation sweeps stay in the CPU cache)."""
    start = 0
    while start < len(texts):
        end, size = start + 1, len(texts[start])
        while end < len(texts) and size + len(texts[end]) <= budget:
            size, end = size + len(texts[end]), end + 1
        yield start, end
        start = end


def minhash_signatures(texts: list[str]) -> np.ndarray:
    """(len(texts), NUM_PERM) MinHash signatures."""
    sigs = np.empty((len(texts), NUM_PERM), dtype=np.uint32)
    for start, end in _chunks(texts):
        h, offsets = shingle_hashes(texts[start:end])
        buf = np.empty_like(h)
        for p in range(NUM_PERM):
            np.multiply(h, _PERM_A[p], out=buf)
            buf += _PERM_B[p]
            sigs[start:end, p] = np.minimum.reduceat(buf, offsets)
    return sigs


def lsh_pairs(sigs: np.ndarray, bands: int = BANDS, max_bucket: int = MAX_BUCKET) -> np.ndarray:
    """Candidate pairs (i < j) that share a band; a bucket above max_bucket rows links as a star plus a
    chain."""
    n, r = sigs.shape[0], sigs.shape[1] // bands
    found: list[np.ndarray] = []
    wide = sigs.astype(np.uint64)
    for b in range(bands):
        key = wide[:, b * r]
        for c in range(b * r + 1, (b + 1) * r):
            key = key * np.uint64(0x9E3779B97F4A7C15) + wide[:, c]
        order = np.argsort(key, kind="stable")
        sk = key[order]
        starts = np.concatenate(([True], sk[1:] != sk[:-1]))
        run = np.cumsum(starts) - 1
        size = np.bincount(run)[run]
        shared = size > 1  # most rows are alone in their bucket: drop them before the pairing passes
        if not shared.any():
            continue
        order, starts, size = order[shared], starts[shared], size[shared]
        run = np.cumsum(starts) - 1
        big = size > max_bucket
        for d in range(1, min(int(size.max()), max_bucket)):
            same = (run[:-d] == run[d:]) & (~big[:-d] | (d == 1))
            k = np.flatnonzero(same)
            found.append(np.stack([order[k], order[k + d]], axis=1))
        if big.any():
            first = np.flatnonzero(starts)[run]
            k = np.flatnonzero(big & ~starts)
            found.append(np.stack([order[first[k]], order[k]], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    codes = _distinct(np.minimum(pairs[:, 0], pairs[:, 1]) * n + np.maximum(pairs[:, 0], pairs[:, 1]))
    return np.stack([codes // n, codes % n], axis=1)


def _distinct(values: np.ndarray) -> np.ndarray:
    """np.unique of integers by sorting: np.unique builds a hash table first, several times slower here."""
    values = np.sort(values)
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def shingle_sets(texts: list[str]) -> list[np.ndarray]:
    """Each text's distinct shingle hashes, sorted: one sort of (text, hash) keys for the whole batch, not one
    per text.
    """
    h, offsets = shingle_hashes(texts)
    text_of = np.repeat(np.arange(len(texts), dtype=np.uint64), np.diff(offsets, append=h.size))
    keys = _distinct(text_of << np.uint64(32) | h)
    bounds = np.searchsorted(keys, np.arange(len(texts) + 1, dtype=np.uint64) << np.uint64(32)).tolist()
    hashes = keys.astype(np.uint32)  # the low 32 bits
    return [hashes[lo:hi] for lo, hi in pairwise(bounds)]


def _n_common(a: np.ndarray, b: np.ndarray) -> int:
    """How many values two sorted arrays of distinct values share: a stable sort of the two runs is a linear
    merge.
    """
    merged = np.concatenate((a, b))
    merged.sort(kind="stable")
    return int(np.count_nonzero(merged[1:] == merged[:-1]))


def exact_jaccard(texts: list[str], pairs: np.ndarray) -> np.ndarray:
    """Jaccard similarity of the shingle sets of each pair (32-bit shingle hashes: collisions are
    negligible)."""
    members = _distinct(pairs.ravel()).tolist()
    sets: dict[int, np.ndarray] = {}
    for start, end in _chunks([texts[i] for i in members]):
        sets.update(
            zip(members[start:end], shingle_sets([texts[i] for i in members[start:end]]), strict=True)
        )
    out = np.empty(len(pairs))
    for n, (i, j) in enumerate(pairs.tolist()):
        both = _n_common(sets[i], sets[j])
        out[n] = both / (sets[i].size + sets[j].size - both)
    return out


def estimates(sigs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """MinHash Jaccard estimate of each pair, _PAIR_BLOCK pairs at a time (gathering both rows' signatures
    costs 512 bytes a pair: a million pairs at once would hold half a gigabyte)."""
    out = np.empty(len(pairs))
    for start in range(0, len(pairs), _PAIR_BLOCK):
        block = pairs[start : start + _PAIR_BLOCK]
        # count, not mean: the mean would widen every pair's 64 booleans to float64 (equal: count/64 is exact)
        out[start : start + len(block)] = np.count_nonzero(sigs[block[:, 0]] == sigs[block[:, 1]], axis=1)
    return out / sigs.shape[1]


def candidate_pairs(
    sigs: np.ndarray, min_estimate: float, max_candidates: int = MAX_CANDIDATES
) -> tuple[np.ndarray, np.ndarray]:
    """LSH pairs (i < j) whose MinHash estimate reaches min_estimate, and their estimates, sorted by (j, i);
    each j keeps its max_candidates highest estimates (ties: the earlier i), so a row that resembles
    thousands of others (a shared refusal) costs no more to verify than any other row."""
    n, width = len(sigs), sigs.shape[1] + 1
    pairs = lsh_pairs(sigs)
    est = estimates(sigs, pairs)
    keep = est >= min_estimate
    pairs, est = pairs[keep], est[keep]
    i, j = pairs[:, 0], pairs[:, 1]
    count = np.bincount(j, minlength=n)
    if count.size and count.max() > max_candidates:
        # one int64 key (j, estimate high to low, i): an argsort of it is several times faster than lexsort
        matches = np.rint(est * sigs.shape[1]).astype(np.int64)
        order = np.argsort((j * width + (width - 1 - matches)) * n + i)
        first = np.concatenate(([0], np.cumsum(count)[:-1]))  # where each j's run starts in that order
        order = order[np.arange(len(order)) - first[j[order]] < max_candidates]
        pairs, est = pairs[order], est[order]
        i, j = pairs[:, 0], pairs[:, 1]
    order = np.argsort(j * n + i)
    return pairs[order], est[order]


def similar_pairs(
    texts: list[str], min_jaccard: float, signatures: np.ndarray | None = None
) -> list[tuple[int, int, float]]:
    """(i, j, exact Jaccard) for i < j at or above min_jaccard, sorted by (j, i); candidates from MinHash LSH
    (`signatures`: the texts' minhash_signatures, when they were computed already), at most MAX_CANDIDATES
    per j."""
    if len(texts) < 2:
        return []
    sigs = minhash_signatures(texts) if signatures is None else signatures
    pairs, _ = candidate_pairs(sigs, min_jaccard - ESTIMATE_MARGIN)
    if not pairs.size:
        return []
    jac = exact_jaccard(texts, pairs)
    keep = np.flatnonzero(jac >= min_jaccard)
    return sorted(
        ((int(pairs[k, 0]), int(pairs[k, 1]), float(jac[k])) for k in keep), key=lambda t: (t[1], t[0])
    )


class _ShingleSets:
    """Exact Jaccard of candidate pairs, handled in (j, i) order: each row's shingle set is computed with the
    others of the first block of _PAIR_BLOCK pairs that names it and forgotten after the last pair that does,
    so memory follows the rows still in play, not all rows."""

    def __init__(self, texts: list[str], pairs: np.ndarray) -> None:
        self.texts, self.pairs, self.next_block = texts, pairs, 0
        self.sets: dict[int, np.ndarray] = {}
        last = np.full(len(texts), -1, dtype=np.int64)  # the last pair that names each row
        position = np.arange(len(pairs), dtype=np.int64)
        np.maximum.at(last, pairs[:, 0], position)
        np.maximum.at(last, pairs[:, 1], position)
        named = np.flatnonzero(last >= 0)
        self.by_last = named[np.argsort(last[named], kind="stable")]
        self.last_sorted = last[self.by_last]
        self.forgotten = 0

    def _load(self, block: int) -> None:
        """Forget the rows no pair from `block` on names, and compute the sets the block needs."""
        start = block * _PAIR_BLOCK
        done = int(np.searchsorted(self.last_sorted, start))
        for row in self.by_last[self.forgotten : done].tolist():
            self.sets.pop(row, None)
        self.forgotten = done
        rows = _distinct(self.pairs[start : start + _PAIR_BLOCK].ravel()).tolist()
        todo = [r for r in rows if r not in self.sets]
        for lo, hi in _chunks([self.texts[r] for r in todo]):
            self.sets.update(
                zip(todo[lo:hi], shingle_sets([self.texts[r] for r in todo[lo:hi]]), strict=True)
            )
        self.next_block = block + 1

    def jaccard(self, k: int, i: int, j: int) -> float:
        """Exact Jaccard of pair number k, rows i and j (pairs are asked for in order)."""
        if k >= self.next_block * _PAIR_BLOCK:
            self._load(k // _PAIR_BLOCK)  # blocks whose pairs were all skipped are never computed
        a, b = self.sets[i], self.sets[j]
        both = _n_common(a, b)
        return both / (a.size + b.size - both)


@dataclass
class _Clusters:
    """Union-find over row indices."""

    parent: list[int]

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def near_dup_text(row: dict[str, Any]) -> str:
    """What two rows are compared on: question and answer, lower-cased."""
    return (row["question"] + "\n" + row["answer"]).lower()


def dedup_near(
    rows: list[dict[str, Any]], red_team: list[bool], threshold: float, signatures: np.ndarray | None = None
) -> tuple[dict[int, tuple[int, float]], list[str]]:
    """Near duplicates {index: (kept index, Jaccard)} and every row's group id (kept rows only are
    meaningful);
    `signatures`: the rows' minhash_signatures of near_dup_text, when they were computed already.

    A red-team prompt is never dropped as a copy of a training row (or the reverse); they share a group
    instead.
    """
    texts = [near_dup_text(r) for r in rows]
    clusters = _Clusters(list(range(len(rows))))
    dropped: dict[int, tuple[int, float]] = {}
    if len(texts) >= 2:
        sigs = minhash_signatures(texts) if signatures is None else signatures
        pairs, est = candidate_pairs(sigs, min(GROUP_THRESHOLD, threshold) - ESTIMATE_MARGIN)
        sets = _ShingleSets(texts, pairs)
        may_drop = (est >= threshold - ESTIMATE_MARGIN).tolist()
        # in (j, i) order, so a row's fate is settled before it is compared with later rows
        for k, (i, j) in enumerate(pairs.tolist()):
            droppable = may_drop[k] and j not in dropped and i not in dropped and red_team[i] == red_team[j]
            if not droppable and clusters.find(i) == clusters.find(j):
                continue  # nothing this pair's Jaccard could change: skip the verification
            jac = sets.jaccard(k, i, j)
            if jac >= GROUP_THRESHOLD:
                clusters.union(i, j)
            if jac >= threshold and j not in dropped and i not in dropped and red_team[i] == red_team[j]:
                dropped[j] = (i, jac)
    first_of_question: dict[str, int] = {}
    for i, r in enumerate(rows):
        if (first := first_of_question.setdefault(r["question"].lower(), i)) != i:
            clusters.union(first, i)
    roots = [clusters.find(i) for i in range(len(rows))]
    first_kept: dict[int, int] = {}
    for i, root in enumerate(roots):
        if i not in dropped:
            first_kept.setdefault(root, i)
    groups = [rows[first_kept.get(root, i)]["id"] for i, root in enumerate(roots)]
    return dropped, groups
