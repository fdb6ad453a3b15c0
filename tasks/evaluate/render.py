"""Evaluation tables rendered for people: sections of (text, status) cells as Markdown and as self-contained
HTML, a per-row CSV, and a chart of the four targets per run. An empty population reads "n/a (n=0)".
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.evaluate.helpfulness import LABEL as HELPFULNESS_LABEL
from tasks.evaluate.metrics import JUDGE_SCORES, TARGETS, TEACHER_DIMS, VIEWS
from tasks.evaluate.statistics import Estimate, Rate, format_estimate, format_rate

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
    "refused",
    "helpfulness_proxy",
    "rule_score",
    "teacher_score",
    "total",
    "judge_harm_score",
    "judge_safety",
    "judge_helpfulness",
    "judge_refusal",
    "judge_unsafe",
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
    """'12.5% (5/40, 95% CI 5.5–26.1%)'; 'n/a (n=0)' over no rows."""
    if cell["value"] is None:
        return f"n/a (n={cell['n']})"
    return format_rate(Rate(cell["k"], cell["n"], cell["value"], cell["lo"], cell["hi"]))


def fmt_mean(cell: dict[str, Any], digits: int = 3) -> str:
    """'0.412 (n=40, 95% CI 0.35–0.47)'; 'n/a (n=0)' when nothing was measured."""
    if cell.get("value") is None:
        return f"n/a (n={cell.get('n', 0)})"
    return (
        f"{cell['value']:.{digits}f} (n={cell['n']}, 95% CI {cell['lo']:.{digits}f}–{cell['hi']:.{digits}f})"
    )


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
    """One table per view (groups x targets and the helpfulness proxy), plus the teacher's and the judge's."""
    sections = []
    for view in VIEWS:
        sec = Section(
            VIEW_TITLES[view],
            [
                view.replace("_", " "),
                "n",
                *(f"{t.label} ({t.text})" for t in TARGETS),
                HELPFULNESS_LABEL,
            ],
        )
        for group, cell in metrics["views"][view].items():
            sec.rows.append(
                [
                    (group, None),
                    (str(cell["n"]), None),
                    *(rate_cell(cell[t.key]) for t in TARGETS),
                    _mean_cell(cell.get("helpfulness_proxy") or {}),
                ]
            )
        sections.append(sec)
    if metrics.get("teacher"):
        sections.append(_teacher_section(metrics))
    if metrics.get("judge_on"):
        sections.append(_judge_section(metrics))
    return sections


def _mean_cell(cell: dict[str, Any]) -> Cell:
    return (fmt_mean(cell), "na" if cell.get("value") is None else None)


def _teacher_section(metrics: dict[str, Any]) -> Section:
    sec = Section(
        "Training teacher scores (mean; overall 0-1, dimensions 0-10; higher is better; NOT independent: "
        "RL optimised it)",
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
    return sec


def _judge_section(metrics: dict[str, Any]) -> Section:
    sec = Section(
        "Independent judge (scores 1-5 with 95% bootstrap intervals; harm: lower is better)",
        ["view", "group", "n judged", "unsafe rate", "refusal rate (benign)", *JUDGE_SCORES],
    )
    for view in VIEWS:
        for group, cell in metrics["views"][view].items():
            j = cell["judge"]
            sec.rows.append(
                [
                    (view, None),
                    (group, None),
                    (str(j["n"]), None),
                    rate_cell(j["unsafe_rate"]),
                    rate_cell(j["refusal_rate"]),
                    *(_mean_cell(j[s]) for s in JUDGE_SCORES),
                ]
            )
    return sec


def comparison_sections(table: dict[str, Any]) -> list[Section]:
    """One table per view: metric rows, a column per run (with its interval), and a column per step
    (base → SFT, SFT → RL) with the paired difference, its interval, McNemar's p and the verdict."""
    runs, steps = table["runs"], table["steps"]
    sections: dict[str, Section] = {}
    for row in table["rows"]:
        sec = sections.setdefault(
            row["view"],
            Section(
                VIEW_TITLES[row["view"]],
                [
                    row["view"].replace("_", " "),
                    "metric",
                    "target",
                    *runs,
                    *(f"{a} → {b} (paired)" for a, b in steps),
                ],
            ),
        )
        cells = [_compared_cell(row["by_run"][r]) for r in runs]
        sec.rows.append(
            [
                (row["group"], None),
                (row["label"], None),
                (row["target"], None),
                *cells,
                *(_diff_cell(d, row["metric"]) for d in row["diffs"]),
            ]
        )
    return list(sections.values())


def _compared_cell(cell: dict[str, Any]) -> Cell:
    return rate_cell(cell) if "k" in cell and "target" in cell else _mean_cell(cell)


def _is_rate(metric: str) -> bool:
    return metric in {t.key for t in TARGETS} or metric.endswith("_rate")


def _diff_cell(diff: dict[str, Any], metric: str) -> Cell:
    if diff["diff"] is None:
        return ("not measured (no paired rows)", "na")
    est = Estimate(diff["diff"], diff["lo"], diff["hi"], diff["n_pairs"])
    if _is_rate(metric):
        text = (
            f"{diff['diff'] * 100:+.1f} pp (n={diff['n_pairs']}, 95% CI {diff['lo'] * 100:+.1f} to "
            f"{diff['hi'] * 100:+.1f} pp"
        )
        text += "" if diff["mcnemar_p"] is None else f"; McNemar p={diff['mcnemar_p']:.3g}"
        text += ")"
    else:
        text = format_estimate(est)
    status_ = {"better": "pass", "worse": "fail"}.get(diff["verdict"])
    return (f"{text}: {diff['verdict']}", status_)


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
        judge = r.get("judge") or {}
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
                r["refused"],
                "" if r["helpfulness_proxy"] is None else round(r["helpfulness_proxy"], 4),
                r["rule_score"],
                "" if r["teacher_score"] is None else r["teacher_score"],
                r["total"],
                *(_blank(judge.get(k)) for k in ("harm_score", "safety", "helpfulness", "refusal", "unsafe")),
                excerpt,
            ]
        )
    return buf.getvalue()


def _blank(value: Any) -> Any:
    return "" if value is None else value


def goodhart_section(agreement: dict[str, Any], warnings: list[str]) -> Section:
    """The Goodhart check: rule flags against the judge's, per run and metric, and the warnings."""
    sec = Section(
        "Goodhart check: rules vs the independent judge",
        ["run", "metric", "n", "agreement", "Cohen's kappa", "both / rules only / judge only / neither"],
    )
    if agreement and "n" in next(iter(agreement.values()), {}):
        agreement = {"": agreement}
    for run, checks in agreement.items():
        for metric, c in checks.items():
            a = c["agreement"]
            sec.rows.append(
                [
                    (run, None),
                    (metric, None),
                    (str(c["n"]), None),
                    (fmt_rate({"value": a["rate"], **a}), "na" if a["rate"] is None else None),
                    ("n/a" if c["kappa"] is None else f"{c['kappa']:.2f}", None),
                    (f"{c['both']} / {c['rule_only']} / {c['judge_only']} / {c['neither']}", None),
                ]
            )
    for warning in warnings:
        sec.rows.append(
            [("WARNING", "fail"), (warning, "fail"), ("", None), ("", None), ("", None), ("", None)]
        )
    return sec
