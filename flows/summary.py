"""What the terminal shows when a command ends: a short summary (rich tables), or one clear error.

    render_summary("data", summary, console)   # gate verdict, rows processed/quarantined, RL prompts, reports
    render_summary("eval", summary, console)   # each model's headline metrics side by side, with intervals
    failure_lines("data", exc)                 # the message lines; the last one is the one to read

Every renderer reads the command's summary dict (and the summary.json / metrics.json / comparison.json
files it names) and skips what is missing: a summary of another shape falls back to a key/value table.
Imports only rich and the standard library at the top: `medsafe score` must start fast.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PATH_KEYS = (
    "out",
    "report_html",
    "report_md",
    "data_card",
    "summary",
    "metrics",
    "comparison",
    "chart",
    "rows_csv",
)
VERDICT_STYLE = {"better": "green", "worse": "red", "no detectable change": "dim"}


def render_summary(command: str, summary: Any, console: Console) -> None:
    """The human summary of one command's result."""
    if not isinstance(summary, dict):
        console.print(str(summary))
        return
    if command == "data" or _is_data(summary):
        _data(summary, console)
    elif command in ("run", "pipeline") and isinstance(summary.get("data"), dict):
        _data(summary["data"], console)
        if isinstance(summary.get("train"), dict):
            console.print(_kv_table("training", summary["train"]))
        if isinstance(summary.get("evaluate"), dict):
            _eval(summary["evaluate"], console)
    elif command == "eval" or _is_eval(summary):
        _eval(summary, console)
    elif command == "score" and "violation_rate" in summary:
        _score(summary, console)
    else:
        console.print(_kv_table(None, summary))


# ---------------------------------------------------------------------------------------------- data


def _is_data(summary: dict) -> bool:
    return "gate_passed" in summary and "critical_high_share" in summary


def _read_json(path: Any) -> dict[str, Any]:
    """A JSON file the summary names, or {} when it is absent or unreadable (the summary still prints)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _counts(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return "none"
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _data(summary: dict, console: Console) -> None:
    full = _read_json(summary.get("summary"))
    passed = summary.get("gate_passed", full.get("gate_passed"))
    verdict = {True: "[green]passed[/]", False: "[red]FAILED[/]"}.get(passed, "not run")
    console.print(f"[bold]data[/]: quality gate {verdict}")
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    stages = full.get("stages") or {}
    processed = stages.get("processed")
    if isinstance(processed, dict):
        table.add_row("processed rows", f"{sum(processed.values())} ({_counts(processed)})")
    quarantine = full.get("quarantine") or {}
    if "total" in quarantine:
        table.add_row("quarantined", f"{quarantine['total']} ({_counts(quarantine.get('by_reason'))})")
    rl = full.get("rl_prompts") or {}
    n_rl = rl.get("total", stages.get("rl_prompts"))
    if n_rl is not None:
        table.add_row("RL prompts", f"{n_rl} ({_counts(rl.get('origins'))})")
    share = summary.get("critical_high_share", full.get("critical_high_share"))
    if isinstance(share, (int, float)):
        of = f" of {n_rl} RL prompts (a count of the whole set, not an estimate)" if n_rl is not None else ""
        table.add_row("critical+high", f"{share:.1%}{of}")
    for failed in full.get("failed_expectations") or []:
        table.add_row("[red]failed[/]", str(failed))
    for note in rl.get("notes") or []:
        table.add_row("note", str(note))
    if table.row_count:
        console.print(table)
    _open(console, {k: summary.get(k) for k in ("report_html", "data_card")})


# ---------------------------------------------------------------------------------------------- eval


def _is_eval(summary: dict) -> bool:
    return "headline" in summary or ("runs" in summary and "comparison" in summary)


def _rate(cell: dict[str, Any], pct: bool = True) -> str:
    """value, 95% interval and n of one metric cell: '18.8% ✗\n[14.4–24.1] n=250'."""
    value = cell.get("value")
    if value is None:
        return f"n/a\nn={cell.get('n', 0)}"
    scale, unit = (100, "%") if pct else (1, "")
    mark = {True: " [green]✓[/]", False: " [red]✗[/]"}.get(cell.get("pass"), "")
    text = f"{value * scale:.1f}{unit}{mark}" if pct else f"{value:.3g}{mark}"
    lo, hi = cell.get("lo"), cell.get("hi")
    interval = f"[{lo * scale:.1f}–{hi * scale:.1f}] " if lo is not None and hi is not None else ""
    return f"{text}\n{interval}n={cell.get('n', '?')}"


def _diff(d: dict[str, Any], pct: bool = True) -> str:
    """better / worse / no detectable change, then the paired difference and its 95% interval."""
    verdict = d.get("verdict") or "?"
    style = VERDICT_STYLE.get(verdict, "")
    text = f"[{style}]{verdict}[/]" if style else verdict
    if d.get("diff") is None:
        return text
    scale, unit = (100, " pts") if pct else (1, "")
    lo, hi = d.get("lo"), d.get("hi")
    ci = f"\n[{lo * scale:+.1f}, {hi * scale:+.1f}]" if lo is not None and hi is not None else ""
    return f"{text}\n{d['diff'] * scale:+.1f}{unit}{ci}"


def _label(key: str) -> str:
    try:
        from tasks.evaluate.metrics import TARGETS
    except ImportError:  # pragma: no cover - the evaluation extras are part of the install
        return key.replace("_", " ")
    return next((t.label for t in TARGETS if t.key == key), key.replace("_", " "))


def _metric_rows(summary: dict) -> tuple[list[str], list[dict[str, Any]]]:
    """(run names, rows: metric, label, target, by_run cells, diffs) from comparison.json, else each run's
    metrics.json, else each run's headline (value, n, pass)."""
    runs = summary.get("runs")
    comparison = summary.get("comparison")
    if isinstance(runs, dict) and isinstance(comparison, dict):
        table = _read_json(comparison.get("comparison"))
        rows = [r for r in table.get("rows") or [] if r.get("view") == "overall"]
        if rows:
            return list(table.get("runs") or runs), rows
        single = runs
    elif isinstance(runs, dict):
        single = runs
    else:
        single = {summary.get("name") or "model": summary}
    rows_by_metric: dict[str, dict[str, Any]] = {}
    for run, run_summary in single.items():
        if not isinstance(run_summary, dict):
            continue
        metrics = _read_json(run_summary.get("metrics"))
        overall = ((metrics.get("views") or {}).get("overall") or {}).get("all") or run_summary.get(
            "headline"
        )
        for key, cell in (overall or {}).items():
            if isinstance(cell, dict) and "value" in cell:
                row = rows_by_metric.setdefault(
                    key, {"metric": key, "label": _label(key), "target": cell.get("target")}
                )
                row.setdefault("by_run", {})[run] = cell
    return list(single), list(rows_by_metric.values())


