"""Deployments from deployments/prefect.yaml: register them on a server, or serve them from this process.

medsafe serve --workdir runs/served   # then: prefect deployment run 'medsafe-data/data-only'
medsafe deploy --pool medsafe-process # then start a worker: prefect worker start --pool medsafe-process
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow

from tasks.core.errors import MedsafeError

PROJECT_DIR = Path(__file__).resolve().parent.parent
PREFECT_FILE = PROJECT_DIR / "deployments" / "prefect.yaml"


class DeploymentSpecError(MedsafeError):
    """deployments/prefect.yaml does not describe a deployment we can build."""


def load_deployment_specs(path: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    """The `deployments:` entries of prefect.yaml, each with at least a name and an entrypoint."""
    specs = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("deployments") or []
    for i, spec in enumerate(specs, start=1):
        missing = [k for k in ("name", "entrypoint") if not spec.get(k)]
        if missing:
            raise DeploymentSpecError(f"{path}: deployment #{i} lacks {', '.join(missing)}; add it and retry")
    return specs


def flow_from_entrypoint(entrypoint: str) -> Flow:
    """Import the flow named by a prefect.yaml entrypoint (`flows/data.py:data_flow`) as a package module."""
    file, _, name = entrypoint.partition(":")
    module_name = ".".join(Path(file).with_suffix("").parts)
    try:
        obj = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise DeploymentSpecError(
            f"entrypoint {entrypoint!r} does not import ({exc}); fix deployments/prefect.yaml"
        ) from exc
    if not isinstance(obj, Flow):
        raise DeploymentSpecError(f"entrypoint {entrypoint!r} names {type(obj).__name__}, not a Prefect flow")
    return obj


def schedules_of(spec: dict[str, Any]) -> list:
    """The cron schedules of one spec, timezone and active flag kept (as `prefect deploy` reads them)."""
    from prefect.schedules import Cron

    return [
        Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
        for s in spec.get("schedules") or []
        if "cron" in s
    ]


def _with_workdir(params: dict[str, Any], workdir: str | None) -> dict[str, Any]:
    if workdir is None:
        return params
    return {**params, "workdir": str(Path(workdir) / Path(params.get("workdir") or ".").name)}


def runner_deployments(workdir: str | None = None) -> list:
    """One RunnerDeployment per prefect.yaml entry, schedules included; workdirs placed under `workdir`."""
    from prefect.deployments.runner import EntrypointType

    out = []
    for spec in load_deployment_specs():
        flow = flow_from_entrypoint(spec["entrypoint"])
        out.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=_with_workdir(spec.get("parameters") or {}, workdir),
                schedules=schedules_of(spec) or None,
                # A module path (flows.data.data_flow) imports from any folder; a file path would not.
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return out


def serve_deployments(workdir: str | None = None) -> None:
    """Serve every deployment (schedules active) from this process until interrupted."""
    from prefect import serve

    serve(*runner_deployments(workdir))


def prefect_file_for_pool(pool: str, folder: Path) -> Path:
    """prefect.yaml itself when every deployment already names `pool`, else a copy in `folder` that does.

    `prefect deploy --all` ignores `--pool`, so a different pool has to be written into the file it reads.
    """
    doc = yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))
    if all((spec.get("work_pool") or {}).get("name") == pool for spec in doc["deployments"]):
        return PREFECT_FILE
    for spec in doc["deployments"]:
        spec["work_pool"] = {**(spec.get("work_pool") or {}), "name": pool}
    copy = folder / "prefect.yaml"
    copy.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return copy


def register_deployments(pool: str) -> int:
    """Create the work pool if needed and run `prefect deploy --all` on deployments/prefect.yaml (on
    `pool`)."""
    env = {**os.environ, "MEDSAFE_PROJECT_DIR": str(PROJECT_DIR)}
    prefect = str(Path(sys.executable).with_name("prefect"))
    created = subprocess.run(
        [prefect, "work-pool", "create", pool, "--type", "process"],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    if created.returncode != 0 and "already exists" not in created.stdout + created.stderr:
        print(created.stdout + created.stderr, file=sys.stderr)
        return created.returncode
    with tempfile.TemporaryDirectory(prefix="medsafe-deploy-") as folder:
        prefect_file = prefect_file_for_pool(pool, Path(folder))
        cmd = [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)]
        return subprocess.run(cmd, env=env, cwd=PROJECT_DIR, check=False).returncode
