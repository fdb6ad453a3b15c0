"""The evaluation stages: score a predictions file into its report folder (report.md/.html, metrics.json,
rows.csv, chart), put runs side by side (base → SFT → RL, paired), and publish the tables as Prefect
artifacts.

The rules always grade; the independent judge (tasks/evaluate/judge.py) adds its columns when it is on, and
the report says "judge: off — rules-only metrics" when it is not.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext, TaskRunContext

from tasks.core.config import Profile
from tasks.core.errors import MedsafeError
from tasks.core.io import write_json, write_text
from tasks.core.records import read_predictions
from tasks.core.stage import read_secret_block, stage
from tasks.core.workdir import Workdir
from tasks.evaluate.compare import compare_runs, goodhart_check
from tasks.evaluate.eval_sets import check_held_out
from tasks.evaluate.judge import KINDS, EvalJudge, same_as_teacher
from tasks.evaluate.metrics import compact_rows, evaluate_predictions
from tasks.evaluate.predictions import meta_path
from tasks.evaluate.render import (
    Section,
    comparison_sections,
    goodhart_section,
    headline,
    plot_targets,
    render_html,
    render_markdown,
    rows_csv,
    run_sections,
)
from tasks.evaluate.report_text import comparison_intro, run_intro
from tasks.reward.engine import RewardEngine
from tasks.reward.rules import SafetyRules
from tasks.reward.teacher import Teacher

log = logging.getLogger(__name__)


def build_engine(
    profile: Profile, teacher_on: bool, cache_path: Path, rules_path: Path | None = None
) -> RewardEngine:
    """The reward engine the training used: its rules, plus the teacher when `teacher_on`."""
    teacher_cfg = profile.teacher.model_copy(update={"enabled": "on" if teacher_on else "off"})
    teacher = Teacher.from_env(teacher_cfg, Path(cache_path), read_secret_block)
    return RewardEngine(SafetyRules.from_yaml(rules_path), profile.reward, teacher)


@stage
def evaluate_task(
    predictions_path: Path,
    workdir: Workdir,
    profile: Profile,
    name: str,
    teacher_on: bool,
    rules_path: Path | None = None,
    judge_on: bool = False,
    training_prompts: Path | None = None,
) -> dict[str, Any]:
    """Prefect stage: score predictions (rules, and the independent judge when `judge_on`) and write
    reports/eval/<name>/ (report.md/.html, metrics.json, rows.csv, chart). Prompts that are RL training
    prompts (by id, when `training_prompts` exists) are refused."""
    logger = get_run_logger()
    engine = build_engine(profile, teacher_on, workdir.teacher_cache, rules_path)
    judge = (
        EvalJudge.from_config(profile.eval.judge, workdir.judge_cache, read_secret_block)
        if judge_on
        else None
    )
    try:
        summary = run_evaluation(
            Path(predictions_path),
            workdir.eval_reports / name,
            name,
            engine,
            judge=judge,
            judge_is_teacher=judge is not None and same_as_teacher(profile.eval.judge, profile.teacher),
            training_prompts=training_prompts,
            tiny_profile=profile.model.tiny,
        )
    finally:
        if engine.teacher is not None:
            engine.teacher.close()
        if judge is not None:
            judge.close()
    publish_run_artifacts(name, Path(summary["metrics"]))
    logger.info(
        "eval %s: %d rows, teacher %s, judge %s; %s",
        name,
        summary["rows"],
        "on" if summary["teacher"] else "off",
        "on" if summary["judge"] else "off (rules-only metrics)",
        summary["headline"],
    )
    return summary


@stage
def compare_task(metrics_paths: dict[str, Path], workdir: Workdir, name: str) -> dict[str, Any]:
    """Prefect stage: runs side by side (base, SFT, RL) under reports/eval/<name>/, plus Prefect artifacts."""
    logger = get_run_logger()
    summary = run_comparison(
        {k: Path(v) for k, v in metrics_paths.items()}, workdir.eval_reports / name, name
    )
    publish_comparison_artifacts(name, Path(summary["comparison"]))
    logger.info("eval %s: %s -> %s", name, " vs ".join(summary["runs"]), summary["report_html"])
    return summary


def write_run_report(
    out_dir: Path, name: str, per_row: list[dict[str, Any]], metrics: dict[str, Any]
) -> dict[str, str]:
    """metrics.json, rows.csv, metrics.png, report.md and report.html for one run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out_dir / "metrics.json",
        "rows_csv": out_dir / "rows.csv",
        "chart": out_dir / "metrics.png",
        "report_md": out_dir / "report.md",
        "report_html": out_dir / "report.html",
    }
    write_json(paths["metrics"], metrics)
    write_text(paths["rows_csv"], rows_csv(per_row))
    plot_targets({name: metrics}, paths["chart"])
    sections, intro, title = run_sections(metrics), run_intro(metrics), f"Evaluation: {name}"
    if metrics.get("goodhart"):
        sections.append(goodhart_section(metrics["goodhart"], []))
    write_text(paths["report_md"], render_markdown(title, intro, sections, paths["chart"].name))
    write_text(paths["report_html"], render_html(title, intro, sections, paths["chart"].read_bytes()))
    return {k: str(v) for k, v in paths.items()}


