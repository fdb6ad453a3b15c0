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
    for name in ("train", "dev", "test", "gold_set", "red_team", "red_team_eval"):
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
    assert set(rows) == {"train", "dev", "test", "gold_set", "red_team", "red_team_eval", "rl_prompts"}
    for row in rows.values():
        assert row["critical"] + row["high"] + row["medium"] + row["low"] == row["rows"]
    assert rows["rl_prompts"]["rows"] == summary["stages"]["rl_prompts"]


@pytest.mark.browser
def test_the_report_page_shows_the_gate_results_with_the_network_off(good_case):
    """Data Docs' index needs CDNs; report.html must show the results table with nothing fetched."""
    from playwright.sync_api import expect

    from tests.support.browser import chromium_page
    from validation.gate import run_quality_gate

    wd = good_case.workdir
    result = run_quality_gate(wd, good_case.gate, good_case.sampling, good_case.data)
    write_json(wd.gate_result, result.to_dict())
    summary = build_data_report(wd, good_case.data, good_case.sampling)
    page_path = wd.data_quality_reports / "report.html"
    assert summary["outputs"]["report_html"] == str(page_path)
    with chromium_page(offline=True) as page:
        page.goto(page_path.as_uri())
        table = page.locator("#gate-results")
        expect(table).to_be_visible()
        assert table.locator("tbody tr").count() == len(result.suites) > 0
        for suite in result.suites:
            expect(table).to_contain_text(suite)
        expect(page.locator("h1")).to_contain_text("passed" if result.passed else "FAILED")
        expect(page.locator("img[alt='risk distribution']")).to_be_visible()
        assert page.blocked_requests == []  # the page asked for nothing outside the file
        link = table.locator("a").first
        page.goto(page_path.parent.joinpath(link.get_attribute("href")).as_uri())
        expect(page.locator("body")).to_contain_text("Expectation")  # the suite's own page is static HTML
