"""The train sub-flow: base model → LoRA SFT → RL (PPO or GRPO) against the safety reward.

medsafe sft --profile tiny
medsafe rl --profile tiny --algorithm ppo
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from flows.recipes import load_profile
from tasks.core.config import Profile
from tasks.core.errors import MedsafeError
from tasks.core.stage import read_secret_block
from tasks.core.workdir import ASSETS, Workdir
from tasks.reward.teacher import teacher_enabled
from tasks.train.base_model import base_model_task
from tasks.train.rl import rl_task
from tasks.train.sft import sft_task


class DataNotReady(MedsafeError):
    """Training was asked for before the data flow produced gated data."""


def require_gated_data(wd: Workdir) -> None:
    """Train only on data whose quality gate passed: the same rule whether run alone or in the pipeline."""
    gate = wd.gate_result
    if not gate.is_file():
        raise DataNotReady(f"no quality-gate result at {gate}; run `medsafe data --workdir {wd.root}` first")
    if not json.loads(gate.read_text(encoding="utf-8")).get("passed"):
        raise DataNotReady(
            f"the data quality gate failed ({gate}); fix the data and re-run `medsafe data` before training"
        )


def _sft(cfg: Profile, wd: Workdir) -> tuple[Path, dict]:
    base = Path(base_model_task(cfg.model, wd))
    sft = sft_task(wd.split("train"), wd.split("dev"), wd, cfg.sft, cfg.model, base_path=base)
    return base, sft


@flow(name="medsafe-sft")
def sft_flow(profile: str = "tiny", workdir: str = ".") -> dict:
    """LoRA SFT on the gated train split."""
    cfg, wd = load_profile(profile), Workdir.at(workdir)
    require_gated_data(wd)
    return _sft(cfg, wd)[1]


@flow(name="medsafe-train")
def train_flow(
    profile: str = "tiny", workdir: str = ".", algorithm: str | None = None, steps: int | None = None
) -> dict:
    """SFT (a cache hit when already done), then RL from the SFT adapter."""
    overrides = {k: v for k, v in {"rl.algorithm": algorithm, "rl.steps": steps}.items() if v is not None}
    cfg, wd = load_profile(profile, overrides or None), Workdir.at(workdir)
    require_gated_data(wd)
    base, sft = _sft(cfg, wd)
    rl = rl_task(
        wd.training_prompts,
        base,
        Path(sft["adapter"]),
        ASSETS.safety_rules,
        cfg.rl,
        cfg.model,
        cfg.reward,
        cfg.teacher,
        teacher_enabled(cfg.teacher, read_secret_block),
        wd,
    )
    return {"sft": sft, "rl": rl}


rl_flow = train_flow  # `medsafe rl` runs the train flow: SFT is a cache hit when it is already done
