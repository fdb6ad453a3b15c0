"""The data-quality report: summary.json, the risk-distribution chart, DATA_CARD.md and Prefect artifacts.

Everything is computed from the files the data stages wrote (splits, RL prompts, quarantine, the
sampling report and the gate result), so the report describes what is on disk, not what a stage
meant to write.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.core.config import DataConfig, SamplingConfig
from tasks.core.io import read_jsonl, write_json, write_text
from tasks.core.records import RISK_LEVELS
from tasks.core.stage import stage
from tasks.core.workdir import Workdir
from tasks.prepare.sample_rl import SamplingReport, summarize
from validation.data_card import render_data_card
from validation.html_report import render_report_html
from validation.results import GateResult
from validation.tables import PROCESSED_TABLES

log = logging.getLogger(__name__)


def _read(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path, keep=True) if path.is_file() else []  # the gate read these same files


def quarantine_counts(quarantine_dir: Path) -> dict[str, Any]:
    """Quarantined rows per stage and reason (one file per stage)."""
    by_stage: dict[str, dict[str, int]] = {}
    for path in sorted(quarantine_dir.glob("*.jsonl")):
        by_stage[path.stem] = dict(Counter(str(r.get("reason", "unknown")) for r in read_jsonl(path)))
    by_reason: Counter[str] = Counter()
    for reasons in by_stage.values():
        by_reason.update(reasons)
    return {
        "total": sum(by_reason.values()),
        "by_reason": dict(by_reason.most_common()),
        "by_stage": by_stage,
    }


def table_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    risk = Counter(r.get("risk_level") for r in rows)
    return {
        "rows": len(rows),
        "risk": {lvl: risk.get(lvl, 0) for lvl in RISK_LEVELS},
        "lang": dict(Counter(r.get("lang") for r in rows)),
        "sources": dict(Counter(r.get("source") for r in rows)),
    }


def build_summary(workdir: Workdir, data_cfg: DataConfig, sampling_cfg: SamplingConfig) -> dict[str, Any]:
    """Counts per stage and split, quarantine reasons, risk distribution, RL mix and the gate verdict."""
    splits = {name: table_stats(_read(workdir.processed / f"{name}.jsonl")) for name in PROCESSED_TABLES}
    sampling_path = workdir.rl / "sampling_report.json"
    sampling = json.loads(sampling_path.read_text(encoding="utf-8")) if sampling_path.is_file() else {}
    prompts = _read(workdir.training_prompts)
    rl = summarize(
        SamplingReport(prompts, sampling.get("notes", []), sampling.get("shortfall", {})), sampling_cfg
    )
    quarantine = quarantine_counts(workdir.quarantine)
    gate_path = workdir.gate_result
    gate = GateResult.read(gate_path) if gate_path.is_file() else None
    return {
        "stages": {
            "quarantined": {stage: sum(r.values()) for stage, r in quarantine["by_stage"].items()},
            "processed": {name: s["rows"] for name, s in splits.items()},
            "rl_prompts": len(prompts),
        },
        "splits": splits,
        "quarantine": quarantine,
        "risk_distribution": {
            "processed": {n: s["risk"] for n, s in splits.items()},
            "rl_prompts": rl["risk_distribution"],
            "rl_prompts_by_origin": {
                o: table_stats([p for p in prompts if p["origin"] == o])["risk"] for o in rl["origins"]
            },
        },
        "critical_high_share": rl["critical_high_share"],
        "red_team_copies": rl["red_team_copies"],
        "rl_prompts": {k: rl[k] for k in ("total", "target_size", "origins", "notes", "shortfall")},
        "gate_passed": gate.passed if gate else None,
        "failed_expectations": [f.describe() for f in gate.failed] if gate else [],
        "gate": {"suites": gate.suites, "data_docs_index": gate.data_docs_index} if gate else None,
        "config": {
            "data": data_cfg.model_dump(mode="json"),
            "sampling": sampling_cfg.model_dump(mode="json"),
        },
    }


def plot_risk_distribution(summary: dict[str, Any], path: Path) -> None:
    """Two panels: risk levels per processed table, and RL prompts per risk level."""
    tables = summary["risk_distribution"]["processed"]
    # the Agg canvas directly, not pyplot: no global figure state, safe in worker threads
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    width = 0.8 / max(len(tables), 1)
    for i, (name, risk) in enumerate(tables.items()):
        xs = [j + i * width for j in range(len(RISK_LEVELS))]
        left.bar(xs, [risk[lvl] for lvl in RISK_LEVELS], width=width, label=name)
    left.set_xticks([j + 0.4 - width / 2 for j in range(len(RISK_LEVELS))], RISK_LEVELS)
    left.set(title="Processed rows by risk level", ylabel="rows")
    left.legend(fontsize=8)
    bottom = [0] * len(RISK_LEVELS)
    for origin, risk in summary["risk_distribution"]["rl_prompts_by_origin"].items():
        heights = [risk[lvl] for lvl in RISK_LEVELS]
        right.bar(RISK_LEVELS, heights, bottom=bottom, label=origin)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    right.set(
        title=f"RL prompts by origin (critical+high {summary['critical_high_share']:.1%})", ylabel="prompts"
    )
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def build_data_report(workdir: Workdir, data_cfg: DataConfig, sampling_cfg: SamplingConfig) -> dict[str, Any]:
    """Write summary.json, risk_distribution.png and data/DATA_CARD.md; return the summary with their
    paths."""
    out = workdir.data_quality_reports
    summary = build_summary(workdir, data_cfg, sampling_cfg)
    summary["outputs"] = {
        "summary": str(out / "summary.json"),
        "chart": str(out / "risk_distribution.png"),
        "data_card": str(workdir.data_card),
        "report_html": str(out / "report.html"),
    }
    plot_risk_distribution(summary, out / "risk_distribution.png")
    write_json(out / "summary.json", summary)
    write_text(
        out / "report.html", render_report_html(summary, out / "risk_distribution.png", workdir.data_docs)
    )
    write_text(workdir.data_card, render_data_card(summary, workdir.root))
    return summary


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def risk_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the risk-distribution table artifact: one per processed table plus the RL prompts."""
    dist = summary["risk_distribution"]
    rows = [{"table": name, **risk, "rows": sum(risk.values())} for name, risk in dist["processed"].items()]
    return rows + [{"table": "rl_prompts", **dist["rl_prompts"], "rows": summary["stages"]["rl_prompts"]}]


