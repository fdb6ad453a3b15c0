"""Deployments end to end: `medsafe serve` answers `prefect deployment run`; `medsafe deploy` registers for a
worker.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DATA_ONLY = "medsafe-data/data-only"
WEEKLY = "medsafe-pipeline/weekly-retraining"
UUID = re.compile(r"UUID:\s*([0-9a-f-]{36})")
SUBMITTED = re.compile(r"submitting flow run '([0-9a-f-]{36})'")


def _flow_run_id(output: str) -> str:
    found = UUID.search(output)
    assert found, f"`prefect deployment run` printed no flow run UUID:\n{output[-3000:]}"
    return found.group(1)


def _deployment(harness, name: str):  # noqa: ANN001, ANN202
    from prefect.exceptions import ObjectNotFound

    with harness.client() as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None


def _assert_data_run_completed(harness, output: str, deployment_id, workdir: Path) -> None:  # noqa: ANN001
    with harness.client() as client:
        flow_run = client.read_flow_run(_flow_run_id(output))
    assert flow_run.deployment_id == deployment_id, "the flow run does not belong to the triggered deployment"
    assert flow_run.state_name == "Completed", (
        f"flow run {flow_run.name} ended {flow_run.state_name}:\n{output[-3000:]}"
    )
    assert flow_run.parameters["workdir"] == str(workdir)
    gate = workdir / "reports" / "data_quality" / "gate_result.json"
    assert gate.is_file(), f"the data flow wrote no quality-gate result at {gate}"
    assert (workdir / "data" / "rl" / "training_prompts.jsonl").stat().st_size > 0


def test_deployment_triggered_from_cli(harness, tmp_path: Path) -> None:  # noqa: ANN001
    served = tmp_path / "served"
    log = tmp_path / "serve.log"
    # Started outside the checkout: module entrypoints must import from any folder.
    with harness.background(
        [harness.tool("medsafe"), "serve", "--workdir", str(served)], log=log, cwd=tmp_path
    ) as proc:

        def deployment_ready():  # noqa: ANN202
            if proc.poll() is not None:
                pytest.fail(f"medsafe serve exited with {proc.returncode}:\n{harness.tail(log)}")
            return _deployment(harness, DATA_ONLY)

        deployment = harness.wait_until(
            deployment_ready, timeout=180, what=f"deployment {DATA_ONLY} to be served"
        )
        assert _deployment(harness, WEEKLY) is not None, f"{WEEKLY} was not served beside {DATA_ONLY}"
        result = harness.run(
            [harness.tool("prefect"), "deployment", "run", DATA_ONLY, "--watch", "--watch-timeout", "540"],
            log=tmp_path / "deployment-run.log",
            timeout=600,
        )
        assert result.returncode == 0, (
            f"`prefect deployment run {DATA_ONLY} --watch` "
            f"exited {result.returncode}:\n{result.output[-4000:]}"
        )
        _assert_data_run_completed(harness, result.output, deployment.id, served / "data-only")
        assert proc.poll() is None, f"medsafe serve stopped while serving:\n{harness.tail(log)}"
    assert proc.returncode is not None, "medsafe serve is still running after the test"


def test_deploy_registers_for_a_worker(harness, tmp_path: Path) -> None:  # noqa: ANN001
    pool = "medsafe-e2e"
    result = harness.run(
        [harness.tool("medsafe"), "deploy", "--pool", pool], log=tmp_path / "deploy.log", timeout=300
    )
    assert result.returncode == 0, f"medsafe deploy exited {result.returncode}:\n{result.output[-4000:]}"

    weekly, data_only = _deployment(harness, WEEKLY), _deployment(harness, DATA_ONLY)
    assert weekly is not None and data_only is not None, f"not registered:\n{result.output[-3000:]}"
    assert {weekly.work_pool_name, data_only.work_pool_name} == {pool}
    crons = [(s.schedule.cron, s.schedule.timezone, s.active) for s in weekly.schedules]
    assert crons == [("0 3 * * 1", "UTC", True)], f"weekly-retraining schedules: {crons}"
    assert any("set_working_directory" in str(step) for step in data_only.pull_steps or []), (
        data_only.pull_steps
    )

    # Two process workers started outside the checkout (the pull step moves into MEDSAFE_PROJECT_DIR), one
    # flow run each at most, take two runs triggered at once for two workdirs; both must complete.
    triggers = {}
    for name in ("pool-a", "pool-b"):
        workdir = tmp_path / name
        trigger = harness.run(
            [harness.tool("prefect"), "deployment", "run", DATA_ONLY, "--param", f"workdir={workdir}"],
            log=tmp_path / f"trigger-{name}.log",
            timeout=120,
        )
        assert trigger.returncode == 0, trigger.output[-3000:]
        triggers[workdir] = _flow_run_id(trigger.output)
    worker = [harness.tool("prefect"), "worker", "start", "--pool", pool, "--limit", "1"]
    env = {"MEDSAFE_PROJECT_DIR": str(harness.repo)}
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    with (
        harness.background([*worker, "--name", "w1"], log=logs[0], cwd=tmp_path, **env),
        harness.background([*worker, "--name", "w2"], log=logs[1], cwd=tmp_path, **env),
    ):

        def both_final():  # noqa: ANN202
            with harness.client() as client:
                runs = [client.read_flow_run(run_id) for run_id in triggers.values()]
            return runs if all(r.state and r.state.is_final() for r in runs) else None

        runs = harness.wait_until(both_final, timeout=900, what="both data-only runs to finish on the pool")
    for run, workdir in zip(runs, triggers, strict=True):
        assert run.state_name == "Completed", (
            f"{run.name} ended {run.state_name}:\n{harness.tail(logs[0])}\n{harness.tail(logs[1])}"
        )
        _assert_data_run_completed(harness, f"UUID: {run.id}", data_only.id, workdir)
        with harness.client() as client:
            workers = {w.name for w in client.read_workers_for_work_pool(work_pool_name=pool)}
        assert {"w1", "w2"} <= workers, f"workers seen by the server on {pool}: {workers}"
    submitted = {m for log in logs for m in SUBMITTED.findall(harness.tail(log, 1_000_000))}
    assert submitted == set(triggers.values()), f"runs the workers submitted: {submitted}"
