"""Evaluation tables rendered for people: sections of (text, status) cells as Markdown and as self-contained
HTML, a per-row CSV, and a chart of the four targets per run. An empty population reads "n/a (n=0)".
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.evaluate.metrics import TARGETS, TEACHER_DIMS, VIEWS

VIEW_TITLES = {
    "overall": "Overall",
    "set": "By set",
    "lang": "By language",
    "risk_level": "By risk level",
    "safety_category": "By safety category",
}


EXCERPT_CHARS = 200


CSV_COLUMNS = (
    "id",
    "set",
    "lang",
    "risk_level",
    "categories",
    "violation",
    "violated_categories",
    "emergency_case",
    "emergency_referral",
    "hedged",
    "has_think",
    "rule_score",
    "teacher_score",
    "total",
    "response_excerpt",
)


Cell = tuple[str, str | None]  # (text, status: "pass" | "fail" | "na" | None)


@dataclass
class Section:
    """One table of a report: a title, column headers and rows of (text, status) cells."""

    title: str
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


def fmt_rate(cell: dict[str, Any]) -> str:
    if cell["value"] is None:
        return f"n/a (n={cell['n']})"
    return f"{cell['value']:.1%} ({cell['k']}/{cell['n']})"


def status(passed: bool | None) -> str:
    return "na" if passed is None else ("pass" if passed else "fail")


def rate_cell(cell: dict[str, Any]) -> Cell:
    verdict = {"pass": "PASS", "fail": "FAIL", "na": "n/a"}[status(cell["pass"])]
    return (
        f"{fmt_rate(cell)} {verdict}" if cell["value"] is not None else fmt_rate(cell),
        status(cell["pass"]),
    )


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The overall value, n and pass/fail of each target: what a log line or a summary shows."""
    overall = metrics["views"]["overall"]["all"]
    return {t.key: {k: overall[t.key][k] for k in ("value", "n", "pass")} for t in TARGETS}


def run_sections(metrics: dict[str, Any]) -> list[Section]:
    """One table per view (groups x targets), plus the judge's means when the teacher was on."""
    sections = []
    for view in VIEWS:
        sec = Section(
            VIEW_TITLES[view], [view.replace("_", " "), "n", *(f"{t.label} ({t.text})" for t in TARGETS)]
        )
        for group, cell in metrics["views"][view].items():
            sec.rows.append(
                [(group, None), (str(cell["n"]), None), *(rate_cell(cell[t.key]) for t in TARGETS)]
            )
        sections.append(sec)
    if metrics.get("teacher"):
        sec = Section(
            "Teacher scores (mean; overall 0-1, dimensions 0-10; higher is better)",
            ["view", "group", "n", *TEACHER_DIMS],
        )
        for view in VIEWS:
            for group, cell in metrics["views"][view].items():
                t = cell["teacher"]
                sec.rows.append(
                    [
                        (view, None),
                        (group, None),
                        (str(t["n"]), None),
                        *(
                            ("n/a" if t[d] is None else f"{t[d]:.3f}", "na" if t[d] is None else None)
                            for d in TEACHER_DIMS
                        ),
                    ]
                )
        sections.append(sec)
    return sections


def comparison_sections(table: dict[str, Any]) -> list[Section]:
    """One table per view: metric rows, a column per run, and the delta candidate - baseline."""
    runs, base, cand = table["runs"], table["baseline"], table["candidate"]
    sections: dict[str, Section] = {}
    for row in table["rows"]:
        sec = sections.setdefault(
            row["view"],
            Section(
                VIEW_TITLES[row["view"]],
                [row["view"].replace("_", " "), "metric", "target", *runs, f"delta ({cand} - {base})"],
            ),
        )
        cells = [_compared_cell(row["by_run"][r], row["metric"]) for r in runs]
        sec.rows.append(
            [(row["group"], None), (row["label"], None), (row["target"], None), *cells, _delta_cell(row)]
        )
    return list(sections.values())


def _compared_cell(cell: dict[str, Any], metric: str) -> Cell:
    if metric != "teacher_overall":
        return rate_cell(cell)
    return ("n/a (n=0)", "na") if cell["value"] is None else (f"{cell['value']:.3f} (n={cell['n']})", None)


def _delta_cell(row: dict[str, Any]) -> Cell:
    if row["delta"] is None:
        return ("n/a", "na")
    text = f"{row['delta']:+.3f}" if row["metric"] == "teacher_overall" else f"{row['delta'] * 100:+.1f} pp"
    word = {True: " (better)", False: " (worse)", None: ""}[row["better"]]
    return (text + word, {True: "pass", False: "fail", None: None}[row["better"]])


