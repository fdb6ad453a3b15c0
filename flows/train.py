"""The train sub-flow: base model → LoRA SFT → RL (PPO or GRPO) against the safety reward.

medsafe sft --profile tiny [--resume]
medsafe rl --profile tiny --algorithm ppo [--from sft|base|FOLDER]
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
from tasks.train.sft import Resume, sft_task


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


class BadInitFrom(MedsafeError):
    """rl.init_from names neither sft, base, nor a model or adapter folder."""


def _sft(cfg: Profile, wd: Workdir, resume: bool = False) -> tuple[Path, dict]:
    base = Path(base_model_task(cfg.model, wd))
    sft = sft_task(
        wd.split("train"), wd.split("dev"), wd, cfg.sft, cfg.model, base_path=base, resume=Resume(resume)
    )
    return base, sft


def rl_start(init_from: str) -> tuple[str, Path | None]:
    """What rl.init_from names: ("sft" | "base", None), ("merged", folder) or ("adapter", folder)."""
    if init_from in ("sft", "base"):
        return init_from, None
    path = Path(init_from).expanduser()
    if (path / "adapter_config.json").is_file():
        return "adapter", path
    if (path / "config.json").is_file():
        return "merged", path
    raise BadInitFrom(
        f"rl.init_from={init_from!r} is not sft, base, or a folder holding a model (config.json) or a LoRA "
        "adapter (adapter_config.json); fix --from / --set rl.init_from"
    )


@flow(name="medsafe-sft")
def sft_flow(profile: str = "tiny", workdir: str = ".", resume: bool = False) -> dict:
    """LoRA SFT on the gated train split (resume: continue from its last checkpoint)."""
    cfg, wd = load_profile(profile), Workdir.at(workdir)
    require_gated_data(wd)
    return _sft(cfg, wd, resume)[1]


@flow(name="medsafe-train")
def train_flow(
    profile: str = "tiny", workdir: str = ".", algorithm: str | None = None, steps: int | None = None
) -> dict:
    """SFT (a cache hit when already done), then RL from where rl.init_from says (default: the SFT adapter).

    Returns the SFT and RL summaries and `compare`: the models evaluation puts side by side (None: its
    default, base / SFT / RL; without SFT: base / RL, base / init adapter / RL, or init model / RL)."""
    overrides = {k: v for k, v in {"rl.algorithm": algorithm, "rl.steps": steps}.items() if v is not None}
    cfg, wd = load_profile(profile, overrides or None), Workdir.at(workdir)
    require_gated_data(wd)
    kind, folder = rl_start(cfg.rl.init_from)
    if kind == "sft":
        base, sft = _sft(cfg, wd)
        adapter, compare = Path(sft["adapter"]), None
    elif kind == "merged":
        base, sft, adapter = folder, None, None
        compare = {"init": str(folder), "rl": str(wd.rl_final)}
    else:
        base, sft = Path(base_model_task(cfg.model, wd)), None
        adapter = folder  # None when starting from the base itself
        compare = {"base": str(base), **({"init": str(folder)} if folder else {}), "rl": str(wd.rl_final)}
    rl = rl_task(
        wd.training_prompts,
        base,
        adapter,
        ASSETS.safety_rules,
        cfg.rl,
        cfg.model,
        cfg.reward,
        cfg.teacher,
        teacher_enabled(cfg.teacher, read_secret_block),
        wd,
    )
    return {"sft": sft, "rl": rl, "compare": compare}


rl_flow = train_flow  # `medsafe rl` runs the train flow: SFT is a cache hit when it is already done
