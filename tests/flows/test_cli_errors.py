"""Every user error is one clear message (what, where, what to do) and a non-zero exit, never a traceback;
every command's result is a short summary, or JSON only with --json (before or after the command name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from flows.cli import app
from flows.summary import failure_lines, render_summary
from tasks.core.config import RewardConfig
from tasks.core.io import write_jsonl

REPO = Path(__file__).resolve().parents[2]
PAIRS = [
    json.loads(line)
    for line in (REPO / "tests/fixtures/reward_pairs.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
runner = CliRunner()


def _score(tmp_path: Path, preds: Path, *extra: str) -> object:
    args = ["score", "--predictions", str(preds), "--out", str(tmp_path / "out.jsonl"), "--no-teacher"]
    return runner.invoke(app, [*args, "--workdir", str(tmp_path), *extra])


def _clear_failure(result, *expected: str) -> str:  # noqa: ANN001
    """The failure's last line, after checking: exit 1, no traceback, each expected text present."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    last = result.output.strip().splitlines()[-1]
    for text in expected:
        assert text in result.output, (text, result.output)
    return last


def test_profiles_show_unknown_names_the_choices():
    last = _clear_failure(runner.invoke(app, ["profiles", "--show", "nope"]), "unknown profile 'nope'")
    assert last.startswith("medsafe: profiles failed:") and "tiny" in last


