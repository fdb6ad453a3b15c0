"""Deployments from deployments/prefect.yaml: register them on a server, or serve them from this process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
PREFECT_FILE = PROJECT_DIR / "deployments" / "prefect.yaml"


def load_deployment_specs(path: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    """The `deployments:` entries of prefect.yaml."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))["deployments"]


def _load_flow(entrypoint: str):  # noqa: ANN202
    file, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(Path(file).stem, PROJECT_DIR / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _with_workdir(params: dict[str, Any], workdir: str | None) -> dict[str, Any]:
    if workdir is None:
        return params
    return {**params, "workdir": str(Path(workdir) / Path(params.get("workdir", ".")).name)}


def runner_deployments(workdir: str | None = None) -> list:
    """One RunnerDeployment per prefect.yaml entry, schedules included; workdirs placed under `workdir`."""
    out = []
    for spec in load_deployment_specs():
        flow = _load_flow(spec["entrypoint"])
        crons = [s["cron"] for s in spec.get("schedules", []) if "cron" in s]
        out.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=_with_workdir(spec.get("parameters", {}), workdir),
                cron=crons or None,
            )
        )
    return out


def serve_deployments(workdir: str | None = None) -> None:
    """Serve every deployment (schedules active) from this process until interrupted."""
    from prefect import serve

    serve(*runner_deployments(workdir))


def register_deployments(pool: str) -> int:
    """Create the work pool if needed and run `prefect deploy --all` on deployments/prefect.yaml."""
    env = {**os.environ, "MEDSAFE_PROJECT_DIR": str(PROJECT_DIR)}
    prefect = [str(Path(sys.executable).with_name("prefect"))]
    subprocess.run([*prefect, "work-pool", "create", pool, "--type", "process"], env=env, cwd=PROJECT_DIR, check=False)
    cmd = [*prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE), "--pool", pool]
    return subprocess.run(cmd, env=env, cwd=PROJECT_DIR, check=False).returncode
