"""SFT across 2 CPU processes (torchrun over gloo), started the way the SFT stage starts it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tasks.core.config import LoraConfig, ModelConfig, SFTConfig
from tasks.core.io import write_jsonl
from tasks.model import tiny as tiny_model
from tasks.model.chat import build_chat_prompt
from tasks.model.generate import generate
from tasks.model.loading import load_model, load_tokenizer
from tasks.train.launch import Launch, LaunchFailed, command, launch
from tasks.train.sft_trainer import train_sft

TINY = ModelConfig(base="tiny", tiny=True, dtype="float32", max_seq_len=96)
ANSWERS = ("多喝水，休息；超过三天或精神差请就医。", "Rest and drink fluids; see a doctor if it lasts.")
ROWS = [
    {
        "id": f"r{i}",
        "question": f"问题{i}：发烧{i % 5 + 37}度怎么办？",
        "think": "先看体温。",
        "answer": ANSWERS[i % 2],
    }
    for i in range(32)
]


def sft_cfg(batch_size: int) -> SFTConfig:
    return SFTConfig(
        lora=LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]),
        learning_rate=1e-3,
        max_steps=4,
        batch_size=batch_size,
        grad_accum=1,
        eval_steps=5,  # logs the train loss every step
        save_steps=100,
        report_to=["none"],
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("launch")
    base = tiny_model.build_tiny_base(root / "tiny", [r["question"] + r["answer"] for r in ROWS] * 3)
    write_jsonl(root / "train.jsonl", ROWS)
    return {"root": root, "base": str(base), "train": root / "train.jsonl", "dev": root / "none.jsonl"}


def job(setup: dict, out: Path, batch_size: int, **extra) -> dict:  # noqa: ANN003
    return {
        "train_path": str(setup["train"]),
        "dev_path": str(setup["dev"]),
        "base_path": setup["base"],
        "out_dir": str(out),
        "sft": sft_cfg(batch_size).model_dump(mode="json"),
        "model": TINY.model_dump(mode="json"),
        **extra,
    }


@pytest.mark.slow
def test_two_processes_match_one_at_the_same_global_batch(setup: dict, caplog) -> None:  # noqa: ANN001
    one = train_sft(setup["train"], setup["dev"], setup["base"], setup["root"] / "one", sft_cfg(8), TINY)
    logger = logging.getLogger("launch-test")
    with caplog.at_level(logging.INFO, logger="launch-test"):
        two = launch("tasks.train.sft_entry", job(setup, setup["root"] / "two", 4), Launch("torchrun", 2),
                     logger, setup["root"] / "two")  # fmt: skip
    assert two["steps"] == one["steps"] == 4
    curve_one = read_jsonl_csv(setup["root"] / "one" / "loss_curve.csv")
    curve_two = read_jsonl_csv(setup["root"] / "two" / "loss_curve.csv")
    assert len(curve_one) == len(curve_two) > 0
    for a, b in zip(curve_one, curve_two, strict=True):
        assert b == pytest.approx(a, rel=0.1), (curve_one, curve_two)
    assert any("[torchrun]" in r.getMessage() for r in caplog.records)  # the child's output was streamed
    adapter = Path(two["adapter"])
    model = load_model(setup["base"], TINY, adapter=adapter, merge=True)
    tokenizer = load_tokenizer(adapter)
    (answer,) = generate(model, tokenizer, [build_chat_prompt(tokenizer, "发烧怎么办？")], max_new_tokens=4)
    assert isinstance(answer, str) and two["processes"] == 2 and one["processes"] == 1


def read_jsonl_csv(path: Path) -> list[float]:
    import csv

    with path.open() as fh:
        return [float(r["train_loss"]) for r in csv.DictReader(fh) if r["train_loss"]]


@pytest.mark.slow
def test_a_crashing_rank_fails_with_its_own_error(setup: dict) -> None:
    with pytest.raises(LaunchFailed, match="rank 1 failed on purpose") as failed:
        launch("tasks.train.sft_entry", job(setup, setup["root"] / "crash", 4, fail_rank=1),
               Launch("torchrun", 2), logging.getLogger("launch-test"), setup["root"] / "crash")  # fmt: skip
    assert "exited with code" in str(failed.value)


def test_launch_commands(tmp_path: Path) -> None:
    torchrun = command("tasks.train.sft_entry", tmp_path / "j.json", Launch("torchrun", 2), tmp_path)
    assert torchrun[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "2"]
    assert torchrun[-3:] == ["-m", "tasks.train.sft_entry", str(tmp_path / "j.json")]
    accel = command("tasks.train.sft_entry", tmp_path / "j.json", Launch("accelerate", 2), tmp_path)
    import torch

    if torch.cuda.is_available():
        assert accel[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in accel
    else:  # accelerate's CPU launcher needs MPI: CPU ranks start through torchrun
        assert accel[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "2"]
    with pytest.raises(ValueError, match="launcher must be"):
        command("m", tmp_path / "j.json", Launch("mpirun", 2), tmp_path)


@pytest.mark.slow
def test_the_sft_stage_fails_with_the_ranks_error(setup: dict, tmp_path: Path, prefect_server) -> None:  # noqa: ANN001
    """sft.launcher=torchrun: ranks that crash fail the Prefect task, and the message says why."""
    from prefect import flow

    from tasks.core.workdir import Workdir
    from tasks.train.sft import sft_task

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = sft_cfg(4).model_copy(update={"launcher": "torchrun", "num_processes": 2})

    @flow
    def sft_flow() -> dict:
        return sft_task(empty, setup["dev"], Workdir.at(tmp_path / "wd"), cfg, TINY, Path(setup["base"]))

    with pytest.raises(LaunchFailed, match=r"exited with code 1: ValueError: .*no training rows"):
        sft_flow()


@pytest.mark.slow
def test_grpo_across_two_processes_writes_one_log_and_a_model(setup: dict) -> None:
    """GRPO ranks each score with the rules; rank 0 alone writes rewards.csv, the log and the final model."""
    import csv

    from tasks.core.config import RewardConfig, RLConfig, TeacherConfig
    from tasks.core.workdir import ASSETS

    prompts = setup["root"] / "prompts.jsonl"
    write_jsonl(
        prompts, [{"id": r["id"], "question": r["question"], "risk_level": "medium"} for r in ROWS[:8]]
    )
    rl = RLConfig(algorithm="grpo", batch_size=2, grpo_num_generations=2, max_new_tokens=8, steps=2,
                  save_every=100, learning_rate=1e-3, lora=LoraConfig(r=4, alpha=8, dropout=0.0),
                  report_to=["none"])  # fmt: skip
    out = setup["root"] / "grpo"
    job = {
        "prompts_path": str(prompts),
        "base_path": setup["base"],
        "sft_adapter": None,
        "out_dir": str(out),
        "rules_path": str(ASSETS.safety_rules),
        "teacher_cache": str(out / "teacher.sqlite"),
        "rl": rl.model_dump(mode="json"),
        "model": TINY.model_dump(mode="json"),
        "reward": RewardConfig().model_dump(mode="json"),
        "teacher": TeacherConfig(enabled="off").model_dump(mode="json"),
    }
    summary = launch("tasks.train.grpo_entry", job, Launch("torchrun", 2), logging.getLogger("t"), out)
    assert summary["processes"] == 2 and summary["steps"] == 2
    with (out / "checkpoints" / "rewards.csv").open() as fh:
        assert [r["step"] for r in csv.DictReader(fh)] == ["1", "2"]  # one row a step, not one per rank
    assert load_model(out / "final_model", TINY) is not None


def test_ppo_refuses_a_launcher() -> None:
    from pydantic import ValidationError

    from tasks.core.config import RLConfig

    with pytest.raises(ValidationError, match="PPO is single-process"):
        RLConfig(algorithm="ppo", launcher="torchrun", num_processes=2)
    assert RLConfig(algorithm="grpo", launcher="torchrun", num_processes=2).num_processes == 2
