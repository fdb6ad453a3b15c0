"""The SFT stage: LoRA supervised fine-tuning of the base model on the gated train split (sft_trainer.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from tasks.core.config import ModelConfig, SFTConfig
from tasks.core.errors import StageFailed
from tasks.core.stage import stage
from tasks.core.workdir import Workdir
from tasks.model.loading import resolve_base_model
from tasks.train.launch import Launch, launch
from tasks.train.sft_trainer import train_sft

log = logging.getLogger(__name__)


class Resume:
    """Whether SFT continues from its newest checkpoint; deliberately outside the stage's cache key (the
    cache policy keys an object like this by its type, not its value): a resumed run trains the same adapter
    a straight one would, so a later run without --resume hits its cache instead of training again, and
    --resume after a finished run is a cache hit too."""

    def __init__(self, on: bool) -> None:
        self.on = bool(on)

    def __bool__(self) -> bool:
        return self.on


@stage
def sft_task(
    train_path: Path,
    dev_path: Path,
    workdir: Workdir,
    sft_cfg: SFTConfig,
    model_cfg: ModelConfig,
    base_path: Path | None = None,
    resume: Resume | None = None,
) -> dict[str, Any]:
    """Prefect stage: LoRA SFT into <workdir>/models/lora (base_path: the resolved base model, else resolved
    here; resume: continue from the newest checkpoint under models/lora/trainer/).
    """
    logger = get_run_logger()
    base = base_path or Path(resolve_base_model(model_cfg, workdir))
    logger.info("SFT on %s (base %s)", train_path, base)
    try:
        if sft_cfg.launcher == "none":
            summary = train_sft(
                train_path, dev_path, base, workdir.sft_dir, sft_cfg, model_cfg, resume=bool(resume)
            )
        else:
            job = {
                "train_path": str(train_path),
                "dev_path": str(dev_path),
                "base_path": str(base),
                "out_dir": str(workdir.sft_dir),
                "sft": sft_cfg.model_dump(mode="json"),
                "model": model_cfg.model_dump(mode="json"),
                "resume": bool(resume),
            }
            how = Launch(sft_cfg.launcher, sft_cfg.num_processes, sft_cfg.launch_config)
            summary = launch("tasks.train.sft_entry", job, how, logger, workdir.sft_dir)
    except (OSError, ValueError) as exc:
        raise StageFailed("sft", exc, "fix the input named above and re-run") from exc
    logger.info(
        "adapter at %s; train loss %s -> %s; eval loss %s",
        summary["adapter"],
        summary["first_train_loss"],
        summary["final_train_loss"],
        summary["final_eval_loss"],
    )
    return summary