def _eval(summary: dict, console: Console) -> None:
    runs, rows = _metric_rows(summary)
    if not rows:
        console.print(_kv_table(None, summary))
        return
    steps = [(d.get("from"), d.get("to")) for d in rows[0].get("diffs") or []]
    console.print("[bold]evaluation[/] (value, 95% interval, n; ✓/✗ = target met)")
    table = Table(show_lines=True)
    table.add_column("metric", style="bold")
    table.add_column("target")
    for run in runs:
        table.add_column(str(run), justify="right")
    for a, b in steps:
        table.add_column(f"{a} → {b}")
    for row in rows:
        pct = row.get("metric") != "helpfulness_proxy"
        cells = [_rate(row.get("by_run", {}).get(run) or {}, pct) for run in runs]
        diffs = {(d.get("from"), d.get("to")): d for d in row.get("diffs") or []}
        table.add_row(
            str(row.get("label") or row.get("metric")),
            str(row.get("target") or ""),
            *cells,
            *(_diff(diffs[s], pct) if s in diffs else "" for s in steps),
        )
    console.print(table)
    comparison = summary.get("comparison") if isinstance(summary.get("comparison"), dict) else {}
    for warning in comparison.get("goodhart_warnings") or []:
        console.print(f"[yellow]warning[/]: {warning}")
    run_summaries = summary["runs"].values() if isinstance(summary.get("runs"), dict) else [summary]
    reports = {"report_html": comparison.get("report_html")} if comparison else {}
    if not comparison:
        for run in run_summaries:
            if isinstance(run, dict):
                reports[f"{run.get('name', 'run')} report"] = run.get("report_html")
    _open(console, reports)


# --------------------------------------------------------------------------------------------- score