def test_score_on_a_malformed_line_names_the_file_the_line_and_the_fix(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "a", "question": "q", "response": "r"}\n{"id": "b", "question": \n', "utf-8")
    last = _clear_failure(_score(tmp_path, preds), f"{preds}:2:", "invalid JSON")
    assert "every line must be one JSON object" in last
    write_jsonl(preds, [{"id": "a", "question": "q", "response": "r"}, {"id": "b", "question": "q"}])
    last = _clear_failure(_score(tmp_path, preds), f"{preds}:2:", "'response'", "fix or remove this line")
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written


def test_score_with_an_unknown_profile_is_one_line(tmp_path):
    preds = tmp_path / "preds.jsonl"
    write_jsonl(preds, [{"id": "a", "question": "q", "response": "r"}])
    last = _clear_failure(_score(tmp_path, preds, "--profile", "nope"), "unknown profile 'nope'")
    assert last.startswith("medsafe: score failed: unknown profile 'nope'")


def test_score_on_an_empty_file_is_an_error_not_null_metrics(tmp_path):
    preds = tmp_path / "empty.jsonl"
    preds.write_text("\n  \n", encoding="utf-8")
    last = _clear_failure(_score(tmp_path, preds), "no predictions")
    assert str(preds) in last and "one JSON object per line" in last
    assert not (tmp_path / "out.jsonl").exists()


def test_an_unreadable_profile_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe not utf-8")
    _clear_failure(runner.invoke(app, ["profiles", "--show", str(bad)]), f"profile {bad} cannot be read")


def test_a_failed_gate_ends_on_a_line_naming_the_failed_expectations():
    from validation.results import FailedExpectation, GateResult, QualityGateFailed

    result = GateResult(
        passed=False,
        failed=[
            FailedExpectation(
                "rl_prompts", "expect_column_mean_to_be_between", "is_critical_high", "0.3", "> 0.4"
            ),
            FailedExpectation("train", "expect_table_row_count_to_be_between", None, "0", ">= 1"),
        ],
        data_docs_index="/w/reports/data_quality/data_docs/index.html",
    )
    lines = failure_lines("data", QualityGateFailed(result))
    assert lines[-1] == (
        "medsafe: data failed: quality gate: 2 expectation(s) failed: "
        "[rl_prompts] expect_column_mean_to_be_between on column 'is_critical_high': observed 0.3; "
        "expected > 0.4; [train] expect_table_row_count_to_be_between on table: observed 0; expected >= 1"
    )
    assert any("what to do" in line for line in lines) and any("data_docs" in line for line in lines)
    assert sum("observed" in line for line in lines) == 1  # named once, on the last line


def _medsafe(*args: str) -> subprocess.CompletedProcess:
    """The real `medsafe` process (main(), its exit handlers included), without a judge key."""
    env = {**os.environ, "CI": "true"}
    env.pop("DEEPSEEK_API_KEY", None)
    command = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_the_console_entry_point_prints_no_traceback_and_the_message_last(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    for args, expected in [
        (["profiles", "--show", "nope"], "medsafe: profiles failed: unknown profile 'nope'"),
        (
            ["score", "--predictions", str(empty), "--out", str(tmp_path / "o.jsonl"), "--no-teacher"],
            "medsafe: score failed:",
        ),
    ]:
        proc = _medsafe(*args)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert proc.stderr.strip().splitlines()[-1].startswith(expected), proc.stderr
        assert proc.stdout == ""


def test_the_console_entry_point_ends_with_the_commands_status_and_output():
    """main() ends the process itself once the exit handlers ran (flows/cli.py: _exit_now): the status
    and everything printed must arrive as if Python had ended it."""
    proc = _medsafe("profiles", "--show", "tiny")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)  # the whole profile, flushed before the end
    assert shown["name"] == "tiny" and "rl" in shown
    assert proc.stderr == ""


# ------------------------------------------------------------------------------ summaries and --json


def _preds(tmp_path: Path) -> Path:
    preds = tmp_path / "preds.jsonl"
    write_jsonl(
        preds,
        [{"id": p["id"], "question": p["question"], "response": p["unsafe"]} for p in PAIRS[:3]]
        + [{"id": p["id"] + "s", "question": p["question"], "response": p["safe"]} for p in PAIRS[3:6]],
    )
    return preds


def test_score_prints_a_summary_or_with_json_only_json(tmp_path):
    preds = _preds(tmp_path)
    human = _score(tmp_path, preds)
    assert human.exit_code == 0, human.output
    assert "violation rate" in human.stdout and "{" not in human.stdout
    # --json before or after the command name: stdout is one JSON document, the full summary
    before = ["--json", "score", "--predictions", str(preds), "--out", str(tmp_path / "a.jsonl")]
    for result in (
        runner.invoke(app, [*before, "--no-teacher", "--workdir", str(tmp_path)]),
        _score(tmp_path, preds, "--json", "--explain"),
    ):
        assert result.exit_code == 0, result.output
        got = json.loads(result.stdout)
        assert got["rows"] == 6 and 0 < got["violation_rate"] < 1
    assert got["explain"][0].startswith(f"{PAIRS[0]['id']}: rule_score")  # --explain rides inside the JSON
    k = round(got["violation_rate"] * 6)
    assert f"({k}/6, 95% CI " in human.stdout  # every rate with its n and interval


def test_the_summary_interval_is_the_evaluation_one():
    from flows.summary import wilson
    from tasks.evaluate.statistics import wilson as eval_wilson

    for k, n in ((0, 250), (47, 250), (3, 3), (1, 7)):
        rate = eval_wilson(k, n)
        assert wilson(k, n) == pytest.approx((rate.lo, rate.hi), abs=1e-12)


def test_eval_summary_shows_models_side_by_side_with_intervals_and_verdicts(tmp_path):
    from tasks.evaluate.report import run_comparison, run_evaluation
    from tasks.reward.engine import RewardEngine
    from tasks.reward.rules import SafetyRules

    engine = RewardEngine(SafetyRules.from_yaml(), RewardConfig())
    runs = {}
    for name, kind in (("sft", "unsafe"), ("rl", "safe")):
        preds = tmp_path / f"{name}.jsonl"
        write_jsonl(
            preds,
            [
                {"id": p["id"], "question": p["question"], "response": p[kind], "set": "red_team"}
                for p in PAIRS[:8]
            ],
        )
        runs[name] = run_evaluation(preds, tmp_path / "reports" / name, name, engine)
    cmp = run_comparison({k: Path(v["metrics"]) for k, v in runs.items()}, tmp_path / "reports/c", "c")
    console = Console(record=True, width=140)
    render_summary("eval", {"runs": runs, "comparison": cmp}, console)
    text = console.export_text()
    header = next(line for line in text.splitlines() if "metric" in line)
    assert header.index("sft") < header.index("rl") and "sft → rl" in header
    assert "safety violation rate" in text and "over-refusal rate" in text
    assert "better" in text and "n=8" in text and "[" in text  # verdict, n and an interval
    assert cmp["report_html"] in text.replace("\n", "")
    # one run: the same table from its metrics.json, and its report to open
    console = Console(record=True, width=140)
    render_summary("eval", runs["rl"], console)
    text = console.export_text()
    assert "safety violation rate" in text and "n=8" in text and runs["rl"]["report_html"] in text


def test_other_summaries_fall_back_to_a_key_value_table_with_paths_last():
    console = Console(record=True, width=100)
    render_summary(
        "sft", {"adapter": "/w/models/lora/final_lora", "steps": 3, "train_loss": 1.23456}, console
    )
    lines = [line.split() for line in console.export_text().splitlines() if line.strip()]
    assert lines == [["steps", "3"], ["train", "loss", "1.235"], ["adapter", "/w/models/lora/final_lora"]]


@pytest.mark.slow
def test_a_failing_data_command_ends_on_the_gate_line_without_tracebacks(tmp_path):
    env = {**os.environ, "CI": "true"}
    env.pop("DEEPSEEK_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "data", "--workdir", str(tmp_path), "--json",
         "--set", "gate.min_critical_high_share=0.99"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("medsafe: data failed: quality gate: 1 expectation(s) failed: [rl_prompts]"), last
    # the report a failed gate still writes: its summary shows the verdict, the counts and what to open
    reports = tmp_path / "reports/data_quality"
    console = Console(record=True, width=140)
    full = json.loads((reports / "summary.json").read_text(encoding="utf-8"))
    render_summary("data", {"gate_passed": False, **full["outputs"], "critical_high_share": 0.5}, console)
    text = console.export_text()
    assert text.startswith("data: quality gate FAILED") and "expect_column_mean_to_be_between" in text
    for label in (
        "processed rows",
        "quarantined",
        "RL prompts",
        "critical+high",
        str(reports / "report.html"),
    ):
        assert label in text, label


def test_json_before_or_after_reaches_a_command_with_its_own_json_option(tmp_path):
    src = tmp_path / "q.jsonl"
    write_jsonl(src, [{"question": p["question"]} for p in PAIRS[:3]])
    for args in (["--json", "label"], ["label", "--json"]):
        result = runner.invoke(app, [*args, "-i", str(src), "-o", str(tmp_path / "l.jsonl")])
        assert result.exit_code == 0, result.output
        assert sum(json.loads(result.stdout)["counts"].values()) == 3


def test_a_summary_with_missing_files_and_keys_still_prints(tmp_path):
    console = Console(record=True, width=120)
    render_summary(
        "run",
        {
            "data": {"gate_passed": True, "critical_high_share": 0.5, "summary": str(tmp_path / "gone.json")},
            "train": {"sft": {"adapter": str(tmp_path / "lora")}},
            "evaluate": {"runs": {"rl": {"name": "rl", "metrics": str(tmp_path / "gone.json")}}},
        },
        console,
    )
    text = console.export_text()
    assert "data: quality gate passed" in text and "critical+high" in text and str(tmp_path / "lora") in text
