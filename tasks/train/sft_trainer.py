"""LoRA supervised fine-tuning with TRL's SFTTrainer on the processed train split, loss on the assistant turn
only.

Rows become Qwen3 conversations whose assistant turn is `<think>\\n{think}\\n</think>\\n\\n{answer}`.
With TRL 1.x, `assistant_only_loss=True` on a `messages` dataset masks everything but the assistant
turn: TRL recognises Qwen3's shipped chat template (which the tiny tokenizer carries too) and swaps in
its `{% generation %}`-marked training copy, whose mask also covers the closing `<|im_end|>`, so the
model learns to stop. For a template TRL cannot patch, the rows go in as prompt/completion pairs with
`completion_only_loss=True`, which masks the prompt the same way without needing markers.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

from tasks.core.config import ModelConfig, SFTConfig
from tasks.core.io import read_jsonl, write_json
from tasks.model.chat import format_sft_example
from tasks.model.loading import load_model, load_tokenizer, lora_config, resolve_dtype

log = logging.getLogger(__name__)


ADAPTER_DIR = "final_lora"


def loss_mode(tokenizer) -> str:
    """`assistant_only` when TRL can mask assistant turns with this template, else `completion_only`."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return "assistant_only"
    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        return "completion_only"
    return "assistant_only"


def sft_rows(rows: list[dict[str, Any]], tokenizer, mode: str) -> list[dict[str, Any]]:
    """Processed rows as TRL examples: `messages` (assistant_only) or `prompt`/`completion`
    (completion_only)."""
    examples = []
    for row in rows:
        messages = format_sft_example(tokenizer, row["question"], row.get("think") or "", row["answer"])[
            "messages"
        ]
        examples.append(
            {"messages": messages}
            if mode == "assistant_only"
            else {"prompt": messages[:1], "completion": messages[1:]}
        )
    return examples


def build_trainer(
    train_rows,
    dev_rows,
    base_path,
    out_dir: Path,
    sft_cfg: SFTConfig,
    model_cfg: ModelConfig,
    callbacks: list | None = None,
):
    """An SFTTrainer with a fresh LoRA on the base model; returns (trainer, tokenizer, loss mode).

    Checkpoints (every sft.save_steps, the last two kept) and TensorBoard runs go to out_dir/trainer/."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    tokenizer = load_tokenizer(base_path)
    model = load_model(base_path, model_cfg)
    mode = loss_mode(tokenizer)
    bf16 = resolve_dtype(model_cfg.dtype) == torch.bfloat16 and torch.cuda.is_available()
    args = TRLSFTConfig(
        output_dir=str(out_dir / "trainer"),
        per_device_train_batch_size=sft_cfg.batch_size,
        per_device_eval_batch_size=sft_cfg.batch_size,
        gradient_accumulation_steps=sft_cfg.grad_accum,
        learning_rate=sft_cfg.learning_rate,
        num_train_epochs=sft_cfg.epochs,
        max_steps=sft_cfg.max_steps,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        logging_steps=max(1, min(10, sft_cfg.eval_steps // 5)),
        eval_strategy="steps" if dev_rows else "no",
        eval_steps=sft_cfg.eval_steps,
        save_strategy="steps",
        save_steps=sft_cfg.save_steps,
        save_total_limit=2,
        max_length=model_cfg.max_seq_len,
        assistant_only_loss=mode == "assistant_only",
        completion_only_loss=mode == "completion_only",
        activation_checkpointing=model_cfg.gradient_checkpointing,
        bf16=bf16,
        seed=sft_cfg.seed,
        dataloader_pin_memory=torch.cuda.is_available(),
        report_to=report_targets(sft_cfg.report_to),
        disable_tqdm=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(sft_rows(train_rows, tokenizer, mode)),
        eval_dataset=Dataset.from_list(sft_rows(dev_rows, tokenizer, mode)) if dev_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(sft_cfg.lora),
        callbacks=callbacks,
    )
    return trainer, tokenizer, mode


def train_sft(
    train_path: Path,
    dev_path: Path,
    base_path: str | Path,
    out_dir: Path,
    sft_cfg: SFTConfig,
    model_cfg: ModelConfig,
    resume: bool = False,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter; write out_dir/final_lora, loss_curve.csv/.png and metadata.json; return a
    summary. resume: continue from the newest checkpoint under out_dir/trainer/ (else start over)."""
    train_rows = read_jsonl(train_path)[: sft_cfg.max_train_rows]
    dev_rows = read_jsonl(dev_path) if Path(dev_path).is_file() else []
    if not train_rows:
        raise ValueError(f"{train_path}: no training rows; run the data flow first (medsafe data)")
    out_dir = Path(out_dir)
    started = time.time()
    checkpoint = _checkpoint_to_resume(out_dir / "trainer", resume)
    trainer, tokenizer, mode = build_trainer(
        train_rows, dev_rows, base_path, out_dir, sft_cfg, model_cfg, callbacks
    )
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final_eval = trainer.evaluate()["eval_loss"] if dev_rows else None
    adapter = out_dir / ADAPTER_DIR
    writer = trainer.is_world_process_zero()  # across processes (tasks/train/launch.py) rank 0 writes
    if writer:
        trainer.model.save_pretrained(str(adapter))
        tokenizer.save_pretrained(str(adapter))
        _remove_if_empty(out_dir / "trainer")
    curve = loss_curve(trainer.state.log_history)
    if writer:
        write_loss_curve(curve, out_dir / "loss_curve.csv", out_dir / "loss_curve.png")
    train_losses = [r["train_loss"] for r in curve if r["train_loss"] is not None]
    summary = {
        "adapter": str(adapter),
        "base_model": str(base_path),
        "loss_mode": mode,
        "train_rows": len(train_rows),
        "dev_rows": len(dev_rows),
        "steps": trainer.state.global_step,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "first_train_loss": train_losses[0] if train_losses else None,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_eval_loss": final_eval,
        "seconds": round(time.time() - started, 1),
    }
    summary["processes"] = trainer.args.world_size
    if writer:
        write_json(
            out_dir / "metadata.json",
            {
                **summary,
                "sft": sft_cfg.model_dump(),
                "model": model_cfg.model_dump(),
                "versions": _versions(),
            },
        )
    log.info(
        "SFT done: %d steps, train loss %s -> %s, eval loss %s",
        summary["steps"],
        summary["first_train_loss"],
        summary["final_train_loss"],
        final_eval,
    )
    return summary