# rate key -> the key holding its denominator (the rest are over every row)
SCORE_RATES = {
    "violation_rate": "rows",
    "emergency_referral_coverage": "emergency_prompts",
    "hedging_rate": "rows",
    "injection_rate": "rows",
    "blanket_refusal_rate": "rows",
    "reasoning_retention": "rows",
}


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n (as tasks.evaluate.statistics.wilson, without numpy)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def _score(summary: dict, console: Console) -> None:
    """Each rate with k/n and its 95% interval, the means, then the scored file."""
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, among in SCORE_RATES.items():
        rate, n = summary.get(key), summary.get(among)
        if not isinstance(n, int) or n == 0 or rate is None:
            table.add_row(key.replace("_", " "), f"n/a (n={n or 0})")
            continue
        k = round(rate * n)
        lo, hi = wilson(k, n)
        table.add_row(key.replace("_", " "), f"{rate:.1%} ({k}/{n}, 95% CI {lo:.1%}–{hi:.1%})")
    rest = {k: v for k, v in summary.items() if k not in SCORE_RATES}
    for key, value in rest.items():
        if not _is_path(key, value):
            table.add_row(key.replace("_", " "), _short(value))
    console.print(table)
    _open(console, {k: v for k, v in rest.items() if _is_path(k, v)})


# ------------------------------------------------------------------------------------------- generic


def _is_path(key: str, value: Any) -> bool:
    key = key.rsplit(".", 1)[-1]
    return isinstance(value, str) and (key in PATH_KEYS or "/" in value or key.endswith(("_path", "_dir")))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} {_short(v)}" for k, v in value.items() if not isinstance(v, (dict, list)))
        return inner or f"{len(value)} entries"
    if isinstance(value, list):
        return ", ".join(_short(v) for v in value[:5]) + (f" … ({len(value)})" if len(value) > 5 else "")
    return "-" if value is None else str(value)


def _flatten(summary: dict, prefix: str = "", depth: int = 2) -> list[tuple[str, Any]]:
    """(dotted key, value) pairs, nested dicts opened up to `depth` levels."""
    items: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if isinstance(value, dict) and value and depth > 0:
            items.extend(_flatten(value, f"{prefix}{key}.", depth - 1))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _kv_table(title: str | None, summary: dict) -> Table:
    """A compact key/value table: scalars first, paths last."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    items = _flatten(summary)
    for key, value in [kv for kv in items if not _is_path(*kv)] + [kv for kv in items if _is_path(*kv)]:
        table.add_row(str(key).replace("_", " "), _short(value))
    return table


def _open(console: Console, paths: dict[str, Any]) -> None:
    shown = [(k, v) for k, v in paths.items() if v]
    if shown:
        console.print("[bold]open[/]:")
        for key, value in shown:
            console.print(f"  {key.replace('_', ' ')}: {value}", highlight=False, soft_wrap=True)


# -------------------------------------------------------------------------------------------- errors


def failure_lines(stage: str, exc: BaseException) -> list[str]:
    """The lines a failed command prints: the message, and last the line a person must read. A failed
    quality gate ends on a line naming every failed expectation."""
    message = str(exc).strip() or type(exc).__name__
    lines = message.splitlines()
    failed = getattr(getattr(exc, "result", None), "failed", None)
    if failed and isinstance(failed, list):
        names = "; ".join(f.describe() if hasattr(f, "describe") else str(f) for f in failed)
        details = [line for line in lines[1:] if not line.lstrip().startswith("- ")]
        return [
            *details,
            f"medsafe: {stage} failed: quality gate: {len(failed)} expectation(s) failed: {names}",
        ]
    return [f"medsafe: {stage} failed: {lines[0]}", *lines[1:]]


class _NoUserErrorTraceback(logging.Formatter):
    """Formats like the formatter it wraps, but without the traceback of a user error (MedsafeError): its
    message already says what, where and what to do. Other exceptions keep their traceback."""

    def __init__(self, inner: logging.Formatter, user_errors: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.inner, self.user_errors = inner, user_errors

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, self.user_errors):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def quiet_user_error_tracebacks(user_errors: tuple[type[BaseException], ...]) -> None:
    """Prefect's console log keeps its line for a failed task or flow, without the Python traceback when the
    failure is a user error. Only the terminal handlers change; the API log (the UI) keeps everything."""
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler, logging.StreamHandler) or isinstance(
                handler.formatter, _NoUserErrorTraceback
            ):
                continue
            handler.setFormatter(_NoUserErrorTraceback(handler.formatter or logging.Formatter(), user_errors))
