"""Predictions: answer the evaluation prompt sets with a model (a merged folder or a LoRA adapter), and write
them with a sidecar of the decoding settings. The model code is imported inside generation only.

    medsafe eval --model models/rl/final_model --name rl
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from tasks.core.config import EvalConfig, ModelConfig, Profile
from tasks.core.errors import MedsafeError
from tasks.core.io import file_hash, iter_jsonl, write_json, write_jsonl
from tasks.core.stage import stage
from tasks.core.text import detect_lang
from tasks.core.workdir import Workdir

log = logging.getLogger(__name__)


UNCAPPED_SETS = frozenset(
    {"red_team"}
)  # the red-team set is small and the point of the exercise: never capped


def load_prompt_rows(prompt_files: list[Path], max_rows: int | None) -> list[dict[str, Any]]:
    """Prompt rows from processed JSONL files, tagged with their set (file stem); non-red-team sets capped by
    id order.
    """
    rows: list[dict[str, Any]] = []
    for path in map(Path, prompt_files):
        if not path.is_file():
            raise MedsafeError(
                f"prompt file {path} does not exist; run `medsafe data` first or pass an existing --test-file"
            )
        items = []
        for line_no, obj in iter_jsonl(path):
            if not isinstance(obj.get("question"), str) or not obj["question"].strip() or not obj.get("id"):
                raise MedsafeError(
                    f"{path}:{line_no}: a prompt row needs a non-empty "
                    "'id' and 'question'; fix or drop the line"
                )
            items.append(obj)
        if max_rows is not None and path.stem not in UNCAPPED_SETS:
            items = sorted(items, key=lambda r: str(r["id"]))[:max_rows]
        rows += [_prompt_row(r, path.stem) for r in items]
    return rows


def _prompt_row(row: dict[str, Any], set_name: str) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "set": set_name,
        "question": row["question"],
        "lang": row.get("lang") or detect_lang(row["question"]),
        "risk_level": row.get("risk_level"),
        "safety_categories": list(row.get("safety_categories") or []),
    }


def resolve_weights(model_path: Path, base_path: Path | None) -> tuple[Path, Path | None]:
    """(folder with full weights, LoRA adapter folder or None) for a merged model or an adapter folder."""
    adapter_cfg = model_path / "adapter_config.json"
    if not adapter_cfg.is_file():
        if not (model_path / "config.json").is_file():
            raise MedsafeError(
                f"{model_path} holds neither a model (config.json) nor a LoRA adapter (adapter_config.json); "
                "point --model at models/lora/final_lora or models/rl/final_model"
            )
        return model_path, None
    recorded = json.loads(adapter_cfg.read_text(encoding="utf-8")).get("base_model_name_or_path")
    base = Path(base_path) if base_path else Path(recorded) if recorded else None
    if base is None or not (base / "config.json").is_file():
        raise MedsafeError(
            f"adapter {model_path} was trained on {recorded!r}, which is not a local model folder; "
            "pass the base model folder (base_path / MEDSAFE_BASE_MODEL)"
        )
    return base, model_path


def decoding_settings(eval_cfg: EvalConfig) -> dict[str, Any]:
    """The decoding recorded beside the predictions; top_p 1.0 and seed 0 stand in while EvalConfig has no
    such fields.
    """
    return {
        "max_new_tokens": eval_cfg.max_new_tokens,
        "temperature": eval_cfg.temperature,
        "top_p": getattr(eval_cfg, "top_p", 1.0),
        "batch_size": eval_cfg.batch_size,
        "seed": getattr(eval_cfg, "seed", 0),
    }


def meta_path(predictions_path: Path) -> Path:
    return predictions_path.with_name(predictions_path.stem + ".meta.json")


def generate_predictions(
    model_path: Path,
    prompt_files: list[Path],
    out_path: Path,
    *,
    model_cfg: ModelConfig,
    eval_cfg: EvalConfig,
    base_path: Path | None = None,
) -> Path:
    """Answer every prompt with the model (merged folder or LoRA adapter); write predictions JSONL and a
    sidecar of settings.
    """
    from tasks.model.chat import build_chat_prompt
    from tasks.model.generate import generate
    from tasks.model.loading import load_model, load_tokenizer

    model_path, out_path = Path(model_path), Path(out_path)
    rows = load_prompt_rows(prompt_files, eval_cfg.max_test_rows)
    weights, adapter = resolve_weights(model_path, Path(base_path) if base_path else None)
    tokenizer = load_tokenizer(model_path if (model_path / "tokenizer_config.json").is_file() else weights)
    model = load_model(weights, model_cfg, adapter=adapter, merge=adapter is not None)
    decoding = decoding_settings(eval_cfg)
    prompts = [build_chat_prompt(tokenizer, r["question"]) for r in rows]
    log.info("generating %d answers with %s (%s)", len(rows), model_path, decoding)
    responses = generate(model, tokenizer, prompts, **decoding)
    write_jsonl(out_path, [{**r, "response": text} for r, text in zip(rows, responses, strict=True)])
    write_json(
        meta_path(out_path),
        {
            "model_path": str(model_path),
            "base_path": str(weights),
            "adapter": adapter is not None,
            "dtype": model_cfg.dtype,
            "decoding": decoding,
            "max_test_rows": eval_cfg.max_test_rows,
            "rows": len(rows),
            "prompt_files": [
                {"path": str(p), "set": Path(p).stem, "content_hash": file_hash(p)} for p in prompt_files
            ],
        },
    )
    return out_path


def _adapter_base(model_path: Path, model_cfg: ModelConfig, workdir: Workdir) -> Path | None:
    """The base for an adapter whose recorded base is not a local folder: the profile's base model."""
    cfg = model_path / "adapter_config.json"
    if not cfg.is_file():
        return None
    recorded = json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
    if (Path(recorded) / "config.json").is_file():
        return Path(recorded)
    from tasks.model.loading import resolve_base_model

    return Path(resolve_base_model(model_cfg, workdir))


@stage
def generate_task(
    model_path: Path, prompt_files: list[Path], workdir: Workdir, profile: Profile, name: str
) -> dict[str, Any]:
    """Prefect stage: predictions of one model on the prompt sets, under reports/eval/<name>/."""
    logger = get_run_logger()
    out = workdir.eval_reports / name / "predictions.jsonl"
    generate_predictions(
        Path(model_path),
        [Path(p) for p in prompt_files],
        out,
        model_cfg=profile.model,
        eval_cfg=profile.eval,
        base_path=_adapter_base(Path(model_path), profile.model, workdir),
    )
    rows = sum(1 for _ in iter_jsonl(out))
    logger.info("eval %s: %d predictions from %s -> %s", name, rows, model_path, out)
    return {"name": name, "rows": rows, "predictions": str(out), "meta": str(meta_path(out))}
