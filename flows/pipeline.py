"""The whole pipeline as one flow: data (gate) → train (SFT → RL) → evaluate (SFT vs RL).

medsafe run --profile tiny --workdir runs/tiny
"""

from __future__ import annotations

from prefect import flow

from flows.data import data_flow
from flows.evaluate import compare_flow
from flows.train import train_flow


@flow(name="medsafe-pipeline")
def medsafe_pipeline(profile: str = "tiny", sources: list[str] | None = None, workdir: str = ".") -> dict:
    """Each sub-flow shows in the UI; a failed quality gate stops the run before training."""
    data = data_flow(profile=profile, sources=sources, workdir=workdir)
    train = train_flow(profile=profile, workdir=workdir)
    evaluation = compare_flow(profile=profile, workdir=workdir)
    return {"data": data, "train": train, "evaluate": evaluation}