def loss_curve(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-step train and eval loss from a Trainer's log history (None where a step has only one of them)."""
    by_step: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        row = by_step.setdefault(
            entry.get("step", 0), {"step": entry.get("step", 0), "train_loss": None, "eval_loss": None}
        )
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
        if "eval_loss" in entry:
            row["eval_loss"] = entry["eval_loss"]
    return [
        r for _, r in sorted(by_step.items()) if r["train_loss"] is not None or r["eval_loss"] is not None
    ]


def write_loss_curve(curve: list[dict[str, Any]], csv_path: Path, png_path: Path) -> None:
    """The loss curve as CSV and as a PNG plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "train_loss", "eval_loss"])
        writer.writeheader()
        writer.writerows(curve)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train_loss", "train"), ("eval_loss", "eval (dev)")):
        points = [(r["step"], r[key]) for r in curve if r[key] is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o" if len(points) < 30 else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("LoRA SFT loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def report_targets(report_to: list[str]) -> list[str] | str:
    """A Trainer's report_to from a profile's list: "none" when empty, tensorboard dropped (with a warning)
    when it is not installed rather than failing the run."""
    import importlib.util

    targets = [r for r in report_to if r != "none"]
    if "tensorboard" in targets and importlib.util.find_spec("tensorboard") is None:
        log.warning("report_to has tensorboard but it is not installed (pip install tensorboard); skipped")
        targets.remove("tensorboard")
    return targets or "none"


def _checkpoint_to_resume(trainer_dir: Path, resume: bool) -> Path | None:
    """The newest checkpoint-N when resuming; otherwise old checkpoints go, so a fresh run never mixes
    with them."""
    import shutil

    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(trainer_dir)) if trainer_dir.is_dir() else None
    if resume:
        if last is None:
            log.warning("--resume: no checkpoint under %s; training from the start", trainer_dir)
        return Path(last) if last else None
    for old in trainer_dir.glob("checkpoint-*") if trainer_dir.is_dir() else []:
        shutil.rmtree(old)
    return None


def _remove_if_empty(path: Path) -> None:
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
    }
