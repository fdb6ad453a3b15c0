"""Classify-risk stage: label each cleaned row's risk level and safety categories from the lexicon.

The lexicon (data/rules/risk_lexicon.yaml, schema in tasks/risk_lexicon.py) is compiled into one
Aho-Corasick automaton per language plus a few regular expressions for phrases whose words inflect
or take an infix ("wants to die", "剧烈上腹痛"), so a text is scanned once however many terms there are
(tasks/term_matcher.py); tasks/risk_classifier.py turns hits into labels. Labels come from the
question (what the RL prompt will ask); the reasoning and answer may add only weak evidence.
Large files are labelled by this process and spawned worker processes together, in chunks, with the
same result as one process (tasks/parallel_label.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from tasks.core.io import read_jsonl, write_jsonl
from tasks.core.stage import stage
from tasks.core.workdir import Workdir
from tasks.risk.classifier import (
    RiskClassifier,
    apply_label,
    risk_distribution,
)
from tasks.risk.lexicon import (
    DEFAULT_LEXICON,
    SEVERITY_RANK,
)
from tasks.risk.parallel_label import label_all


def classify_file(
    rows_path: Path,
    out_path: Path,
    classifier: RiskClassifier,
    top_terms: int = 15,
    workers: int | None = None,
) -> dict[str, Any]:
    """Label a JSONL file into another; returns the distribution and the most frequent evidence terms."""
    rows = read_jsonl(rows_path)
    labels = label_all(rows, classifier, workers, source=rows_path)
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
