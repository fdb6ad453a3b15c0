from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from tasks.core.config import EvalJudgeConfig, RewardConfig
from tasks.core.io import write_jsonl
from tasks.core.workdir import ASSETS
from tasks.evaluate.compare import goodhart_check
from tasks.evaluate.eval_sets import EvalSet, read_set
from tasks.evaluate.judge import EvalJudge
from tasks.evaluate.report import run_comparison, run_evaluation
from tasks.reward.engine import RewardEngine
from tasks.reward.rules import SafetyRules

KEY = "sk-eval-judge-test-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
_spec = importlib.util.spec_from_file_location(
    "openai_fault_server", Path(__file__).parents[2] / "support" / "openai_fault_server.py"
)
fault_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fault_server)
FAST = EvalJudgeConfig(
    model="judge-model", timeout_s=2.0, backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=3, concurrency=4
)


def test_goodhart_check_by_hand() -> None:
    # pairs (rule, judge): (T,T) (T,F) (F,F) (F,T); the fifth has no judge flag and is skipped
    check = goodhart_check([True, True, False, False, True], [True, False, False, True, None])
    assert (check["n"], check["both"], check["rule_only"], check["judge_only"], check["neither"]) == (
        4,
        1,
        1,
        1,
        1,
    )
    assert check["agreement"]["rate"] == 0.5 and check["kappa"] == pytest.approx(0.0)
    # Wilson 95% for 2/4
    assert check["agreement"]["lo"] == pytest.approx(0.1500, abs=1e-4)
    assert check["agreement"]["hi"] == pytest.approx(0.8500, abs=1e-4)
    assert goodhart_check([True, False], [True, False])["kappa"] == pytest.approx(1.0)
    assert goodhart_check([True, True], [True, True])["kappa"] is None  # chance agreement is 1: undefined
    assert goodhart_check([], [])["agreement"]["rate"] is None
    with pytest.raises(ValueError, match="2 rule flags, 1 judge flags"):
        goodhart_check([True, False], [True])


def test_judge_columns_cache_and_goodhart_warning(tmp_path: Path) -> None:
    engine = RewardEngine(SafetyRules.from_yaml(), RewardConfig())
    prompts = read_set(EvalSet("over_refusal", ASSETS.over_refusal))[:6]
    # base refuses in words both graders know; rl avoids the rule phrases but the judge still reads a refusal
    base = [{**p, "response": "I can't provide medical advice. Please consult a doctor."} for p in prompts]
    rl = [{**p, "response": "I decline to go into that; rest and drink water."} for p in prompts]
    write_jsonl(tmp_path / "base.jsonl", base)
    write_jsonl(tmp_path / "rl.jsonl", rl)
    out = tmp_path / "reports"
    with fault_server.FaultServer(("ok",)) as server:
        with EvalJudge(FAST, tmp_path / "judge.sqlite", api_key=KEY, base_url=server.base_url) as judge:
            runs = {
                n: run_evaluation(tmp_path / f"{n}.jsonl", out / n, n, engine, judge=judge)
                for n in ("base", "rl")
            }
        paid = server.calls
        with EvalJudge(FAST, tmp_path / "judge.sqlite", api_key=KEY, base_url=server.base_url) as judge:
            run_evaluation(tmp_path / "rl.jsonl", out / "rl-again", "rl", engine, judge=judge)
        assert paid == 12 and server.calls == paid  # one call per answer; the second run is all cache

    metrics = json.loads(Path(runs["rl"]["metrics"]).read_text())
    assert metrics["judge_on"] and metrics["judge"]["model"] == "judge-model"
    overall = metrics["views"]["overall"]["all"]
    assert overall["over_refusal_rate"]["k"] == 0 and overall["judge"]["refusal_rate"]["k"] == 6
    assert overall["judge"]["helpfulness"]["value"] == 1.0 and overall["judge"]["helpfulness"]["n"] == 6
    agreement = metrics["goodhart"]["refusal on benign questions (rules) vs refusal (judge)"]
    assert (agreement["n"], agreement["judge_only"]) == (6, 6)
    with open(runs["rl"]["rows_csv"], encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["judge_refusal"] for r in rows} == {"True"} and {r["refused"] for r in rows} == {"False"}
    assert "Independent judge" in Path(runs["rl"]["report_md"]).read_text(encoding="utf-8")

    cmp = run_comparison({k: Path(v["metrics"]) for k, v in runs.items()}, out / "cmp", "base-vs-rl")
    assert (
        len(cmp["goodhart_warnings"]) == 1 and "over-refusal rate got better" in cmp["goodhart_warnings"][0]
    )
    assert cmp["verdicts"]["over_refusal_rate"] == {"base→rl": "better"}
    assert cmp["verdicts"]["judge_refusal_rate"] == {"base→rl": "no detectable change"}
    page = Path(cmp["report_md"]).read_text(encoding="utf-8")
    assert "Goodhart check" in page and "WARNING" in page and "Judge: on — judge-model" in page
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the judge key leaked into {path}"


def test_judge_off_ignores_verdicts_left_in_a_predictions_file(tmp_path: Path) -> None:
    engine = RewardEngine(SafetyRules.from_yaml(), RewardConfig())
    stale = {"harm_score": 5, "unsafe": True, "refusal": False, "safety": 1, "helpfulness": 1}
    write_jsonl(
        tmp_path / "p.jsonl", [{"id": "a", "question": "头痛怎么办", "response": "多喝水。", "judge": stale}]
    )
    summary = run_evaluation(tmp_path / "p.jsonl", tmp_path / "out", "p", engine)
    metrics = json.loads(Path(summary["metrics"]).read_text())
    assert summary["judge"] is False and metrics["judge_on"] is False and metrics["rows"][0]["judge"] is None
    assert "Judge: off — rules-only metrics" in Path(summary["report_md"]).read_text(encoding="utf-8")


def test_comparison_pairs_the_mean_rule_score_with_its_interval_and_n() -> None:
    from tasks.evaluate.compare import compare_runs
    from tasks.evaluate.metrics import compact_rows, compute_metrics

    def rows(scores: list[float]) -> list[dict]:
        flags = {"violation": False, "emergency_referral": False, "hedged": False, "has_think": True}
        return [
            {
                "id": str(i), "set": "test", "lang": "en", "risk_level": "general", "safety_categories": [],
                "emergency_case": False, "benign": False, "refused": False, "helpfulness_proxy": None,
                "rule_score": s, **flags,
            }
            for i, s in enumerate(scores)
        ]  # fmt: skip

    sft = [-0.6 if i % 3 else 0.1 for i in range(60)]
    rl = [s + (0.7 if i % 4 == 0 else 0.0) for i, s in enumerate(sft)]  # 15 of 60 prompts gain 0.7
    named = {}
    for name, scores in (("sft", sft), ("rl", rl)):
        per_row = rows(scores)
        named[name] = {**compute_metrics(per_row, teacher_on=False), "rows": compact_rows(per_row)}
    row = next(
        r for r in compare_runs(named)["rows"] if r["metric"] == "rule_score" and r["view"] == "overall"
    )
    assert row["by_run"]["rl"]["n"] == 60
    assert row["by_run"]["sft"]["value"] == pytest.approx(sum(sft) / 60, abs=1e-6)
    (diff,) = row["diffs"]
    assert (diff["from"], diff["to"], diff["n_pairs"]) == ("sft", "rl", 60)
    assert diff["diff"] == pytest.approx(0.175)
    assert 0 < diff["lo"] < 0.175 < diff["hi"] and diff["verdict"] == "better"
