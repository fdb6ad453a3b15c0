"""GRPO with TRL's GRPOTrainer: a fresh LoRA on the SFT-merged model, rewarded by the project's safety reward.

The alternative to tasks/ppo.py (rl.algorithm: grpo); same inputs, same files out: checkpoints/training.log,
checkpoints/rewards.csv (PPO's columns, value_loss blank since GRPO has no critic) and a merged final_model.
Like PPO it resumes from its newest checkpoints/checkpoint-N, and writes TensorBoard runs under
checkpoints/runs/ (rl.report_to).

    summary = train_grpo(Path("data/rl/training_prompts.jsonl"), Path("models/base/tiny"),
                         Path("models/lora/final_lora"), Path("models/rl"), profile.rl, profile.model,
                         reward_fn=engine.as_reward_fn())
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tasks.core.config import ModelConfig, RLConfig
from tasks.model.chat import build_chat_prompt
from tasks.model.loading import device, load_policy, load_tokenizer, lora_config, resolve_dtype
from tasks.train.rl_io import (
    CSV_COLUMNS,
    MONITOR_COLUMNS,
    BreakdownFn,
    RewardFn,
    append_row,
    breakdown_means,
    drift_warnings,
    final_metadata,
    keep_rows,
    load_prompts,
    read_rows,
    save_merged,
)
from tasks.train.sft_trainer import report_targets

log = logging.getLogger(__name__)

META_KEYS = ("id", "question", "risk_level", "safety_categories", "safety_concern", "origin")


class SafetyReward:
    """TRL reward function (prompts, completions, **columns) over the project's (questions, responses, metas)
    callables.

    With a breakdown callable the totals come from its rows (one scoring pass) and the rule/teacher means and
    the violation count are logged as GRPO metrics next to TRL's own reward statistics.
    """

    __name__ = "safety_reward"  # TRL names reward columns after the callable

    def __init__(self, reward_fn: RewardFn | None, breakdown_fn: BreakdownFn | None = None) -> None:
        if reward_fn is None and breakdown_fn is None:
            raise ValueError("GRPO needs a reward_fn or a breakdown_fn")
        self.reward_fn, self.breakdown_fn = reward_fn, breakdown_fn

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float]:
        metas = [{k: columns[k][i] for k in META_KEYS if k in columns} for i in range(len(completions))]
        questions = [m.get("question", p) for m, p in zip(metas, prompts, strict=True)]
        if self.breakdown_fn is None:
            return [float(r) for r in self.reward_fn(questions, completions, metas)]
        rows = self.breakdown_fn(questions, completions, metas)
        if log_metric := columns.get("log_metric"):
            for name, value in breakdown_means(rows).items():
                if value is not None:
                    log_metric(name, value)
        return [float(r["total"]) for r in rows]


class RewardsLog(TrainerCallback):
    """Each GRPO log as a rewards.csv row (PPO's columns) and a line of training.log."""

    def __init__(self, csv_path: Path, log_path: Path, kl_coef: float) -> None:
        self.csv_path, self.log_path, self.kl_coef = csv_path, log_path, kl_coef

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        if not logs or "reward" not in logs or not state.is_world_process_zero:  # across processes: rank 0
            return
        row = {
            "step": state.global_step,
            "reward_mean": logs["reward"],
            "reward_std": logs.get("reward_std"),
            "rules_mean": logs.get("rules_mean"),
            "teacher_mean": logs.get("teacher_mean"),
            "violations": logs.get("violations"),
            # TRL's `kl` is the token-weighted mean k3 estimate: nats per token. Times the mean length it is
            # the mean per response (sum of KL / completions), PPO's second unit.
            "kl_per_token": logs.get("kl"),
            "kl_per_response": _product(logs.get("kl"), logs.get("completions/mean_length")),
            "kl_coef": self.kl_coef,
            "entropy": logs.get("entropy"),
            "policy_loss": logs.get("loss"),
            "value_loss": None,
            "clip_frac": logs.get("clip_ratio/region_mean"),
            "response_len": logs.get("completions/mean_length"),
            **{k: logs.get(k) for k in MONITOR_COLUMNS},  # the reward-hacking monitor (breakdown_means)
        }
        first = next(iter(read_rows(self.csv_path)), None)
        append_row(self.csv_path, {k: ("" if v is None else v) for k, v in row.items() if k in CSV_COLUMNS})
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": state.global_step, **logs}, default=str) + "\n")
            for warning in drift_warnings(row, first or row):
                fh.write(json.dumps({"step": state.global_step, "warning": warning}) + "\n")


def _product(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a * b


def grpo_dataset(rows: list[dict], tokenizer):
    """RL prompt rows as a GRPO dataset: the templated prompt plus the columns the reward reads."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": build_chat_prompt(tokenizer, r["question"]),
                "id": str(r.get("id", i)),
                "question": r["question"],
                "risk_level": r.get("risk_level"),
                "safety_categories": list(r.get("safety_categories") or []),
                "safety_concern": r.get("safety_concern"),
                "origin": r.get("origin"),
            }
            for i, r in enumerate(rows)
        ]
    )


def grpo_args(out_dir: Path, rl_cfg: RLConfig, model_cfg: ModelConfig):
    """GRPOConfig from the profile: rl.batch_size prompts x grpo_num_generations completions per step."""
    import torch
    from trl import GRPOConfig

    use_vllm = rl_cfg.use_vllm and device().type == "cuda"
    if rl_cfg.use_vllm and not use_vllm:
        log.warning("rl.use_vllm is set but there is no GPU; generating with transformers instead")
    bf16 = device().type == "cuda" and resolve_dtype(model_cfg.dtype) == torch.bfloat16
    return GRPOConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=rl_cfg.batch_size * rl_cfg.grpo_num_generations,
        gradient_accumulation_steps=1,
        num_generations=rl_cfg.grpo_num_generations,
        max_completion_length=rl_cfg.max_new_tokens,
        temperature=rl_cfg.temperature,
        top_p=rl_cfg.top_p,
        learning_rate=rl_cfg.learning_rate,
        beta=rl_cfg.init_kl_coef,
        epsilon=rl_cfg.cliprange,
        max_grad_norm=rl_cfg.max_grad_norm,
        num_train_epochs=1,
        max_steps=rl_cfg.steps if rl_cfg.steps is not None else -1,
        logging_steps=1,
        save_strategy="steps",
        save_steps=rl_cfg.save_every,
        save_total_limit=2,
        use_vllm=use_vllm,
        vllm_mode="colocate",
        activation_checkpointing=model_cfg.gradient_checkpointing,
        bf16=bf16,
        seed=rl_cfg.seed,
        dataloader_pin_memory=device().type == "cuda",
        report_to=report_targets(rl_cfg.report_to),
        disable_tqdm=False,
    )


def train_grpo(
    prompts_path: Path,
    base_path: Path,
    sft_adapter: Path | None,
    out_dir: Path,
    rl_cfg: RLConfig,
    model_cfg: ModelConfig,
    reward_fn: RewardFn | None,
    breakdown_fn: BreakdownFn | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """GRPO LoRA on base (+ merged SFT adapter); writes out_dir/checkpoints/{training.log,rewards.csv} and
    out_dir/final_model.
    """
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOTrainer

    # Imported here, not at the top: tasks.train.sft imports Prefect, which the GPU benchmark machine lacks.

    rows = load_prompts(Path(prompts_path), rl_cfg.prompts)
    ckpt_dir, final_dir = Path(out_dir) / "checkpoints", Path(out_dir) / "final_model"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    csv_path, log_path = ckpt_dir / "rewards.csv", ckpt_dir / "training.log"
    checkpoint = get_last_checkpoint(str(ckpt_dir))
    writer = int(os.environ.get("RANK", "0")) == 0  # across processes (tasks/train/launch.py) rank 0 writes
    if checkpoint is None:
        if writer:
            csv_path.unlink(missing_ok=True)  # a fresh run starts its curve over
    elif writer:
        step = int(Path(checkpoint).name.split("-")[-1])
        log.warning("resuming GRPO from %s (delete %s to start over)", checkpoint, ckpt_dir)
        keep_rows(csv_path, upto_step=step)  # steps logged after the checkpoint are redone
    tokenizer = load_tokenizer(base_path)
    model = load_policy(base_path, model_cfg, sft_adapter)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=SafetyReward(reward_fn, breakdown_fn),
        args=grpo_args(ckpt_dir, rl_cfg, model_cfg),
        train_dataset=grpo_dataset(rows, tokenizer),
        processing_class=tokenizer,
        peft_config=lora_config(rl_cfg.lora),
        callbacks=[RewardsLog(csv_path, log_path, rl_cfg.init_kl_coef)],
    )
    if writer:
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write(
                json.dumps(
                    {
                        "event": "start",
                        "algorithm": "grpo",
                        "prompts": len(rows),
                        "base": str(base_path),
                        "sft_adapter": str(sft_adapter) if sft_adapter else None,
                        "resumed_from": checkpoint,
                    }
                )
                + "\n"
            )
    trainer.train(resume_from_checkpoint=checkpoint)
    if writer:
        save_merged(
            trainer.accelerator.unwrap_model(trainer.model),
            tokenizer,
            final_dir,
            final_metadata(
                "grpo",
                trainer.state.global_step,
                len(rows),
                base_path,
                sft_adapter,
                rl_cfg,
                model_cfg,
                **(metadata or {}),
            ),
        )
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    return {
        "steps": trainer.state.global_step,
        "processes": trainer.args.world_size,
        "resumed_from": checkpoint,
        "final_model": str(final_dir),
        "rewards_csv": str(csv_path),
        "training_log": str(log_path),
        "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None,
    }
