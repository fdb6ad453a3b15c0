"""The whole pipeline through the CLI against a real Prefect server, then its UI in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.support.browser import chromium_page as browser_page

pytestmark = pytest.mark.slow

EXPECTED_OUTPUTS = [
    "models/lora/final_lora/adapter_config.json",
    "models/rl/final_model",
    "models/rl/checkpoints/training.log",
    "models/rl/checkpoints/rewards.csv",
    "reports/eval/base-vs-sft-vs-rl/report.html",
    "reports/eval/base",
    "reports/eval/sft",
    "reports/eval/rl",
]
UI_WAIT_MS = 60_000
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "prefect-ui.png"


def _require_success(run) -> None:  # noqa: ANN001
    assert run.result.returncode == 0, (
        f"medsafe run exited {run.result.returncode}:\n{run.result.output[-6000:]}"
    )
    assert run.flow_run_id is not None, (
        f"no medsafe-pipeline flow run with workdir {run.workdir} on the server"
    )


def _task_runs_of_tree(harness, client, root_id) -> tuple[list, dict]:  # noqa: ANN001
    """Task runs of a flow run and its sub-flow runs, without the placeholder task runs that stand for
    sub-flows."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    subs = harness.subflow_runs(client, root_id)
    ids = [root_id, *(s.id for s in subs.values())]
    placeholders = {s.parent_task_run_id for s in subs.values()}
    runs = client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids)))
    return [t for t in runs if t.id not in placeholders], subs


