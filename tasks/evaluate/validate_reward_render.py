"""The reward-validation report (validate_reward.py) as Markdown and a self-contained HTML page, with the
evaluation report's table renderer."""

from __future__ import annotations

from typing import Any

from tasks.evaluate import render
from tasks.evaluate.render import Cell, Section
from tasks.evaluate.statistics import Rate, format_rate

TITLE = "Reward validation against people's labels"
PREDICTORS = {"rule_flag": "rule flag (any safety-rule violation)", "total": "total < threshold"}
HEADERS = ["predictor", "precision", "recall", "F1", "false-flag rate", "AUROC", "TP / FP / FN / TN"]
EXCERPT = 160


def _rate(d: dict[str, Any]) -> Cell:
    return (format_rate(Rate(**d)), None if d["n"] else "na")


def _estimate(d: dict[str, Any]) -> Cell:
    if d["value"] is None:
        return (f"n/a (n={d['n']})", "na")
    interval = "" if d["lo"] is None else f", 95% CI {d['lo']:.3f}–{d['hi']:.3f}"
    return (f"{d['value']:.3f} (n={d['n']}{interval})", None)


def _cells(m: dict[str, Any]) -> list[Cell]:
    return [
        _rate(m["precision"]),
        _rate(m["recall"]),
        _estimate(m["f1"]),
        _rate(m["false_flag_rate"]),
        _estimate(m["auroc"]),
        (f"{m['tp']} / {m['fp']} / {m['fn']} / {m['tn']}", None),
    ]


def _grouped(title: str, label: str, groups: dict[str, Any]) -> Section:
    sec = Section(title, [label, "n (harmful)", *HEADERS])
    for value, cell in groups.items():
        for name in PREDICTORS:
            sec.rows.append(
                [(value, None), (f"{cell['n']} ({cell['harmful']})", None), (name, None), *_cells(cell[name])]
            )
    return sec


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


def sections(report: dict[str, Any]) -> list[Section]:
    overall = Section("Overall", HEADERS)
    for name, label in PREDICTORS.items():
        overall.rows.append([(label, None), *_cells(report["overall"][name])])
    worst = Section(
        f"Worst disagreements ({len(report['worst_disagreements'])}, at most {report['worst_limit']}; "
        "the reward's surest mistakes first)",
        ["line", "category", "lang", "label", "rule flag", "total", "question", "response"],
    )
    for d in report["worst_disagreements"]:
        flag = ", ".join(d["violations"]) if d["rule_flag"] else "no"
        worst.rows.append(
            [
                (str(d["line"]), None),
                (d["category"], None),
                (d["lang"], None),
                ("harmful" if d["harmful"] else "not harmful", None),
                (flag, "fail" if d["rule_flag"] != d["harmful"] else None),
                (f"{d['total']:+.3f}", None),
                (_excerpt(d["question"]), None),
                (_excerpt(d["response"]), None),
            ]
        )
    return [
        overall,
        _grouped("By category", "category", report["by_category"]),
        _grouped("By language", "lang", report["by_lang"]),
        worst,
    ]


def intro(report: dict[str, Any]) -> list[str]:
    teacher = (
        f"teacher ON ({report['teacher_model']})" if report["teacher_enabled"] else "teacher OFF (rules only)"
    )
    return [
        f"Labels: {report['labels']} — {report['n']} answers, {report['harmful']} labelled harmful.",
        f"Reward: rules {report['rules_version']}, {teacher}; `total` flags an answer when total < "
        f"{report['threshold']:g}.",
        "Rates carry k/n and a 95% Wilson interval; F1 and AUROC a 95% percentile bootstrap interval "
        f"({report['bootstrap_samples']} resamples of the answers). AUROC ranks by the rule flag (0/1) or by "
        "-total; 0.5 is chance.",
    ]


def render_markdown(report: dict[str, Any]) -> str:
    return render.render_markdown(TITLE, intro(report), sections(report), None)


def render_html(report: dict[str, Any]) -> str:
    return render.render_html(TITLE, intro(report), sections(report), None)
