"""Classify-risk stage: label each cleaned row's risk level and safety categories from the lexicon.

The lexicon (data/rules/risk_lexicon.yaml, schema in tasks/risk_lexicon.py) is compiled into one
Aho-Corasick automaton per language plus a few regular expressions for phrases whose words inflect
or take an infix ("wants to die", "剧烈上腹痛"), so a text is scanned once however many terms there are
(tasks/term_matcher.py); tasks/risk_classifier.py turns hits into labels. Labels come from the
question (what the RL prompt will ask); the reasoning and answer may add only weak evidence.
Large files are labelled by this process and spawned worker processes together, in chunks, with the
same result as one process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from flows.config import Workdir
from tasks.caching import stage
from tasks.io import read_jsonl, write_jsonl
from tasks.risk_classifier import (  # noqa: F401  (the classifier's names, re-exported for callers of this stage)
    RiskClassifier,
    RiskLabel,
    apply_label,
    classify_rows,
    iter_labelled,
    label_chunk,
    label_row,
    options_start,
    risk_distribution,
    start_worker,
    trim,
)
from tasks.risk_lexicon import (  # noqa: F401  (re-exported)
    DEFAULT_LEXICON,
    SEVERITY_RANK,
    Combination,
    Lexicon,
    NegationRules,
    Severity,
    TermGroup,
    load_lexicon,
    normalize,
)
from tasks.term_matcher import TermMatcher  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

PARALLEL_MIN_ROWS = 20_000  # below this, starting worker processes costs more than it saves
CHUNK_ROWS = 1_000  # about half a second of labelling: small enough to balance, large enough to ship
_ROW_KEYS = ("id", "lang", "question", "think", "answer", "labelled", "risk_level")  # what labelling reads


def worker_count() -> int:
    """Worker processes to add beside this one: one per further CPU it may use, at most three."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(cpus - 1, 3))


def label_all(
    rows: list[dict[str, Any]],
    classifier: RiskClassifier,
    workers: int | None = None,
    min_rows: int = PARALLEL_MIN_ROWS,
) -> list[RiskLabel | None]:
    """Every row's label (None: curated), evidence trimmed to high and critical; worker processes help
    from `min_rows` rows on."""
    workers = worker_count() if workers is None else workers
    if workers < 1 or len(rows) < min_rows:
        return [trim(label_row(row, classifier, weak_evidence=False)) for row in rows]
    chunks = [
        [{k: r.get(k) for k in _ROW_KEYS} for r in rows[i : i + CHUNK_ROWS]]
        for i in range(0, len(rows), CHUNK_ROWS)
    ]
    labels: list[list[RiskLabel | None] | None] = [None] * len(chunks)
    try:
        _label_in_pool(chunks, labels, classifier, workers)
    except BrokenProcessPool as exc:  # a worker that cannot start (or died) must not fail the stage
        log.warning("classification workers failed (%s); labelling the remaining rows in this process", exc)
    for i, chunk in enumerate(chunks):
        if labels[i] is None:
            labels[i] = [trim(label_row(row, classifier, weak_evidence=False)) for row in chunk]
    return [label for chunk_labels in labels for label in chunk_labels or []]


def _label_in_pool(
    chunks: list[list[dict[str, Any]]], labels: list, classifier: RiskClassifier, workers: int
) -> None:
    """Fill labels[i] for each chunk: queued to the workers while they keep up, else labelled here."""
    # spawn, not fork: Prefect's threads may hold locks (a log stream, say) that a forked child inherits
    context = multiprocessing.get_context("spawn")
    pending: dict[Future, int] = {}
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=start_worker, initargs=(classifier.lexicon,)
    ) as pool:
        for i, chunk in enumerate(chunks):
            if sum(not f.done() for f in pending) < 2 * workers:  # one chunk in hand, one queued, per worker
                pending[pool.submit(label_chunk, chunk)] = i
            else:
                labels[i] = [trim(label_row(row, classifier, weak_evidence=False)) for row in chunk]
        for future, i in pending.items():
            labels[i] = future.result()


def classify_file(
    rows_path: Path,
    out_path: Path,
    classifier: RiskClassifier,
    top_terms: int = 15,
    workers: int | None = None,
) -> dict[str, Any]:
    """Label a JSONL file into another; returns the distribution and the most frequent evidence terms."""
    rows = read_jsonl(rows_path)
    labels = label_all(rows, classifier, workers)
    labelled = [apply_label(row, label) for row, label in zip(rows, labels, strict=True)]
    terms = Counter(
        e["term"] for label in labels if label for e in label.evidence if SEVERITY_RANK[e["severity"]] >= 3
    )
    write_jsonl(out_path, labelled)
    return {
        **risk_distribution(labelled),
        "curated": sum(1 for r in labelled if r.get("labelled")),
        "top_evidence": dict(terms.most_common(top_terms)),
        "lexicon_version": classifier.lexicon.version,
        "output": str(out_path),
    }


@stage
def classify_risk_task(
    rows_path: Path,
    workdir: Workdir,
    lexicon_path: Path = DEFAULT_LEXICON,
    output_name: str = "classified.jsonl",
) -> dict[str, Any]:
    """Prefect stage: label cleaned rows into <workdir>/data/processed/<output_name>."""
    logger = get_run_logger()
    classifier = RiskClassifier.from_yaml(lexicon_path)
    summary = classify_file(rows_path, workdir.processed / output_name, classifier)
    logger.info(
        "classified %d rows (lexicon %s): %s", summary["total"], summary["lexicon_version"], summary["counts"]
    )
    return summary
