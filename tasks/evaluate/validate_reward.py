"""Check the reward on people's labels: how well its rule flags and its `total` find the answers clinicians
marked harmful.

    medsafe validate-reward --labels labels.csv --no-teacher

A labelled file (JSONL or CSV) holds question, response, harmful (0/1), optional category and lang. The
reward scores every answer (rules, plus the teacher when on); two predictors are compared with the labels:
the rule flag (any safety-rule violation) and `total < threshold`. Each gets precision, recall and the
false-flag rate with Wilson intervals, F1 and AUROC with bootstrap intervals, overall, per category and per
language, and the worst disagreements are listed for people to read. Pure: no Prefect, no torch.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.config import RewardConfig, TeacherConfig
from tasks.core.errors import InputFileError
from tasks.core.io import JsonlLineError, iter_jsonl, write_json, write_text
from tasks.core.text import detect_lang
from tasks.evaluate.statistics import N_BOOT, wilson
from tasks.evaluate.validate_reward_render import render_html, render_markdown
from tasks.reward.engine import RewardEngine
from tasks.reward.rules import SafetyRules
from tasks.reward.teacher import SecretLookup, Teacher

WORST = 20
NO_CATEGORY = "(none)"
_TRUE, _FALSE = ("1", "true"), ("0", "false")


@dataclass(frozen=True)
class LabelledAnswer:
    """One answer a person labelled: harmful or not, with where it came from (file line)."""

    line: int
    question: str
    response: str
    harmful: bool
    category: str
    lang: str


def read_labels(path: Path) -> list[LabelledAnswer]:
    """The labelled answers of a .jsonl or .csv file; InputFileError naming the file and line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"labels file {path} does not exist; give a JSONL or CSV of labelled answers")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise InputFileError(f"{path}: labels must be a .jsonl or .csv file, not {suffix or 'no suffix'!r}")
    records = _csv_records(path) if suffix == ".csv" else _jsonl_records(path)
    rows = [_labelled(path, line, rec) for line, rec in records]
    if not rows:
        raise InputFileError(f"{path}: no labelled answers; add rows with question, response, harmful (0/1)")
    return rows


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        yield from iter_jsonl(path, strict=True)  # type: ignore[misc]
    except JsonlLineError as exc:
        raise InputFileError(
            f"{exc.path}:{exc.line_no}: {exc.reason}; every line must be one JSON object "
            "with question, response and harmful (0/1)"
        ) from None


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("question", "response", "harmful") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputFileError(
                f"{path}:1: the header lacks {missing}; the first line must name the columns "
                "question, response, harmful[, category, lang]"
            )
        start = reader.line_num + 1
        for rec in reader:
            if None in rec:  # more cells than the header names
                raise InputFileError(
                    f"{path}:{start}: more cells than header columns; quote text with commas"
                )
            yield start, rec
            start = reader.line_num + 1


def _labelled(path: Path, line: int, rec: dict[str, Any]) -> LabelledAnswer:
    where = f"{path}:{line}"
    for name in ("question", "response"):
        value = rec.get(name)
        if not isinstance(value, str) or not value.strip():
            got = "missing" if value is None else f"{value!r}"
            raise InputFileError(f"{where}: {name} must be non-empty text, got {got}; fix or remove this row")
    harmful = _harmful(rec.get("harmful"), where)
    category = rec.get("category")
    lang = rec.get("lang")
    for name, value in (("category", category), ("lang", lang)):
        if value is not None and not isinstance(value, str):
            raise InputFileError(f"{where}: {name} must be text, got {value!r}")
    return LabelledAnswer(
        line,
        rec["question"],
        rec["response"],
        harmful,
        (category or "").strip() or NO_CATEGORY,
        (lang or "").strip() or detect_lang(rec["question"], rec["response"]),
    )


def _harmful(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InputFileError(
        f"{where}: harmful must be 0 or 1, got {'nothing' if value in (None, '') else repr(value)}; "
        "label each answer 1 (harmful) or 0 (not harmful)"
    )


# ---- statistics


def _resample_counts(n: int, n_boot: int, seed: int, chunk: int = 250) -> Iterator[np.ndarray]:
    """How often each of n rows is drawn in each bootstrap sample, `chunk` samples (rows) at a time, so memory
    stays at chunk x n whatever the file's size."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + np.arange(b)[:, None] * n
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)


def _interval(samples: np.ndarray) -> tuple[float | None, float | None]:
    ok = samples[~np.isnan(samples)]
    if ok.size == 0:
        return None, None
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return float(lo), float(hi)


def _f1(w: np.ndarray, flags: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """F1 of flags against labels with row weights w (one row of weights per sample); nan when undefined."""
    tp, fp, fn = w @ (flags & labels), w @ (flags & ~labels), w @ (~flags & labels)
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)


def _auroc(w: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC (ties half) with row weights w: the weighted share of (positive, negative) pairs ranked right."""
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    wp, wn = w[..., labels], w[..., ~labels]
    pairs = wp.sum(-1) * wn.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, ((wp @ wins) * wn).sum(-1) / np.where(pairs > 0, pairs, 1), np.nan)


def _estimate(stat: Callable[[np.ndarray], np.ndarray], n: int, n_boot: int, seed: int) -> dict[str, Any]:
    value = float(stat(np.ones(n)))
    samples = [stat(w) for w in _resample_counts(n, n_boot, seed)] if n else []
    lo, hi = _interval(np.concatenate(samples)) if samples else (None, None)
    return {"value": None if np.isnan(value) else value, "lo": lo, "hi": hi, "n": n}


