"""The base-model stage: build the tiny base locally, or find the configured one (local folder or hub)."""

from __future__ import annotations

from prefect import get_run_logger

from tasks.core.config import ModelConfig
from tasks.core.stage import stage
from tasks.core.workdir import Workdir


@stage
def base_model_task(model_cfg: ModelConfig, workdir: Workdir) -> str:
    """Resolve the base model: build the tiny one locally, or find the hub/local one (clear error offline)."""
    from tasks.model.loading import resolve_base_model

    path = resolve_base_model(model_cfg, workdir)
    get_run_logger().info("base model: %s", path)
    return path
