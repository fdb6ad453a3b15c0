"""The data sub-flow: download → cleanup → classify_risk → split → sample_rl_prompts → quality_gate → report.

medsafe data --profile tiny --workdir runs/demo
"""

from __future__ import annotations

import gc
from pathlib import Path

from prefect import flow, get_run_logger

from flows.recipes import load_profile
from tasks.core.io import forget_kept
from tasks.core.lock import workdir_lock
from tasks.core.workdir import ASSETS, Workdir
from tasks.core.workers import shared_workers
from tasks.prepare.cleanup import cleanup_task
from tasks.prepare.download import download_task, source_inputs
from tasks.prepare.sample_rl import sample_rl_task
from tasks.prepare.split import split_task
from tasks.risk.classify_risk import classify_risk_task
from tasks.risk.judge_labeler import risk_judge_available
from validation.gate import quality_gate_task
from validation.report import data_report_task
from validation.tables import table_paths

WORKER_MODULES = (
    "tasks.prepare.clean_record",
    "tasks.risk.parallel_label",
)  # what the workers import as they start


@flow(name="medsafe-data", log_prints=False)
def data_flow(profile: str = "tiny", sources: list[str] | None = None, workdir: str = ".") -> dict:
    """Turn the profile's sources into gated processed splits and RL prompts; raises when the gate fails."""
    cfg = load_profile(profile, {"data.sources": sources} if sources else None)
    wd = Workdir.at(workdir)

    # One run per workdir, deployment runs included (a no-op inside a CLI command that already holds it).
    with workdir_lock(wd.root, "medsafe-data flow", notify=get_run_logger().warning):
        # The stages build millions of rows (dicts of strings) and none of them is part of a reference
        # cycle, yet the cyclic collector would walk them all again every few hundred thousand allocations:
        # 4.5 s of an 18 s run on 50k rows. Reference counting still frees each row when it is dropped; the
        # run's little cyclic garbage (~80k objects on 50k rows) waits until the flow ends.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            # cleanup and classification share worker processes, started on the idle core during download
            with shared_workers(WORKER_MODULES):
                raw = download_task(source_inputs(cfg.data.sources), wd, cfg.data)
                cleaned = cleanup_task(Path(raw["manifest"]), wd, cfg.data)
                classified = classify_risk_task(
                    Path(cleaned["cleaned"]),
                    wd,
                    ASSETS.risk_lexicon,
                    data_cfg=cfg.data,
                    judge_available=risk_judge_available(cfg.data),
                )
            splits = split_task(Path(classified["output"]), ASSETS.safety_red_team, cfg.data, wd)
            # the RL part of the red team only: red_team_eval and test stay held out for evaluation
            prompts = sample_rl_task(
                Path(splits["train"]), Path(splits["red_team"]), Path(splits["gold_set"]), cfg.sampling, wd
            )
            gated = table_paths(wd)  # the splits and the RL prompts: what the gate and the report read
            gate = quality_gate_task(gated, cfg.gate, cfg.sampling, cfg.data, wd)
            report = data_report_task(
                gated,
                Path(prompts["report"]),
                wd.quarantine,
                Path(gate["result_path"]),
                cfg.data,
                cfg.sampling,
                wd,
            )
        finally:
            forget_kept()  # the split files the last stages shared: free them before training starts
            if gc_was_on:
                gc.enable()
    return {"profile": cfg.name, "workdir": str(wd.root), "gate_passed": gate["passed"], **report}
