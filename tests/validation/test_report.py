from __future__ import annotations

import json

import pytest

from tasks.core.io import read_jsonl, write_json
from validation.report import build_data_report, risk_table, summary_markdown
from validation.results import FailedExpectation, GateResult

FAILED = FailedExpectation(
    "rl_prompts", "expect_column_mean_to_be_between", "is_critical_high", "0.31", "min_value=0.4"
)


def test_report_writes_summary_chart_and_data_card(good_case):
    wd = good_case.workdir
    write_json(
        wd.gate_result,
        GateResult(passed=False, failed=[FAILED], data_docs_index="/d/index.html").to_dict(),
    )
    summary = build_data_report(wd, good_case.data, good_case.sampling)

    on_disk = json.loads((wd.data_quality_reports / "summary.json").read_text(encoding="utf-8"))
    assert on_disk == summary
    for name in ("train", "dev", "test", "gold_set", "red_team"):
        assert summary["stages"]["processed"][name] == len(read_jsonl(wd.processed / f"{name}.jsonl"))
    prompts = read_jsonl(wd.training_prompts)
    assert summary["stages"]["rl_prompts"] == len(prompts)
    assert summary["quarantine"]["by_reason"] == {"empty_answer": 2, "invalid_json": 1, "near_duplicate": 1}
    assert summary["stages"]["quarantined"] == {"cleanup": 3, "dedupe": 1}
    high = sum(p["risk_level"] in ("critical", "high") for p in prompts)
    assert summary["critical_high_share"] == pytest.approx(high / len(prompts))
    assert sum(summary["risk_distribution"]["rl_prompts"].values()) == len(prompts)
    assert summary["red_team_copies"] == {"prompts": 4, "expected_copies": 3, "copies_seen": [3]}
    assert summary["gate_passed"] is False
    assert summary["failed_expectations"] == [FAILED.describe()]

    png = (wd.data_quality_reports / "risk_distribution.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    card = wd.data_card.read_text(encoding="utf-8")
    for section in (
        "## Sources",
        "## Splits",
        "## Risk distribution",
        "## Quarantine",
        "## Quality gate",
        "## Known limits",
    ):
        assert section in card
    assert "| medsafetybench | 0 | 0 | 0 | 0 | 2 |" in card
    assert "| empty_answer | 2 |" in card
    assert "**FAILED**" in card and FAILED.describe() in card


def test_report_before_any_gate_run(good_case):
    summary = build_data_report(good_case.workdir, good_case.data, good_case.sampling)
    assert summary["gate_passed"] is None and summary["gate"] is None
    assert "not run yet" in good_case.workdir.data_card.read_text(encoding="utf-8")
    assert summary_markdown(summary).startswith("# Data quality: gate not run")


def test_risk_table_rows_add_up(good_case):
    summary = build_data_report(good_case.workdir, good_case.data, good_case.sampling)
    rows = {r["table"]: r for r in risk_table(summary)}
    assert set(rows) == {"train", "dev", "test", "gold_set", "red_team", "rl_prompts"}
    for row in rows.values():
        assert row["critical"] + row["high"] + row["medium"] + row["low"] == row["rows"]
    assert rows["rl_prompts"]["rows"] == summary["stages"]["rl_prompts"]
