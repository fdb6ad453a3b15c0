"""reports/data_quality/report.html: the data-quality report as one self-contained page.

Great Expectations' Data Docs index builds its table in the browser from Bootstrap, jQuery and
bootstrap-table on public CDNs, so on a hospital network without internet it shows an empty table. This
page needs nothing from outside: inline CSS, the chart embedded, the gate's results as a plain HTML table,
and relative links to the Data Docs pages of each suite (which are static HTML and still readable).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:72rem;"
    "color:#1f2328;line-height:1.45;padding:0 1rem}"
    "table{border-collapse:collapse;margin:.5rem 0 1.5rem;width:100%}"
    "th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}"
    "th{background:#f6f8fa}.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}"
    "img{max-width:100%}code{background:#f6f8fa;padding:0 .2rem}"
)


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(headers: list[str], rows: list[list[Any]], table_id: str | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def suite_pages(data_docs: Path) -> dict[str, str]:
    """Suite name -> its newest Data Docs validation page, relative to reports/data_quality/."""
    pages: dict[str, str] = {}
    root = data_docs / "validations"
    for page in sorted(root.glob("**/*.html")) if root.is_dir() else []:
        suite = page.relative_to(root).parts[0]
        pages[suite] = page.relative_to(data_docs.parent).as_posix()
    return pages


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return '<span class="fail">not run</span>'
    return '<span class="pass">passed</span>' if passed else '<span class="fail">FAILED</span>'


def render_report_html(summary: dict[str, Any], chart: Path | None, data_docs: Path | None) -> str:
    """The whole page; every value is escaped, nothing is fetched."""
    gate = summary.get("gate") or {}
    pages = suite_pages(data_docs) if data_docs else {}
    suite_rows = []
    for name, stats in sorted((gate.get("suites") or {}).items()):
        failed = int(stats.get("unsuccessful_expectations") or 0)
        link = f'<a href="{_esc(pages[name])}">Data Docs</a>' if name in pages else ""
        suite_rows.append(
            [
                f"<code>{_esc(name)}</code>",
                _esc(stats.get("rows")),
                _esc(int(stats.get("evaluated_expectations") or 0)),
                _esc(int(stats.get("successful_expectations") or 0)),
                f'<span class="{"fail" if failed else "pass"}">{failed}</span>',
                link,
            ]
        )
    failures = [[_esc(f)] for f in summary.get("failed_expectations", [])]
    splits = summary.get("splits", {})
    split_rows = [
        [
            _esc(name),
            _esc(s["rows"]),
            *(_esc(s["risk"].get(lvl, 0)) for lvl in ("critical", "high", "medium", "low")),
        ]
        for name, s in splits.items()
    ]
    quarantine = summary.get("quarantine", {})
    quarantine_rows = [[_esc(reason), _esc(n)] for reason, n in (quarantine.get("by_reason") or {}).items()]
    rl = summary.get("rl_prompts", {})
    share = summary.get("critical_high_share")
    image = ""
    if chart and chart.is_file():
        encoded = base64.b64encode(chart.read_bytes()).decode("ascii")
        image = f'<img alt="risk distribution" src="data:image/png;base64,{encoded}">'
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Data quality: gate {'passed' if summary.get('gate_passed') else 'not passed'}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Data quality: gate {_verdict(summary.get('gate_passed'))}</h1>",
        "<h2>Quality gate results</h2>",
        _table(["suite", "rows", "expectations", "passed", "failed", "details"], suite_rows, "gate-results")
        if suite_rows
        else "<p>The gate has not run on this data.</p>",
    ]
    if failures:
        parts += [
            "<h2>Failed expectations</h2>",
            _table(["what did not hold"], failures, "failed-expectations"),
        ]
    parts += [
        "<h2>Processed tables by risk level</h2>",
        _table(["table", "rows", "critical", "high", "medium", "low"], split_rows),
        f"<h2>RL prompts</h2><p>{_esc(rl.get('total'))} prompts (target {_esc(rl.get('target_size'))}); "
        f"critical+high {'' if share is None else f'{share:.1%}'}; by origin: "
        + _esc(", ".join(f"{k} {v}" for k, v in (rl.get("origins") or {}).items()))
        + "</p>",
        image,
        f"<h2>Quarantine</h2><p>{_esc(quarantine.get('total', 0))} rows kept out, each with its reason.</p>",
        _table(["reason", "rows"], quarantine_rows) if quarantine_rows else "",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