def summary_markdown(summary: dict[str, Any]) -> str:
    verdict = {True: "passed", False: "FAILED", None: "not run"}[summary["gate_passed"]]
    copies = summary["red_team_copies"]
    lines = [
        f"# Data quality: gate {verdict}",
        f"- processed rows: {counts_text(summary['stages']['processed'])}",
        f"- quarantined: {summary['quarantine']['total']} "
        f"({counts_text(summary['quarantine']['by_reason'])})",
        f"- RL prompts: {summary['stages']['rl_prompts']} ({counts_text(summary['rl_prompts']['origins'])}), "
        f"critical+high {summary['critical_high_share']:.1%}",
        f"- safety red-team prompts: {copies['prompts']}, copies seen "
        f"{copies['copies_seen']} (expected {copies['expected_copies']})",
    ]
    lines += [f"- failed: {f}" for f in summary["failed_expectations"]]
    lines += [f"- note: {n}" for n in summary["rl_prompts"]["notes"]]
    if summary.get("outputs"):
        lines.append(f"- report (works offline): {summary['outputs']['report_html']}")
    if summary["gate"] and summary["gate"]["data_docs_index"]:
        lines.append(f"- Data Docs: {summary['gate']['data_docs_index']}")
    return "\n".join(lines)


def publish_artifacts(summary: dict[str, Any]) -> None:
    """Prefect artifacts for the UI; call from inside a task or flow run."""
    create_markdown_artifact(
        summary_markdown(summary), key="data-quality-summary", description="Data quality summary"
    )
    create_table_artifact(
        risk_table(summary), key="data-quality-risk-distribution", description="Rows per risk level"
    )


@stage
def data_report_task(
    tables: dict[str, Path],
    sampling_report: Path,
    quarantine_dir: Path,
    gate_result: Path,
    data_cfg: DataConfig,
    sampling_cfg: SamplingConfig,
    workdir: Workdir,
) -> dict[str, Any]:
    """Write the data-quality report and DATA_CARD.md, and publish them as Prefect artifacts.

    The parameters name the files the report reads (validation.tables.table_paths, the sampling report,
    the quarantine folder, the gate result): their content is the cache key."""
    summary = build_data_report(workdir, data_cfg, sampling_cfg)
    publish_artifacts(summary)
    get_run_logger().info("data-quality report: %s", summary["outputs"])
    return {
        "gate_passed": summary["gate_passed"],
        "critical_high_share": summary["critical_high_share"],
    } | summary["outputs"]
