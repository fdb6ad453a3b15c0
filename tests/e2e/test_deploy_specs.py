"""deployments/prefect.yaml as flows/deploy.py reads it: no server needed (fast, so not marked slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import Flow

from flows.deploy import DeploymentSpecError, flow_from_entrypoint, load_deployment_specs, runner_deployments


def _by_name() -> dict[str, dict]:
    return {spec["name"]: spec for spec in load_deployment_specs()}


def test_specs_parse_and_entrypoints_name_flows() -> None:
    specs = _by_name()
    assert set(specs) == {"weekly-retraining", "data-only"}
    flows = {name: flow_from_entrypoint(spec["entrypoint"]) for name, spec in specs.items()}
    assert all(isinstance(f, Flow) for f in flows.values())
    assert flows["weekly-retraining"].name == "medsafe-pipeline"
    assert flows["data-only"].name == "medsafe-data"
    assert specs["data-only"]["parameters"]["profile"] == "tiny"


def test_weekly_retraining_is_weekly_with_profile_and_sources() -> None:
    weekly = _by_name()["weekly-retraining"]
    crons = [s["cron"] for s in weekly["schedules"]]
    assert len(crons) == 1
    minute, hour, day_of_month, month, day_of_week = crons[0].split()
    assert (day_of_month, month) == ("*", "*") and day_of_week.isdigit() and 0 <= int(day_of_week) <= 7, (
        crons[0]
    )
    assert minute.isdigit() and hour.isdigit(), f"{crons[0]} is not once a week"
    assert {"profile", "sources"} <= set(weekly["parameters"])


def test_runner_deployments_use_module_entrypoints_and_place_workdirs(tmp_path: Path) -> None:
    deployments = {d.name: d for d in runner_deployments(str(tmp_path))}
    assert deployments["data-only"].entrypoint == "flows.data.data_flow"
    assert deployments["data-only"].parameters["workdir"] == str(tmp_path / "data-only")
    schedules = deployments["weekly-retraining"].schedules
    assert [(s.schedule.cron, s.schedule.timezone) for s in schedules] == [("0 3 * * 1", "UTC")]
    assert deployments["data-only"].schedules == []


def test_bad_entrypoint_names_the_entrypoint() -> None:
    with pytest.raises(DeploymentSpecError, match="flows/nope.py:data_flow"):
        flow_from_entrypoint("flows/nope.py:data_flow")
    with pytest.raises(DeploymentSpecError, match="not a Prefect flow"):
        flow_from_entrypoint("flows/deploy.py:load_deployment_specs")


def test_prefect_file_for_another_pool_is_a_rewritten_copy(tmp_path: Path) -> None:
    import yaml

    from flows.deploy import PREFECT_FILE, prefect_file_for_pool

    assert prefect_file_for_pool("medsafe-process", tmp_path) == PREFECT_FILE
    copy = prefect_file_for_pool("gpu-pool", tmp_path)
    assert copy.parent == tmp_path
    doc = yaml.safe_load(copy.read_text(encoding="utf-8"))
    assert {d["work_pool"]["name"] for d in doc["deployments"]} == {"gpu-pool"}
    assert doc["pull"] == yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))["pull"]
