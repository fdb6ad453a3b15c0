"""The whole pipeline as one flow: data (gate) → train (SFT → RL) → evaluate (base vs SFT vs RL).

medsafe run --profile tiny --workdir runs/tiny
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.data import data_flow
from flows.evaluate import compare_flow
from flows.train import train_flow
from tasks.core.lock import workdir_lock


@flow(name="medsafe-pipeline")
def medsafe_pipeline(profile: str = "tiny", sources: list[str] | None = None, workdir: str = ".") -> dict:
    """Each sub-flow shows in the UI; a failed quality gate stops the run before training."""
    # One run per workdir, scheduled runs included (a no-op inside a CLI command that already holds it).
    with workdir_lock(workdir, "medsafe-pipeline flow", notify=get_run_logger().warning):
        data = data_flow(profile=profile, sources=sources, workdir=workdir)
        train = train_flow(profile=profile, workdir=workdir)
        evaluation = compare_flow(profile=profile, workdir=workdir, models=train.get("compare"))
    return {"data": data, "train": train, "evaluate": evaluation}
