"""The GRPO entry point each rank runs under `torchrun` / `accelerate launch` (the RL stage starts it with
rl.launcher; see tasks/train/launch.py). Each rank builds the same reward engine from the job: the rules, and
the teacher when its key is in the environment (judgements are claimed in the shared cache, so no rank pays
for one twice).

    python -m torch.distributed.run --nproc_per_node 2 -m tasks.train.grpo_entry models/rl/launch_job.json
"""

from __future__ import annotations

from pathlib import Path

from tasks.core.config import ModelConfig, RewardConfig, RLConfig, TeacherConfig
from tasks.core.io import write_json
from tasks.reward.engine import RewardEngine
from tasks.reward.rules import SafetyRules
from tasks.reward.teacher import Teacher
from tasks.train.grpo import train_grpo
from tasks.train.launch import is_main_process, leave_process_group, read_job


def main(argv: list[str] | None = None) -> None:
    job = read_job(argv)
    teacher = Teacher.from_env(TeacherConfig.model_validate(job["teacher"]), Path(job["teacher_cache"]))
    engine = RewardEngine(
        SafetyRules.from_yaml(Path(job["rules_path"])), RewardConfig.model_validate(job["reward"]), teacher
    )
    try:
        summary = train_grpo(
            Path(job["prompts_path"]),
            Path(job["base_path"]),
            Path(job["sft_adapter"]) if job.get("sft_adapter") else None,
            Path(job["out_dir"]),
            RLConfig.model_validate(job["rl"]),
            ModelConfig.model_validate(job["model"]),
            engine.as_reward_fn(),
            engine.breakdown_fn(),
            metadata={"teacher_enabled": teacher is not None},
        )
    finally:
        if teacher is not None:
            teacher.close()
    if is_main_process():
        write_json(Path(job["summary_file"]), summary)
    leave_process_group()


if __name__ == "__main__":
    main()
