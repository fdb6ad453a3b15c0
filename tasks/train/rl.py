"""The RL stage: build the reward engine (rules ⊕ teacher) and run PPO (ours) or GRPO (TRL's) on the RL
prompts.

The trainers take plain callables; this module owns what they are scored by, so the cache key of the stage
is data (rules file, reward and teacher settings, whether the teacher is on), never a function object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from tasks.core.config import ModelConfig, RewardConfig, RLConfig, TeacherConfig
from tasks.core.errors import StageFailed
from tasks.core.io import write_json
from tasks.core.stage import read_secret_block, stage
from tasks.core.workdir import Workdir
from tasks.model.export import card_for_final_model
from tasks.model.tiny import one_thread
from tasks.reward.engine import RewardEngine
from tasks.reward.rules import SafetyRules
from tasks.reward.teacher import Teacher
from tasks.train.launch import Launch, launch


def build_reward_engine(
    rules_path: Path, reward_cfg: RewardConfig, teacher_cfg: TeacherConfig, workdir: Workdir
) -> RewardEngine:
    """Rules from YAML plus the teacher when it is on (None otherwise, logged loudly by Teacher.from_env)."""
    teacher = Teacher.from_env(teacher_cfg, workdir.teacher_cache, read_secret_block)
    return RewardEngine(SafetyRules.from_yaml(rules_path), reward_cfg, teacher)


def launch_grpo(
    prompts_path: Path,
    base_path: Path,
    sft_adapter: Path | None,
    rules_path: Path,
    rl_cfg: RLConfig,
    model_cfg: ModelConfig,
    reward_cfg: RewardConfig,
    teacher_cfg: TeacherConfig,
    workdir: Workdir,
) -> dict[str, Any]:
    """GRPO with rl.num_processes ranks under rl.launcher (tasks/train/grpo_entry.py), logged here."""
    job = {
        "prompts_path": str(prompts_path),
        "base_path": str(base_path),
        "sft_adapter": str(sft_adapter) if sft_adapter else None,
        "out_dir": str(workdir.rl_checkpoints.parent),
        "rules_path": str(rules_path),
        "teacher_cache": str(workdir.teacher_cache),
        "rl": rl_cfg.model_dump(mode="json"),
        "model": model_cfg.model_dump(mode="json"),
        "reward": reward_cfg.model_dump(mode="json"),
        "teacher": teacher_cfg.model_dump(mode="json"),
    }
    how = Launch(rl_cfg.launcher, rl_cfg.num_processes, rl_cfg.launch_config)
    return launch("tasks.train.grpo_entry", job, how, get_run_logger(), workdir.rl_checkpoints)


def record_teacher(metadata_path: Path, teacher: dict[str, Any]) -> None:
    """Record where the judgements went (endpoint, calls, masking; never the key) in the metadata."""
    if metadata_path.is_file():
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        write_json(metadata_path, {**metadata, "teacher": teacher})


@stage
def rl_task(
    prompts_path: Path,
    base_path: Path,
    sft_adapter: Path | None,
    rules_path: Path,
    rl_cfg: RLConfig,
    model_cfg: ModelConfig,
    reward_cfg: RewardConfig,
    teacher_cfg: TeacherConfig,
    teacher_on: bool,
    workdir: Workdir,
) -> dict[str, Any]:
    """PPO or GRPO (rl_cfg.algorithm) into <workdir>/models/rl, from base_path (+ sft_adapter merged in when
    given); teacher_on is part of the cache key."""
    logger = get_run_logger()
    engine = build_reward_engine(rules_path, reward_cfg, teacher_cfg, workdir)
    teacher_enabled = engine.teacher is not None
    if not teacher_enabled:
        logger.warning(
            "teacher OFF for this RL run: reward = rules only (teacher weight 0); recorded in metadata"
        )
    if rl_cfg.algorithm == "ppo":
        from tasks.train.ppo import train_ppo as train
    else:
        from tasks.train.grpo import train_grpo as train
    try:
        if rl_cfg.launcher != "none":  # GRPO across processes (the config refuses it for PPO)
            summary = launch_grpo(
                prompts_path,
                base_path,
                sft_adapter,
                rules_path,
                rl_cfg,
                model_cfg,
                reward_cfg,
                teacher_cfg,
                workdir,
            )
        else:
            with one_thread(model_cfg.tiny):  # the tiny model trains fastest on one thread
                summary = train(
                    prompts_path,
                    base_path,
                    sft_adapter,
                    workdir.rl_checkpoints.parent,
                    rl_cfg,
                    model_cfg,
                    engine.as_reward_fn(),
                    engine.breakdown_fn(),
                    metadata={"teacher_enabled": teacher_enabled},
                )
    except (OSError, ValueError) as exc:
        hint = "fix the input named above and re-run" + (
            "; PPO resumes from its last checkpoint" if rl_cfg.algorithm == "ppo" else ""
        )
        raise StageFailed("rl", exc, hint) from exc
    if engine.teacher is not None:
        engine.teacher.cache.export_jsonl(workdir.rl / "teacher_judgements.jsonl")
        record_teacher(workdir.rl_final / "metadata.json", engine.teacher.describe())
    # The card travels with the model; `medsafe export` writes one with the evaluation table. (Rewriting this
    # one after evaluation would change the model folder's content, and so every cache key that reads it.)
    card_for_final_model(workdir)
    logger.info(
        "%s finished: %s",
        rl_cfg.algorithm.upper(),
        {k: summary.get(k) for k in ("steps", "reward_first", "reward_last")},
    )
    return {**summary, "algorithm": rl_cfg.algorithm, "teacher_enabled": teacher_enabled}