def write_comparison_report(
    out_dir: Path, name: str, table: dict[str, Any], named_metrics: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """comparison.json, metrics.png, report.md and report.html with the runs side by side."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "comparison": out_dir / "comparison.json",
        "chart": out_dir / "metrics.png",
        "report_md": out_dir / "report.md",
        "report_html": out_dir / "report.html",
    }
    write_json(paths["comparison"], table)
    plot_targets(named_metrics, paths["chart"])
    title = f"Evaluation: {' vs '.join(table['runs'])}"
    intro = comparison_intro(table, named_metrics)
    sections = comparison_sections(table)
    goodhart = {n: m["goodhart"] for n, m in named_metrics.items() if m.get("goodhart")}
    if goodhart or table.get("goodhart_warnings"):
        sections.append(goodhart_section(goodhart, table.get("goodhart_warnings") or []))
    write_text(paths["report_md"], render_markdown(title, intro, sections, paths["chart"].name))
    write_text(paths["report_html"], render_html(title, intro, sections, paths["chart"].read_bytes()))
    return {k: str(v) for k, v in paths.items()}


def run_evaluation(
    predictions_path: Path,
    out_dir: Path,
    name: str,
    engine: RewardEngine,
    *,
    judge: EvalJudge | None = None,
    judge_is_teacher: bool = False,
    training_prompts: Path | None = None,
    tiny_profile: bool = False,
) -> dict[str, Any]:
    """Score a predictions file and write the run's report folder; returns a small summary."""
    preds = read_predictions(Path(predictions_path))
    held_out = check_held_out(preds, training_prompts) if training_prompts else None
    verdicts = judge.grade([judge_item(r) for r in preds]) if judge is not None else [None] * len(preds)
    for row, verdict in zip(preds, verdicts, strict=True):
        row["judge"] = (
            verdict.to_dict() if verdict is not None else None
        )  # never a stale verdict from the file
    per_row, metrics = evaluate_predictions(preds, engine)
    sidecar = meta_path(Path(predictions_path))
    generation = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else None
    metrics = {
        "name": name,
        "predictions": str(predictions_path),
        "generation": generation,
        "sets": (generation or {}).get("sets")
        or [{"name": g, "rows": c["n"]} for g, c in metrics["views"]["set"].items()],
        "held_out": held_out or (generation or {}).get("held_out"),
        "tiny_profile": tiny_profile,
        "judge": {**judge.describe(), "same_as_teacher": judge_is_teacher} if judge is not None else None,
        **metrics,
        "rows": compact_rows(per_row),
    }
    if judge is not None:
        metrics["goodhart"] = run_goodhart(per_row)
    paths = write_run_report(Path(out_dir), name, per_row, metrics)
    return {
        "name": name,
        "rows": len(per_row),
        "teacher": metrics["teacher"],
        "judge": judge is not None,
        "headline": headline(metrics),
        **paths,
    }


def judge_item(row: dict[str, Any]) -> dict[str, Any]:
    """What the judge grades: the question, the response, the rubric kind and the reference answer."""
    kind = row.get("kind") if row.get("kind") in KINDS else "patient_question"
    reference = row.get("reference") if isinstance(row.get("reference"), str) else None
    return {"question": row["question"], "response": row["response"], "kind": kind, "reference": reference}


def run_goodhart(per_row: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement of each rule flag with the judge's matching flag, on the same answers."""
    judged = [r for r in per_row if r.get("judge")]
    benign = [r for r in judged if r["benign"]]
    return {
        "safety violation (rules) vs unsafe (judge)": goodhart_check(
            [r["violation"] for r in judged], [r["judge"].get("unsafe") for r in judged]
        ),
        "refusal on benign questions (rules) vs refusal (judge)": goodhart_check(
            [r["refused"] for r in benign], [r["judge"].get("refusal") for r in benign]
        ),
    }


def run_comparison(metrics_paths: dict[str, Path], out_dir: Path, name: str) -> dict[str, Any]:
    """Compare runs' metrics.json files and write the comparison folder; returns a small summary."""
    named = {}
    for run, path in metrics_paths.items():
        if not Path(path).is_file():
            raise MedsafeError(
                f"metrics for run {run!r} not found at {path}; evaluate that run first (`medsafe eval`)"
            )
        named[run] = json.loads(Path(path).read_text(encoding="utf-8"))
    table = compare_runs(named)
    paths = write_comparison_report(Path(out_dir), name, table, named)
    return {
        "name": name,
        "runs": table["runs"],
        "steps": [f"{a}→{b}" for a, b in table["steps"]],
        "verdicts": {
            row["metric"]: {f"{d['from']}→{d['to']}": d["verdict"] for d in row["diffs"]}
            for row in table["rows"]
            if row["view"] == "overall"
        },
        "goodhart_warnings": table["goodhart_warnings"],
        **paths,
    }


def artifact_key(name: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    slug = "".join(c if c.isalnum() and c.isascii() else "-" for c in name.lower())
    return "eval-" + "-".join(p for p in slug.split("-") if p)


def in_run_context() -> bool:
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def publish(key: str, table: list[dict[str, Any]], markdown: str, description: str) -> bool:
    """A table and a markdown artifact under `key`; does nothing outside a Prefect run."""
    if not in_run_context():
        return False
    create_markdown_artifact(markdown=markdown, key=key, description=description)
    create_table_artifact(table=table, key=f"{key}-table", description=description)
    return True


def _flat(sections: list[Section]) -> list[dict[str, Any]]:
    return [
        {"table": s.title, **{h: text for h, (text, _) in zip(s.headers, row, strict=True)}}
        for s in sections
        for row in s.rows
    ]


def publish_run_artifacts(name: str, metrics_path: Path) -> bool:
    """The run's tables as a markdown artifact (key eval-<name>) and its overall targets as a table
    artifact."""
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    sections = run_sections(metrics)
    markdown = render_markdown(f"Evaluation: {name}", run_intro(metrics), sections, None)
    return publish(artifact_key(name), _flat(sections[:1]), markdown, f"Safety targets of run {name}")


def publish_comparison_artifacts(name: str, comparison_path: Path) -> bool:
    """The side-by-side tables as a markdown artifact (key eval-<name>, e.g. eval-sft-vs-rl) and the overall
    table.
    """
    table = json.loads(comparison_path.read_text(encoding="utf-8"))
    sections = comparison_sections(table)
    markdown = render_markdown(f"Evaluation: {' vs '.join(table['runs'])}", [], sections, None)
    return publish(
        artifact_key(name), _flat(sections[:1]), markdown, f"Safety targets: {' vs '.join(table['runs'])}"
    )
