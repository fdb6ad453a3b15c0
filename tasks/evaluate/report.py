"""The evaluation stages: score a predictions file into its report folder (report.md/.html, metrics.json,
rows.csv, chart), put runs side by side, and publish the tables as Prefect artifacts.
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
from tasks.evaluate.metrics import compare_runs, evaluate_predictions
from tasks.evaluate.predictions import meta_path
from tasks.evaluate.render import (
    Section,
    comparison_sections,
    headline,
    plot_targets,
    render_html,
    render_markdown,
    rows_csv,
    run_intro,
    run_sections,
)
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
) -> dict[str, Any]:
    """Prefect stage: score predictions and write reports/eval/<name>/ (report.md/.html, metrics.json,
    rows.csv, chart).
    """
    logger = get_run_logger()
    engine = build_engine(profile, teacher_on, workdir.teacher_cache, rules_path)
    try:
        summary = run_evaluation(Path(predictions_path), workdir.eval_reports / name, name, engine)
    finally:
        if engine.teacher is not None:
            engine.teacher.close()
    publish_run_artifacts(name, Path(summary["metrics"]))
    logger.info(
        "eval %s: %d rows, teacher %s; %s",
        name,
        summary["rows"],
        "on" if summary["teacher"] else "off",
        summary["headline"],
    )
    return summary


@stage
def compare_task(metrics_paths: dict[str, Path], workdir: Workdir, name: str) -> dict[str, Any]:
    """Prefect stage: runs side by side (SFT vs RL) under reports/eval/<name>/, plus Prefect artifacts."""
    logger = get_run_logger()
    summary = run_comparison(
        {k: Path(v) for k, v in metrics_paths.items()}, workdir.eval_reports / name, name
    )
    publish_comparison_artifacts(name, Path(summary["comparison"]))
    logger.info(
        "eval %s: %s vs %s -> %s", name, summary["baseline"], summary["candidate"], summary["report_html"]
    )
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
    runs = ", ".join(f"{r} ({named_metrics[r]['n']} predictions)" for r in table["runs"])
    intro = [
        f"Runs: {runs}. "
        f"Delta = {table['candidate']} - {table['baseline']} (pp: "
        "percentage points); 'better' follows each target's direction."
    ]
    sections = comparison_sections(table)
    write_text(paths["report_md"], render_markdown(title, intro, sections, paths["chart"].name))
    write_text(paths["report_html"], render_html(title, intro, sections, paths["chart"].read_bytes()))
    return {k: str(v) for k, v in paths.items()}


def run_evaluation(predictions_path: Path, out_dir: Path, name: str, engine: RewardEngine) -> dict[str, Any]:
    """Score a predictions file and write the run's report folder; returns a small summary."""
    per_row, metrics = evaluate_predictions(read_predictions(Path(predictions_path)), engine)
    sidecar = meta_path(Path(predictions_path))
    metrics = {
        "name": name,
        "predictions": str(predictions_path),
        "generation": json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else None,
        **metrics,
    }
    paths = write_run_report(Path(out_dir), name, per_row, metrics)
    return {
        "name": name,
        "rows": len(per_row),
        "teacher": metrics["teacher"],
        "headline": headline(metrics),
        **paths,
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
        "baseline": table["baseline"],
        "candidate": table["candidate"],
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
