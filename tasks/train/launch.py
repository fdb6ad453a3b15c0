"""Training across processes, started by the pipeline: a plain entry module runs under `torchrun` or
`accelerate launch` as a child process; its output streams into the stage's log line by line, and a rank
that fails fails the stage with the child's own error. No Prefect here (the stage passes its logger).

    summary = launch("tasks.train.sft_entry", job, Launch("torchrun", 2), logger, workdir.sft_dir)

The entry module reads the job (a JSON file: resolved configuration and paths), trains, and rank 0 writes
the summary next to it. One process (`launcher: none`) stays the default and runs in this process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.errors import MedsafeError
from tasks.core.io import write_json

TAIL_LINES = 30
# A child's own exception line ("RuntimeError: ..."), as opposed to the launcher's report about it.
EXCEPTION_LINE = re.compile(r"^(?:\[[^\]]*\]:?\s*)?[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit): ")


class LaunchFailed(MedsafeError, RuntimeError):
    """A training process exited non-zero: the message carries the child's last lines."""


@dataclass(frozen=True)
class Launch:
    """How to start training: `none` (this process), `torchrun` or `accelerate`, with N processes."""

    launcher: str = "none"
    num_processes: int = 1
    config_file: str | None = None  # accelerate/DeepSpeed config (accelerate only)

    @property
    def distributed(self) -> bool:
        return self.launcher != "none"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def command(module: str, job_file: Path, how: Launch, run_dir: Path) -> list[str]:
    """The child's command line: the launcher as a module of this interpreter, then the entry module."""
    if how.launcher == "torchrun":
        return [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(how.num_processes),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
            "-m", module, str(job_file),
        ]  # fmt: skip
    if how.launcher == "accelerate":
        if not _has_cuda():  # accelerate's CPU launcher needs MPI; the Trainer inside uses accelerate anyway
            return command(module, job_file, Launch("torchrun", how.num_processes), run_dir)
        head = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(how.num_processes)]
        head += ["--main_process_port", str(_free_port())]
        if how.config_file:
            head += ["--config_file", how.config_file]
        elif how.num_processes > 1:
            head += ["--multi_gpu"]
        return [*head, "-m", module, str(job_file)]
    raise ValueError(f"launcher must be none, torchrun or accelerate, not {how.launcher!r}")


def launch(
    module: str,
    job: dict[str, Any],
    how: Launch,
    logger: logging.Logger | logging.LoggerAdapter,
    run_dir: Path,
) -> dict[str, Any]:
    """Run `module` across processes on `job`; stream its output to `logger`; return rank 0's summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    job_file, summary_file = run_dir / "launch_job.json", run_dir / "launch_summary.json"
    summary_file.unlink(missing_ok=True)
    write_json(job_file, {**job, "summary_file": str(summary_file)})
    cmd = command(module, job_file, how, run_dir)
    logger.info("launching %d processes with %s: %s", how.num_processes, how.launcher, " ".join(cmd))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if not _has_cuda():  # without it the Trainer sees a process group but trains each rank alone (gloo)
        env["ACCELERATE_USE_CPU"] = "true"
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    errors: deque[str] = deque(maxlen=3)
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env, bufsize=1
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                if EXCEPTION_LINE.match(line) and "ChildFailedError" not in line:
                    errors.append(line)
                logger.info("[%s] %s", how.launcher, line)
        code = child.wait()
    if code != 0:
        cause = " | ".join(dict.fromkeys(errors)) or "no exception line (see the log above)"
        raise LaunchFailed(
            f"training under {how.launcher} ({how.num_processes} processes) exited with code {code}: {cause}"
            "\n  its last lines:\n  " + "\n  ".join(tail)
        )
    if not summary_file.is_file():
        raise LaunchFailed(
            f"training under {how.launcher} exited 0 but rank 0 wrote no summary ({summary_file})"
        )
    return json.loads(summary_file.read_text(encoding="utf-8"))


def read_job(argv: list[str] | None = None) -> dict[str, Any]:
    """In the entry module: the job the stage wrote (argv[1])."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m <entry module> JOB.json (written by the training stage)")
    return json.loads(Path(args[0]).read_text(encoding="utf-8"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def leave_process_group() -> None:
    """A rank's last step: wait for every rank, then destroy the process group its trainer made. Left to the
    interpreter's exit, gloo's threads can still be joinable when they are destructed, and that rank aborts
    ("terminate called without an active exception", SIGABRT) after its training succeeded (seen once under
    load in CI)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
