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
from tasks.train.sft_trainer import train_sft

log = logging.getLogger(__name__)


@stage
def sft_task(
    train_path: Path,
    dev_path: Path,
    workdir: Workdir,
    sft_cfg: SFTConfig,
    model_cfg: ModelConfig,
    base_path: Path | None = None,
) -> dict[str, Any]:
    """Prefect stage: LoRA SFT into <workdir>/models/lora (base_path: the resolved base model, else resolved
    here).
    """
    logger = get_run_logger()
    base = base_path or Path(resolve_base_model(model_cfg, workdir))
    logger.info("SFT on %s (base %s)", train_path, base)
    try:
        summary = train_sft(train_path, dev_path, base, workdir.sft_dir, sft_cfg, model_cfg)
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