def classification(
    flags: list[bool], labels: list[bool], scores: list[float], *, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """Confusion counts; precision, recall, false-flag rate (Wilson); F1 and AUROC of `scores` (higher =
    more harmful) with percentile bootstrap intervals (resampled rows, seeded)."""
    f, y, s = np.array(flags, bool), np.array(labels, bool), np.array(scores, float)
    tp, fp = int((f & y).sum()), int((f & ~y).sum())
    fn, tn = int((~f & y).sum()), int((~f & ~y).sum())
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": wilson(tp, tp + fp).as_dict(),
        "recall": wilson(tp, tp + fn).as_dict(),
        "false_flag_rate": wilson(fp, fp + tn).as_dict(),
        "f1": _estimate(lambda w: _f1(w, f, y), len(y), n_boot, seed),
        "auroc": _estimate(lambda w: _auroc(w, s, y), len(y), n_boot, seed),
    }


# ---- the reward against the labels


def predictors(scored: list[dict[str, Any]], threshold: float) -> dict[str, tuple[list[bool], list[float]]]:
    """Each predictor's flags and harm scores (higher = more harmful): the rule flag (any safety-rule
    violation), and `total < threshold` scored by -total."""
    return {
        "rule_flag": ([s["violation"] for s in scored], [float(s["violation"]) for s in scored]),
        "total": ([s["total"] < threshold for s in scored], [-s["total"] for s in scored]),
    }


def group_metrics(
    rows: list[LabelledAnswer], scored: list[dict[str, Any]], threshold: float, n_boot: int = N_BOOT
) -> dict[str, Any]:
    """Both predictors against the labels: overall, per category and per language."""

    def cell(idx: list[int]) -> dict[str, Any]:
        labels = [rows[i].harmful for i in idx]
        out: dict[str, Any] = {"n": len(idx), "harmful": sum(labels)}
        for name, (flags, scores) in predictors([scored[i] for i in idx], threshold).items():
            out[name] = classification(flags, labels, scores, n_boot=n_boot)
        return out

    def by(attr: str) -> dict[str, Any]:
        values = sorted({getattr(r, attr) for r in rows})
        return {v: cell([i for i, r in enumerate(rows) if getattr(r, attr) == v]) for v in values}

    return {"overall": cell(list(range(len(rows)))), "by_category": by("category"), "by_lang": by("lang")}


def worst_disagreements(
    rows: list[LabelledAnswer], scored: list[dict[str, Any]], threshold: float, k: int = WORST
) -> list[dict[str, Any]]:
    """The k answers where the reward is most wrong by the labels: a harmful answer with the highest total,
    a harmless one with the lowest, among those where a predictor disagrees with the label."""
    flags = predictors(scored, threshold)
    wrong = [
        i
        for i, r in enumerate(rows)
        if flags["rule_flag"][0][i] != r.harmful or flags["total"][0][i] != r.harmful
    ]
    wrong.sort(
        key=lambda i: (-(scored[i]["total"] if rows[i].harmful else -scored[i]["total"]), rows[i].line)
    )
    return [
        {
            "line": rows[i].line,
            "category": rows[i].category,
            "lang": rows[i].lang,
            "harmful": rows[i].harmful,
            "rule_flag": scored[i]["violation"],
            "violations": sorted({v["category"] for v in scored[i]["violations"]}),
            "total": scored[i]["total"],
            "teacher_score": scored[i]["teacher_score"],
            "question": rows[i].question,
            "response": rows[i].response,
        }
        for i in wrong[:k]
    ]


def validate_reward(
    labels_path: Path,
    out_dir: Path,
    *,
    reward_cfg: RewardConfig,
    teacher_cfg: TeacherConfig,
    cache_path: Path,
    threshold: float = 0.0,
    secret_lookup: SecretLookup | None = None,
    n_boot: int = N_BOOT,
) -> dict[str, Any]:
    """Score the labelled answers with the reward, compare, and write <stem>.json/.md/.html to out_dir;
    returns the report (its "files" name what was written)."""
    labels_path = Path(labels_path)
    rows = read_labels(labels_path)
    rules = SafetyRules.from_yaml()
    teacher = Teacher.from_env(teacher_cfg, Path(cache_path), secret_lookup)
    try:
        items = [{"question": r.question, "response": r.response} for r in rows]
        scored = RewardEngine(rules, reward_cfg, teacher).score_batch(items)
    finally:
        if teacher is not None:
            teacher.close()
    stem = Path(out_dir) / labels_path.stem
    files = {ext: str(stem.with_suffix(f".{ext}")) for ext in ("json", "md", "html")}
    report = {
        "labels": str(labels_path),
        "n": len(rows),
        "harmful": sum(r.harmful for r in rows),
        "threshold": threshold,
        "rules_version": rules.version,
        "teacher_enabled": teacher is not None,
        "teacher_model": teacher_cfg.model if teacher is not None else None,
        "bootstrap_samples": n_boot,
        **group_metrics(rows, scored, threshold, n_boot),
        "worst_limit": WORST,
        "worst_disagreements": worst_disagreements(rows, scored, threshold),
        "files": files,
    }
    write_json(files["json"], report)
    write_text(files["md"], render_markdown(report))
    write_text(files["html"], render_html(report))
    return report
