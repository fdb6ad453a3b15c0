"""The four task wrappers wired as the data flow wires them, under a real local Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect import flow
from prefect.artifacts import Artifact

from tasks.core.config import GateConfig
from tasks.core.io import read_jsonl, write_jsonl
from tasks.core.workdir import Workdir
from tasks.prepare.sample_rl import sample_rl_task
from tasks.prepare.split import split_task
from validation.gate import QualityGateFailed, quality_gate_task
from validation.report import data_report_task
from validation.tables import table_paths

pytestmark = pytest.mark.slow


@flow(validate_parameters=False)
def _data_tail(classified: Path, safety: Path, case, gate: GateConfig) -> dict:
    wd: Workdir = case.workdir
    splits = split_task(classified, safety, case.data, wd)
    prompts = sample_rl_task(
        Path(splits["train"]), Path(splits["red_team"]), Path(splits["gold_set"]), case.sampling, wd
    )
    result = quality_gate_task(table_paths(wd), gate, case.sampling, case.data, wd)
    report = data_report_task(
        table_paths(wd),
        Path(prompts["report"]),
        wd.quarantine,
        Path(result["result_path"]),
        case.data,
        case.sampling,
        wd,
    )
    return {"gate": result, "report": report}


def test_wrappers_in_a_flow_gate_report_and_artifacts(good_case, tmp_path, prefect_server):
    wd = good_case.workdir
    # the fixture's split files double as the classified input (split recomputes `split` from `group`)
    rows = [
        r for name in ("train", "dev", "test", "gold_set") for r in read_jsonl(wd.processed / f"{name}.jsonl")
    ]
    red = read_jsonl(wd.split("red_team")) + read_jsonl(wd.split("red_team_eval"))
    rows += [r for r in red if r["source"] != "safety_red_team"]
    classified = tmp_path / "classified.jsonl"
    write_jsonl(classified, rows)
    safety = wd.root / "safety.jsonl"
    out = _data_tail(classified, safety, good_case, good_case.gate)
    assert out["gate"]["passed"] is True and out["report"]["gate_passed"] is True
    index = wd.data_quality_reports / "data_docs" / "index.html"
    assert out["gate"]["data_docs_index"] == str(index)
    docs = index.read_text(encoding="utf-8")
    assert all(suite in docs for suite in ("processed_train", "gold_set", "red_team", "rl_prompts"))
    assert Path(out["report"]["summary"]).is_file() and Path(out["report"]["data_card"]).is_file()
    artifact = Artifact.get("data-quality-summary")
    prompts = len(read_jsonl(wd.training_prompts))
    assert (
        artifact is not None and "gate passed" in artifact.data and f"RL prompts: {prompts} " in artifact.data
    )
    assert Artifact.get("data-quality-risk-distribution") is not None

    strict = GateConfig(min_critical_high_share=0.99)
    with pytest.raises(QualityGateFailed, match="is_critical_high"):
        _data_tail(classified, safety, good_case, strict)
    summary = json.loads((wd.data_quality_reports / "summary.json").read_text(encoding="utf-8"))
    assert summary["gate_passed"] is False  # a failed gate still leaves its report behind
    assert any("is_critical_high" in f for f in summary["failed_expectations"])
