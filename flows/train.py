"""The train sub-flow: base model → LoRA SFT → RL (PPO or GRPO) against the safety reward.

    medsafe sft --profile tiny
    medsafe rl --profile tiny --algorithm ppo
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from flows.config import Profile, Workdir, load_profile
from tasks.errors import MedsafeError
from tasks.rl import SAFETY_RULES, base_model_task, rl_task, teacher_requested
from tasks.sft import sft_task


class DataNotReady(MedsafeError):
    """Training was asked for before the data flow produced gated data."""


def require_gated_data(wd: Workdir) -> None:
    """Train only on data whose quality gate passed: the same rule whether run alone or in the pipeline."""
    gate = wd.root / "reports" / "data_quality" / "gate_result.json"
    if not gate.is_file():
        raise DataNotReady(f"no quality-gate result at {gate}; run `medsafe data --workdir {wd.root}` first")
    if not json.loads(gate.read_text(encoding="utf-8")).get("passed"):
        raise DataNotReady(f"the data quality gate failed ({gate}); fix the data and re-run `medsafe data` before training")


def _sft(cfg: Profile, wd: Workdir) -> tuple[Path, dict]:
    base = Path(base_model_task(cfg.model, wd))
    sft = sft_task(wd.processed / "train.jsonl", wd.processed / "dev.jsonl", wd, cfg.sft, cfg.model, base_path=base)
    return base, sft


@flow(name="medsafe-sft")
def sft_flow(profile: str = "tiny", workdir: str = ".") -> dict:
    """LoRA SFT on the gated train split."""
    cfg, wd = load_profile(profile), Workdir.at(workdir)
    require_gated_data(wd)
    return _sft(cfg, wd)[1]


@flow(name="medsafe-train")
def train_flow(profile: str = "tiny", workdir: str = ".", algorithm: str | None = None, steps: int | None = None) -> dict:
    """SFT (a cache hit when already done), then RL from the SFT adapter."""
    overrides = {k: v for k, v in {"rl.algorithm": algorithm, "rl.steps": steps}.items() if v is not None}
    cfg, wd = load_profile(profile, overrides or None), Workdir.at(workdir)
    require_gated_data(wd)
    base, sft = _sft(cfg, wd)
    rl = rl_task(
        wd.training_prompts, base, Path(sft["adapter"]), SAFETY_RULES, cfg.rl, cfg.model, cfg.reward,
        cfg.teacher, teacher_requested(cfg.teacher), wd,
    )
    return {"sft": sft, "rl": rl}


rl_flow = train_flow  # `medsafe rl` runs the train flow: SFT is a cache hit when it is already done
