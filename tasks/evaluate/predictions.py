"""Predictions: answer the held-out evaluation sets with a model (merged, or a LoRA adapter), and write
them (one row per prompt: id, set, question, response, ...) with a sidecar of the decoding settings, the sets
and the held-out check. The model code is imported inside generation only.

    medsafe eval --model rl=models/rl/final_model
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
from tasks.core.workdir import Workdir
from tasks.evaluate.eval_sets import EvalSet, check_held_out, load_eval_rows

log = logging.getLogger(__name__)


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
    sets: list[EvalSet],
    out_path: Path,
    *,
    model_cfg: ModelConfig,
    eval_cfg: EvalConfig,
    base_path: Path | None = None,
    training_prompts: Path | None = None,
) -> Path:
    """Answer every prompt of the sets with the model (merged folder or LoRA adapter); write predictions
    JSONL and a sidecar of settings. Prompts that are RL training prompts are refused before any loading."""
    from tasks.model.chat import build_chat_prompt
    from tasks.model.generate import generate
    from tasks.model.loading import load_model, load_tokenizer
    from tasks.model.tiny import one_thread

    model_path, out_path = Path(model_path), Path(out_path)
    rows = load_eval_rows(sets, eval_cfg.max_test_rows, eval_cfg.max_benchmark_rows)
    held_out = check_held_out(rows, training_prompts) if training_prompts else None
    weights, adapter = resolve_weights(model_path, Path(base_path) if base_path else None)
    tokenizer = load_tokenizer(model_path if (model_path / "tokenizer_config.json").is_file() else weights)
    model = load_model(weights, model_cfg, adapter=adapter, merge=adapter is not None)
    decoding = decoding_settings(eval_cfg)
    prompts = [build_chat_prompt(tokenizer, r["question"]) for r in rows]
    log.info("generating %d answers with %s (%s)", len(rows), model_path, decoding)
    # the tiny model answers ~15x faster on one thread on a shared 2-core box (tasks/model/tiny.py)
    with _progress(model, len(prompts), model_path.name), one_thread(model_cfg.tiny):
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
            "sets": set_summaries(sets, rows),
            "held_out": held_out,
        },
    )
    return out_path


def set_summaries(sets: list[EvalSet], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each set's name, file, content hash and rows evaluated: what the report lists."""
    return [
        {
            "name": es.name,
            "path": str(es.path),
            "rows": sum(r["set"] == es.name for r in rows),
            "content_hash": file_hash(es.path),
            **({"note": f"ids in {es.exclude.name} left out"} if es.exclude else {}),
        }
        for es in sets
    ]


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
    model_path: Path,
    sets: list[EvalSet],
    workdir: Workdir,
    profile: Profile,
    name: str,
    training_prompts: Path | None = None,
) -> dict[str, Any]:
    """Prefect stage: predictions of one model on the held-out sets, under reports/eval/<name>/."""
    logger = get_run_logger()
    out = workdir.eval_reports / name / "predictions.jsonl"
    generate_predictions(
        Path(model_path),
        sets,
        out,
        model_cfg=profile.model,
        eval_cfg=profile.eval,
        base_path=_adapter_base(Path(model_path), profile.model, workdir),
        training_prompts=training_prompts,
    )
    rows = sum(1 for _ in iter_jsonl(out))
    logger.info("eval %s: %d predictions from %s -> %s", name, rows, model_path, out)
    return {"name": name, "rows": rows, "predictions": str(out), "meta": str(meta_path(out))}


class _progress:  # noqa: N801 - used like open()
    """A progress bar (answers done / total, rate) over a model's generate() calls for the duration of a
    block; the answers themselves are untouched."""

    def __init__(self, model, total: int, name: str) -> None:  # noqa: ANN001 - a transformers model
        self.model, self.total, self.name = model, total, name

    def __enter__(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=f"eval {self.name}", unit="answer")
        inner = self.model.generate

        def counted(*args: Any, **kwargs: Any) -> Any:
            out = inner(*args, **kwargs)
            self.bar.update(int(out.shape[0]))
            return out

        self.model.generate = counted

    def __exit__(self, *exc: object) -> None:
        del self.model.generate  # the class's generate again
        self.bar.close()
