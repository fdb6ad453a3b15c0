"""The SFT entry point each rank runs under `torchrun` / `accelerate launch` (the SFT stage starts it; see
tasks/train/launch.py): the resolved configuration and paths come in a JSON job file, nothing else.

    python -m torch.distributed.run --nproc_per_node 2 -m tasks.train.sft_entry models/lora/launch_job.json
"""

from __future__ import annotations

import os
from pathlib import Path

from tasks.core.config import ModelConfig, SFTConfig
from tasks.core.io import write_json
from tasks.train.launch import is_main_process, leave_process_group, read_job
from tasks.train.sft_trainer import train_sft


def main(argv: list[str] | None = None) -> None:
    job = read_job(argv)
    if str(job.get("fail_rank")) == os.environ.get("RANK"):  # fault injection, for the launcher's tests
        raise RuntimeError(f"rank {job['fail_rank']} failed on purpose (fail_rank in the job)")
    summary = train_sft(
        Path(job["train_path"]),
        Path(job["dev_path"]),
        job["base_path"],
        Path(job["out_dir"]),
        SFTConfig.model_validate(job["sft"]),
        ModelConfig.model_validate(job["model"]),
        resume=bool(job.get("resume")),
    )
    if is_main_process():
        write_json(Path(job["summary_file"]), summary)
    leave_process_group()


if __name__ == "__main__":
    main()
