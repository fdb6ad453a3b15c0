"""Take a model away: a plain Hugging Face folder (merged safetensors, tokenizer, the chat template with
its <think> tags) that `transformers` loads without medsafe, and a model card README.md with the Hub's
YAML metadata, what the model is for and not for, how it was trained, and how it was evaluated.

    export_model(Workdir.at("runs/tiny"), "rl", Path("exported/medsafe-rl"))
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from string import Template
from typing import Any

from tasks.core.errors import MedsafeError
from tasks.core.io import write_text
from tasks.core.workdir import ASSETS, Workdir

log = logging.getLogger(__name__)

CARD_TAGS = ["medical", "safety", "qwen3", "lora", "rlhf", "medsafe"]


class ExportError(MedsafeError, ValueError):
    """The model to export cannot be found or read."""


def resolve_source(workdir: Workdir, model: str) -> tuple[Path, Path | None]:
    """(model folder, adapter or None) for `rl`, `sft` or a path to a merged model or a LoRA adapter."""
    if model == "rl":
        path = workdir.rl_final
        hint = "run `medsafe rl` first (or pass --model PATH)"
    elif model == "sft":
        path = workdir.sft_adapter
        hint = "run `medsafe sft` first (or pass --model PATH)"
    else:
        path, hint = Path(model).expanduser(), "pass a merged model folder or a LoRA adapter folder"
    if (path / "adapter_config.json").is_file():
        config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        base = Path(config.get("base_model_name_or_path") or "")
        if not (base / "config.json").is_file():
            raise ExportError(
                f"the adapter {path} names base model {str(base)!r}, which is not a local folder; "
                "export needs the base weights on disk to merge into"
            )
        return base, path
    if (path / "config.json").is_file():
        return path, None
    raise ExportError(f"no model at {path}: {hint}")


def export_model(
    workdir: Workdir, model: str, out: Path, model_cfg: Any | None = None, name: str | None = None
) -> dict[str, Any]:
    """Write the merged model, tokenizer and model card to `out` (replacing it); returns what was written."""
    from tasks.core.config import ModelConfig
    from tasks.model.loading import load_model, load_tokenizer

    base, adapter = resolve_source(workdir, model)
    cfg = model_cfg or ModelConfig(dtype="float32")
    merged = load_model(base, cfg, adapter=adapter, merge=adapter is not None)
    has_tokenizer = adapter is not None and (adapter / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(adapter if has_tokenizer else base)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    source = adapter or base
    metadata = _read_json(source / "metadata.json") or _read_json(base / "metadata.json") or {}
    write_model_card(out, workdir, metadata, _base_model_name(metadata, base, adapter), name or out.name)
    if metadata:
        write_text(out / "medsafe_metadata.json", json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    weights = sorted(p.name for p in out.glob("*.safetensors"))
    log.info("exported %s -> %s (%s)", source, out, ", ".join(weights))
    return {"model": str(source), "out": str(out), "weights": weights, "card": str(out / "README.md")}


def write_model_card(
    folder: Path, workdir: Workdir, training: dict[str, Any], base_model: str, name: str
) -> Path:
    """folder/README.md: the card of a model trained in `workdir` (its data gate and newest evaluation)."""
    card = model_card(
        name=name,
        base_model=base_model,
        training=training,
        data=_read_json(workdir.data_quality_reports / "summary.json"),
        gate=_read_json(workdir.gate_result),
        evaluation=find_evaluation_table(workdir),
    )
    write_text(Path(folder) / "README.md", card)
    return Path(folder) / "README.md"


def card_for_final_model(workdir: Workdir) -> Path | None:
    """Write the RL final model's card (at the end of training); None when there is no final model."""
    final = workdir.rl_final
    if not (final / "config.json").is_file():
        return None
    metadata = _read_json(final / "metadata.json") or {}
    return write_model_card(final, workdir, metadata, _base_model_name(metadata, final, None), "medsafe-rl")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _base_model_name(metadata: dict[str, Any], base: Path, adapter: Path | None) -> str:
    named = (metadata.get("model") or {}).get("base")
    if named and not Path(named).is_absolute() and named != "tiny":
        return str(named)
    return "Qwen/Qwen3-0.6B" if "tiny" in str(base) else str(named or base.name)


def find_evaluation_table(workdir: Workdir) -> str | None:
    """The newest side-by-side evaluation report (a reports/eval/ folder with comparison.json), else the
    newest single-model report."""
    reports = list((workdir.root / "reports" / "eval").glob("*/report.md"))
    reports.sort(key=lambda p: ((p.parent / "comparison.json").is_file(), p.stat().st_mtime), reverse=True)
    return reports[0].read_text(encoding="utf-8") if reports else None


def _front_matter(base_model: str) -> str:
    lines = [
        "---",
        f"base_model: {base_model}",
        "license: apache-2.0",
        "language:",
        "- zh",
        "- en",
        "datasets:",
        "- FreedomIntelligence/medical-o1-reasoning-SFT",
        "pipeline_tag: text-generation",
        "library_name: transformers",
        "tags:",
        *[f"- {tag}" for tag in CARD_TAGS],
        "---",
    ]
    return "\n".join(lines)


def model_card(
    name: str,
    base_model: str,
    training: dict[str, Any],
    data: dict[str, Any] | None,
    gate: dict[str, Any] | None,
    evaluation: str | None,
) -> str:
    """The model card: Hub metadata, then intended use, data, training, evaluation, failure modes."""
    config = training.get("config") or {}
    settings = {
        "algorithm": training.get("algorithm"),
        "steps": training.get("steps"),
        "RL prompts": training.get("prompts"),
        "learning rate": config.get("learning_rate"),
        "batch size": config.get("batch_size"),
        "target KL": config.get("target_kl"),
        "PPO epochs": config.get("ppo_epochs"),
        "teacher": training.get("teacher_enabled", training.get("teacher")),
    }
    settings_rows = "\n".join(f"| {k} | {v} |" for k, v in settings.items() if v is not None)
    gate_line = (
        f"The data passed medsafe's Great Expectations quality gate: {gate.get('success')}."
        if gate
        else "No data-quality gate result was found beside this model."
    )
    evaluation_text = (
        evaluation.strip()
        if evaluation
        else "No evaluation report was found in the working directory: run `medsafe eval` before trusting it."
    )
    template = Template((ASSETS.root / "model_card" / "README.template.md").read_text(encoding="utf-8"))
    return template.substitute(
        front_matter=_front_matter(base_model),
        name=name,
        base_model=base_model,
        gate_line=gate_line,
        data_json=json.dumps(data, indent=2, ensure_ascii=False)[:3000] if data else "{}",
        settings_table="| setting | value |\n|---|---|\n" + settings_rows
        if settings_rows
        else "Not recorded.",
        evaluation=evaluation_text,
    )


def push_to_hub(folder: Path, repo_id: str) -> str:
    """Upload the folder to the Hugging Face Hub; one clear error when the hub cannot be reached."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    if offline:
        raise ExportError(f"not pushed to {repo_id}: HF_HUB_OFFLINE is set; the export is in {folder}")
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id)
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one actionable line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(
            f"not pushed to {repo_id}: the hub is not reachable or refused ({first[:200]}); "
            f"the export is in {folder} — push it from a machine with access (`hf upload {repo_id} {folder}`)"
        ) from None
    return f"https://huggingface.co/{repo_id}"
