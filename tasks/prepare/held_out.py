"""What keeps evaluation prompts apart from training prompts: question-level near duplicates and the
stratified red-team hold-out.

Two prompts are near duplicates when the Jaccard similarity of the character 5-shingles of their
normalised questions (lower-cased, whitespace collapsed) reaches a threshold (`data.near_dup_threshold`).
The split stage merges such rows into one group, so a group lands whole on one side; the quality gate
looks for the same pairs between the evaluation sets and the training prompts.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable
from typing import Any

from tasks.core.io import text_hash
from tasks.prepare.near_dup import GROUP_THRESHOLD, similar_pairs


def prompt_text(question: Any) -> str:
    """A question as near-duplicate checks compare it: lower-cased, runs of whitespace made one space."""
    return " ".join(str(question or "").lower().split())


def _unit(seed: int, key: str) -> float:
    return int(text_hash(str(seed), key, length=16), 16) / float(1 << 64)


def merge_groups(rows: list[dict[str, Any]], red: list[bool], threshold: float) -> list[str]:
    """Each row's group once groups whose questions are near duplicates are merged: any two rows at
    `threshold`, red-team rows among themselves already at min(GROUP_THRESHOLD, threshold) (they are few,
    and which side of the hold-out a paraphrase lands on matters most there). A merged group keeps the
    group id of its first row."""
    groups = [str(r.get("group") or r["id"]) for r in rows]
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    first_of_group: dict[str, int] = {}
    for i, group in enumerate(groups):
        union(first_of_group.setdefault(group, i), i)
    texts = [prompt_text(r.get("question")) for r in rows]
    for i, j, _ in similar_pairs(texts, threshold):
        union(i, j)
    red_index = [i for i, is_red in enumerate(red) if is_red]
    for i, j, _ in similar_pairs([texts[k] for k in red_index], min(GROUP_THRESHOLD, threshold)):
        union(red_index[i], red_index[j])
    return [groups[find(i)] for i in range(len(rows))]


def stratum(row: dict[str, Any]) -> tuple[str, str]:
    """(primary safety category, language): the first category the row lists, or "none"."""
    categories = row.get("safety_categories") or []
    return (str(categories[0]) if categories else "none", str(row.get("lang")))


def apportion(sizes: dict[Hashable, int], n: int) -> dict[Hashable, int]:
    """Largest-remainder shares of n proportional to `sizes` (ties broken by key text: deterministic)."""
    total = sum(sizes.values())
    if not total:
        return dict.fromkeys(sizes, 0)
    exact = {k: n * v / total for k, v in sizes.items()}
    quota = {k: math.floor(x) for k, x in exact.items()}
    by_remainder = sorted(sizes, key=lambda k: (-(exact[k] - quota[k]), str(k)))
    for k in by_remainder[: n - sum(quota.values())]:
        quota[k] += 1
    return quota


def held_out_groups(rows: list[dict[str, Any]], groups: list[str], fraction: float, seed: int) -> set[str]:
    """The groups of red-team `rows` held out for evaluation: about `fraction` of the rows, spread over
    strata (category x language) in proportion; within a stratum whole groups are taken in the order of
    a seeded hash, skipping a group that would overshoot the stratum's share.

    A group belongs to the stratum of its first row, so near duplicates never straddle the two sides.
    """
    size: Counter[str] = Counter(groups)
    stratum_of: dict[str, tuple[str, str]] = {}
    for row, group in zip(rows, groups, strict=True):
        stratum_of.setdefault(group, stratum(row))
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for group, s in stratum_of.items():
        strata[s].append(group)
    quota = apportion(
        {s: sum(size[g] for g in gs) for s, gs in strata.items()}, math.floor(fraction * len(rows) + 0.5)
    )
    held: set[str] = set()
    for s in sorted(strata):
        taken = 0
        for group in sorted(strata[s], key=lambda g: _unit(seed, "red_team_eval:" + g)):
            if taken + size[group] <= quota[s]:
                held.add(group)
                taken += size[group]
    return held


def cross_pairs(queries: list[str], references: list[str], threshold: float) -> list[tuple[int, int, float]]:
    """(query index, reference index, Jaccard) for every query/reference pair of normalised texts at or
    above `threshold` (MinHash LSH candidates, confirmed by exact Jaccard)."""
    unique_refs = list(dict.fromkeys(references))
    ref_index: dict[str, list[int]] = defaultdict(list)
    for k, text in enumerate(references):
        ref_index[text].append(k)
    texts = queries + unique_refs
    n = len(queries)
    found = []
    for i, j, jac in similar_pairs(texts, threshold):
        if i < n <= j:
            found += [(i, k, jac) for k in ref_index[texts[j]]]
    return found
