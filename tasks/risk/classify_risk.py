"""Classify-risk stage: label each cleaned row's risk level and safety categories from the lexicon.

The lexicon (data/rules/risk_lexicon.yaml, schema in tasks/risk_lexicon.py) is compiled into one
Aho-Corasick automaton per language plus a few regular expressions for phrases whose words inflect
or take an infix ("wants to die", "剧烈上腹痛"), so a text is scanned once however many terms there are
(tasks/term_matcher.py); tasks/risk_classifier.py turns hits into labels. Labels come from the
question (what the RL prompt will ask); the reasoning and answer may add only weak evidence.
Large files are labelled by this process and spawned worker processes together, in chunks, with the
same result as one process (tasks/parallel_label.py).

data.risk_labeler (judge | both) adds the risk judge (tasks/risk/judge_labeler.py): `judge` takes its label,
`both` the higher of lexicon and judge. Without a key the lexicon labels, with a loud warning; a judge that
is on and still fails after its retries fails the stage.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from tasks.core.config import DataConfig
from tasks.core.io import read_jsonl, write_jsonl
from tasks.core.stage import stage
from tasks.core.workdir import Workdir
from tasks.risk.classifier import (
    RiskClassifier,
    RiskLabel,
    apply_label,
    risk_distribution,
)
from tasks.risk.judge_labeler import RISK_JUDGE_OFF, RiskJudge, combine
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
    judge: RiskJudge | None = None,
    labeler: str = "lexicon",
) -> dict[str, Any]:
    """Label a JSONL file into another; returns the distribution and the most frequent evidence terms.
    With a judge, labeler `judge` takes the judge's label, `both` the higher (curated rows keep theirs)."""
    rows = read_jsonl(rows_path, keep=True)  # cleanup kept what it wrote (tasks.core.io)
    labels = label_all(rows, classifier, workers, source=rows_path)
    if judge is not None and labeler in ("judge", "both"):
        labels = _with_judge(rows, labels, judge, labeler)
    labelled = [apply_label(row, label) for row, label in zip(rows, labels, strict=True)]
    terms = Counter(
        e["term"] for label in labels if label for e in label.evidence if SEVERITY_RANK[e["severity"]] >= 3
    )
    write_jsonl(out_path, labelled, keep=True)  # the split reads it next
    return {
        **risk_distribution(labelled),
        "curated": sum(1 for r in labelled if r.get("labelled")),
        "top_evidence": dict(terms.most_common(top_terms)),
        "lexicon_version": classifier.lexicon.version,
        "risk_labeler": labeler if judge is not None else "lexicon",
        **({"risk_judge": judge.describe()} if judge is not None else {}),
        "output": str(out_path),
    }


def _with_judge(
    rows: list[dict[str, Any]], labels: list[RiskLabel | None], judge: RiskJudge, labeler: str
) -> list[RiskLabel | None]:
    """The lexicon's labels replaced (judge) or raised (both) by the judge's, for every row that is not
    curated; each distinct question is asked once."""
    todo = [i for i, label in enumerate(labels) if label is not None]
    judged = judge.label([str(rows[i].get("question") or "") for i in todo])
    out = list(labels)
    for i, verdict in zip(todo, judged, strict=True):
        lexicon = labels[i]
        out[i] = verdict if labeler == "judge" or lexicon is None else combine(lexicon, verdict)
    return out


@stage
def classify_risk_task(
    rows_path: Path,
    workdir: Workdir,
    lexicon_path: Path = DEFAULT_LEXICON,
    output_name: str = "classified.jsonl",
    data_cfg: DataConfig | None = None,
    judge_available: bool = False,
) -> dict[str, Any]:
    """Prefect stage: label cleaned rows into <workdir>/data/processed/<output_name>; data_cfg.risk_labeler
    judge|both adds the risk judge (cache: <workdir>/.medsafe/risk_judge_cache.sqlite). judge_available
    (whether its key is set) is in the cache key: adding a key relabels instead of reusing lexicon labels.
    """
    logger = get_run_logger()
    classifier = RiskClassifier.from_yaml(lexicon_path)
    labeler = data_cfg.risk_labeler if data_cfg is not None else "lexicon"
    judge = None
    if data_cfg is not None and labeler != "lexicon":
        judge = RiskJudge.from_config(data_cfg.risk_judge, workdir.state / "risk_judge_cache.sqlite", labeler)
        if judge is None:
            logger.warning(
                "%s: data.risk_labeler=%s but %s is not set: labelling with the LEXICON ONLY",
                RISK_JUDGE_OFF,
                labeler,
                data_cfg.risk_judge.api_key_env,
            )
    try:
        summary = classify_file(
            rows_path, workdir.processed / output_name, classifier, judge=judge, labeler=labeler
        )
    finally:
        if judge is not None:
            judge.close()
    logger.info(
        "classified %d rows (lexicon %s): %s", summary["total"], summary["lexicon_version"], summary["counts"]
    )
    if "risk_judge" in summary:
        logger.info("risk labeller %s: %s", summary["risk_labeler"], summary["risk_judge"])
    return summary
