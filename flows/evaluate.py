"""The evaluate sub-flow: predictions (generated or given) → safety metrics vs targets → reports; SFT vs RL.

medsafe eval --model models/rl/final_model --name rl
medsafe eval --predictions preds.jsonl --name external
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.recipes import load_profile
from tasks.core.stage import read_secret_block
from tasks.core.workdir import ASSETS, Workdir
from tasks.evaluate.predictions import generate_task
from tasks.evaluate.report import compare_task, evaluate_task
from tasks.reward.teacher import teacher_enabled


def _prompt_files(wd: Workdir, test_files: list[str] | None) -> list[Path]:
    files = [Path(f) for f in test_files] if test_files else [wd.split("red_team"), wd.split("test")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"evaluation prompt set(s) not found: {', '.join(missing)}; "
            "run `medsafe data` first or pass --test-file"
        )
    return files


@flow(name="medsafe-eval")
def eval_flow(
    profile: str = "tiny",
    model: str | None = None,
    predictions: str | None = None,
    test_files: list[str] | None = None,
    name: str | None = None,
    workdir: str = ".",
) -> dict:
    """Evaluate one model (generating on the prompt sets) or one predictions file."""
    cfg, wd = load_profile(profile), Workdir.at(workdir)
    run_name = name or Path(model or predictions).name
    teacher_on = teacher_enabled(cfg.teacher, read_secret_block)
    if model is not None:
        generated = generate_task(Path(model), _prompt_files(wd, test_files), wd, cfg, run_name)
        predictions = generated["predictions"]
    return evaluate_task(Path(predictions), wd, cfg, run_name, teacher_on, ASSETS.safety_rules)


@flow(name="medsafe-evaluate")
def compare_flow(profile: str = "tiny", workdir: str = ".", models: dict[str, str] | None = None) -> dict:
    """Evaluate named models (default: SFT adapter and RL final model) and put them side by side."""
    cfg, wd = load_profile(profile), Workdir.at(workdir)
    models = models or {"sft": str(wd.sft_adapter), "rl": str(wd.rl_final)}
    teacher_on = teacher_enabled(cfg.teacher, read_secret_block)
    prompt_files = _prompt_files(wd, None)
    metrics = {}
    for run_name, path in models.items():
        generated = generate_task(Path(path), prompt_files, wd, cfg, run_name)
        metrics[run_name] = evaluate_task(
            Path(generated["predictions"]), wd, cfg, run_name, teacher_on, ASSETS.safety_rules
        )
    comparison = compare_task({k: Path(v["metrics"]) for k, v in metrics.items()}, wd, "-vs-".join(models))
    return {"runs": metrics, "comparison": comparison}
