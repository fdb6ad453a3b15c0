"""Find and load a Qwen3 model: the locally built `tiny` base, a local folder, or the Hugging Face hub;
its dtype and device; LoRA adapters on top. SFT, PPO, GRPO and evaluation all load through here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core.config import LoraConfig as LoraSection
from tasks.core.config import ModelConfig
from tasks.core.errors import MedsafeError
from tasks.core.workdir import Workdir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


# Files a causal LM needs; skips the original-format checkpoints some hub repos carry as well.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken"]


class ModelUnavailable(MedsafeError, RuntimeError):
    """The configured base model cannot be found locally or fetched."""


def device() -> torch.device:
    """CUDA when present, else CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(name: str) -> torch.dtype:
    """ModelConfig.dtype as a torch dtype; `auto` is bfloat16 on a GPU that supports it, else float32."""
    import torch

    if name == "auto":
        return (
            torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        )
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_base_model(model_cfg: ModelConfig, workdir: Workdir) -> str:
    """Local folder of the base model: the tiny build, MEDSAFE_BASE_MODEL, a local path, or a hub download."""
    if model_cfg.tiny:
        from tasks.model.tiny import build_tiny_base

        return str(build_tiny_base(workdir.base_model / "tiny"))
    base = os.environ.get("MEDSAFE_BASE_MODEL") or model_cfg.base
    local = Path(base).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if base.startswith(("/", ".", "~")) or base.count("/") != 1:
        raise ModelUnavailable(
            f"base model path {base!r} does not exist. Point MEDSAFE_BASE_MODEL (or model.base) at a folder "
            "holding config.json, the weights and the tokenizer, or use a hub id like Qwen/Qwen3-0.6B."
        )
    if model_cfg.hub == "modelscope":
        return _modelscope_snapshot(base)
    return _hub_snapshot(base)


LOCAL_ROUTE = (
    "download it where a hub is reachable (`huggingface-cli download {id} --local-dir DIR` or "
    "`modelscope download --model {id} --local_dir DIR`), copy DIR here and set MEDSAFE_BASE_MODEL=DIR "
    "(or model.base: DIR)"
)


def _modelscope_snapshot(repo_id: str) -> str:
    """A ModelScope snapshot (MODELSCOPE_CACHE decides where; ModelScope's own default otherwise)."""
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise ModelUnavailable(
            f"model.hub is modelscope but the modelscope package is not installed: pip install "
            f"'medsafe[modelscope]' (or pip install modelscope); or {LOCAL_ROUTE.format(id=repo_id)}"
        ) from None
    try:
        return str(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one actionable message
        raise ModelUnavailable(
            f"base model {repo_id!r} is not available from ModelScope ({_first_line(exc)}); "
            f"{LOCAL_ROUTE.format(id=repo_id)}; or set hub: huggingface (HF_ENDPOINT for a mirror)"
        ) from None


def _hub_snapshot(repo_id: str) -> str:
    from huggingface_hub import constants, snapshot_download

    offline = any(
        os.environ.get(v, "").lower() in {"1", "true", "yes", "on"}
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    try:
        return snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=offline)
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one actionable message
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else _first_line(exc)
        raise ModelUnavailable(
            f"base model {repo_id!r} is not available from {constants.ENDPOINT} ({why}). Either "
            f"{LOCAL_ROUTE.format(id=repo_id)}; or use a mirror (HF_ENDPOINT=https://hf-mirror.com) or "
            "ModelScope (--set hub=modelscope); or run the offline `tiny` profile."
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a model or adapter; pad falls back to eos so batching always works."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    path: str | Path, model_cfg: ModelConfig, adapter: Path | None = None, merge: bool = False
) -> PreTrainedModel:
    """Causal LM in the configured dtype on device(); optionally with a LoRA adapter, merged into the
    weights."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=resolve_dtype(model_cfg.dtype))
    model.to(device())
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
        if merge:
            model = model.merge_and_unload()
    return model


def load_policy(
    base_path: str | Path, model_cfg: ModelConfig, sft_adapter: Path | None = None
) -> PreTrainedModel:
    """The RL starting point: the base model with the SFT adapter merged in (a plain model, ready for a new
    LoRA).
    """
    return load_model(base_path, model_cfg, adapter=sft_adapter, merge=True)


def lora_config(section: LoraSection):
    """peft LoraConfig for a causal LM from the profile's lora section."""
    from peft import LoraConfig

    return LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules=list(section.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