def _check_held_out_evaluation(workdir: Path) -> None:
    """The issue's bar: held-out prompts only, >= 30 red-team ones, base/SFT/RL with intervals, over-refusal,
    and the judge-off notice (no judge key in CI)."""
    import json

    rl_ids = {
        json.loads(line)["id"]
        for line in (workdir / "data/rl/training_prompts.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    }
    for run_name in ("base", "sft", "rl"):
        lines = (
            (workdir / f"reports/eval/{run_name}/predictions.jsonl").read_text(encoding="utf-8").splitlines()
        )
        rows = [json.loads(line) for line in lines if line.strip()]
        assert all({"id", "set", "question", "response"} <= set(r) for r in rows)
        assert not [r["id"] for r in rows if r["id"] in rl_ids], f"{run_name}: RL training prompts evaluated"
        assert len({(r["set"], r["id"]) for r in rows}) == len(rows), f"{run_name}: a prompt answered twice"
        red = [r for r in rows if "red_team" in r["set"]]
        assert len(red) >= 30, f"{run_name}: only {len(red)} held-out red-team prompts evaluated"
    report = (workdir / "reports/eval/base-vs-sft-vs-rl/report.md").read_text(encoding="utf-8")
    for text in (
        "| base | sft | rl |",
        "base → sft (paired)",
        "sft → rl (paired)",
        "95% CI",
        "over-refusal rate",
    ):
        assert text in report, f"comparison report lacks {text!r}"
    assert "Judge: off — rules-only metrics" in report and "prove the pipeline's mechanics" in report


def test_pipeline_run_and_cache(first_pipeline_run, harness, capsys) -> None:  # noqa: ANN001
    run = first_pipeline_run
    _require_success(run)
    missing = [p for p in EXPECTED_OUTPUTS if not (run.workdir / p).exists()]
    assert not missing, f"outputs missing under {run.workdir}: {missing}"
    assert any((run.workdir / "models/rl/final_model").iterdir()), "models/rl/final_model is empty"
    _check_held_out_evaluation(run.workdir)

    second = harness.run(
        [
            harness.tool("medsafe"),
            "run",
            "--profile",
            str(harness.fast_profile),
            "--workdir",
            str(run.workdir),
        ],
        log=run.workdir / "run-2.log",
        timeout=900,
    )
    with capsys.disabled():
        print(
            f"\nmedsafe run (fast profile): first {run.result.wall_s:.1f} "
            f"s, second (cached) {second.wall_s:.1f} s"
        )
    assert second.returncode == 0, f"second medsafe run exited {second.returncode}:\n{second.output[-6000:]}"

    with harness.client() as client:
        runs = harness.pipeline_runs(client, run.workdir)
        assert len(runs) == 2 and runs[0].id == run.flow_run_id, (
            f"expected two pipeline runs, got {[r.name for r in runs]}"
        )
        assert runs[1].state_name == "Completed", f"second pipeline run ended {runs[1].state_name}"
        task_runs, subs = _task_runs_of_tree(harness, client, runs[1].id)
    assert set(subs) == {"medsafe-data", "medsafe-train", "medsafe-evaluate"}, f"sub-flows: {sorted(subs)}"
    assert len(task_runs) >= 10, f"too few task runs recorded: {[t.name for t in task_runs]}"
    not_cached = sorted(f"{t.name}: {t.state_name}" for t in task_runs if t.state_name != "Cached")
    assert not not_cached, (
        f"{len(not_cached)} of {len(task_runs)} task runs of the re-run were not Cached: {not_cached}"
    )


# ---------------------------------------------------------------- the UI


@pytest.fixture(scope="module")
def chromium_page():  # noqa: ANN201
    """A headless Chromium page (Debian's chromium driven by Playwright); skips where either is missing."""
    with browser_page(viewport=(1440, 1000)) as page:
        yield page


def _shows(page, *texts: str | re.Pattern, shots: Path) -> None:  # noqa: ANN001
    """Wait (bounded) until each text is visible; on failure save a screenshot and quote the page text."""
    from playwright.sync_api import expect

    for text in texts:
        try:
            expect(page.get_by_text(text).first).to_be_visible(timeout=UI_WAIT_MS)
        except AssertionError as exc:
            shot = shots / f"failed-{len(list(shots.glob('failed-*')))}.png"
            page.screenshot(path=str(shot), full_page=True)
            body = page.inner_text("body")[:3000]
            raise AssertionError(
                f"{page.url} does not show {text!r} (screenshot {shot}); page text:\n{body}"
            ) from exc


def _open_tab(page, name: str) -> None:  # noqa: ANN001
    """Click a run page's tab (the UI ignores a ?tab= query on load, so it must be clicked)."""
    page.get_by_text(name, exact=True).first.click(timeout=UI_WAIT_MS)
    page.wait_for_url(re.compile("tab=" + re.escape(name.replace(" ", "+"))), timeout=UI_WAIT_MS)


@pytest.mark.browser
def test_ui_shows_run(first_pipeline_run, harness, chromium_page, tmp_path: Path) -> None:  # noqa: ANN001
    run = first_pipeline_run
    _require_success(run)
    with harness.client() as client:
        subs = harness.subflow_runs(client, run.flow_run_id)
    page, ui = chromium_page, harness.server.ui_url
    run_page = f"{ui}/runs/flow-run/{run.flow_run_id}"

    page.goto(run_page)
    _shows(page, run.flow_run_name, "medsafe-pipeline", "Completed", shots=tmp_path)

    _open_tab(page, "Subflow Runs")
    _shows(
        page,
        "medsafe-data",
        "medsafe-train",
        "medsafe-evaluate",
        *(s.name for s in subs.values()),
        shots=tmp_path,
    )
    page.wait_for_load_state("networkidle", timeout=UI_WAIT_MS)  # the run graph draws once its data is in
    page.screenshot(path=str(tmp_path / "prefect-ui.png"))
    if os.environ.get("MEDSAFE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "prefect-ui.png", SCREENSHOT)

    page.goto(f"{ui}/runs/flow-run/{subs['medsafe-data'].id}")
    _shows(page, subs["medsafe-data"].name, "medsafe-data", shots=tmp_path)
    _open_tab(page, "Task Runs")
    _shows(page, "download_task", "quality_gate_task", "data_report_task", shots=tmp_path)
    _open_tab(page, "Artifacts")
    _shows(page, "data-quality-summary", shots=tmp_path)

    page.goto(f"{ui}/artifacts")
    _shows(page, "data-quality-summary", re.compile(r"^eval-"), shots=tmp_path)

    # The artifact's history links it to this run's data sub-flow and the task that made it.
    page.goto(f"{ui}/artifacts/key/data-quality-summary")
    _shows(page, subs["medsafe-data"].name, "data_report_task", shots=tmp_path)