def render_markdown(title: str, intro: list[str], sections: list[Section], chart: str | None) -> str:
    lines = [f"# {title}", "", *intro, ""]
    if chart:
        lines += [f"![targets per run]({chart})", ""]
    for sec in sections:
        lines += [
            f"## {sec.title}",
            "",
            "| " + " | ".join(sec.headers) + " |",
            "|" + "---|" * len(sec.headers),
        ]
        lines += ["| " + " | ".join(text.replace("|", "\\|") for text, _ in row) + " |" for row in sec.rows]
        lines.append("")
    return "\n".join(lines)


_CSS = (
    'body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;'
    "margin:2rem;color:#222;max-width:1200px}\n"
    "table{border-collapse:collapse;margin:0.5rem 0 1.5rem}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}\n"
    "th{background:#f0f0f0}td.pass{background:#d8f3dc;color:#1b4332}td.fail{background:#ffd6d6;color:#7a0000}\n"
    "td.na{background:#f4f4f4;color:#777}img{max-width:100%}p.note{color:#555}"
)


def render_html(title: str, intro: list[str], sections: list[Section], chart_png: bytes | None) -> str:
    """A self-contained page (inline CSS, chart embedded as a data URI)."""
    esc = html.escape
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>',
        f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>",
        *(f'<p class="note">{esc(p)}</p>' for p in intro if p),
    ]
    if chart_png:
        parts.append(
            f'<img alt="targets per run" src="data:image/png;base64,{base64.b64encode(chart_png).decode()}">'
        )
    for sec in sections:
        parts.append(
            f"<h2>{esc(sec.title)}</h2><table><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in sec.headers)
            + "</tr></thead><tbody>"
        )
        for row in sec.rows:
            parts.append(
                "<tr>"
                + "".join(f'<td class="{s}">{esc(t)}</td>' if s else f"<td>{esc(t)}</td>" for t, s in row)
                + "</tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def plot_targets(named_metrics: dict[str, dict[str, Any]], png_path: Path) -> Path:
    """The four targets' overall values per run as bars, with the target as a dashed line; n/a runs are
    labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(named_metrics)
    fig, axes = plt.subplots(1, len(TARGETS), figsize=(3.2 * len(TARGETS), 3.4), sharey=True)
    for ax, target in zip(axes, TARGETS, strict=True):
        cells = [named_metrics[r]["views"]["overall"]["all"][target.key] for r in runs]
        values = [0.0 if c["value"] is None else c["value"] * 100 for c in cells]
        colors = ["#bbbbbb" if c["pass"] is None else ("#2d6a4f" if c["pass"] else "#c1121f") for c in cells]
        ax.bar(runs, values, color=colors)
        ax.axhline(target.threshold * 100, color="#333", linestyle="--", linewidth=1)
        for x, c in enumerate(cells):
            ax.text(
                x,
                (0 if c["value"] is None else c["value"] * 100) + 2,
                "n/a" if c["value"] is None else f"n={c['n']}",
                ha="center",
                fontsize=8,
            )
        ax.set_title(f"{target.label}\ntarget {target.text}", fontsize=9)
        ax.set_ylim(0, 110)
    axes[0].set_ylabel("% of responses")
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


def rows_csv(per_row: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in per_row:
        excerpt = " ".join(r["response"].split())[:EXCERPT_CHARS]
        writer.writerow(
            [
                r["id"],
                r["set"],
                r["lang"],
                r["risk_level"],
                ";".join(r["safety_categories"]),
                r["violation"],
                ";".join(r["violated_categories"]),
                r["emergency_case"],
                r["emergency_referral"],
                r["hedged"],
                r["has_think"],
                r["rule_score"],
                "" if r["teacher_score"] is None else r["teacher_score"],
                r["total"],
                excerpt,
            ]
        )
    return buf.getvalue()


def run_intro(metrics: dict[str, Any]) -> list[str]:
    sets = ", ".join(f"{g} {c['n']}" for g, c in metrics["views"]["set"].items())
    teacher = "on (judge scores included)" if metrics["teacher"] else "off (rules only; no judge scores)"
    intro = [
        f"{metrics['n']} predictions ({sets}); teacher {teacher}.",
        "Rates show (responses flagged / responses in the "
        "population); a rate over no rows is n/a, not 0% or 100%. "
        "Emergency referral coverage counts only prompts labelled 'emergency'.",
    ]
    if gen := metrics.get("generation"):
        intro.append(
            f"Model {gen['model_path']} (base {gen['base_path']}); decoding {json.dumps(gen['decoding'])}."
        )
    return intro
