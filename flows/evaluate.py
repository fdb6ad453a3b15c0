"""The evaluate sub-flow: held-out prompt sets → predictions of each model → rules (+ the independent judge)
→ reports; models side by side with paired differences (base → SFT → RL).

medsafe eval --model base=models/base/tiny --model sft=models/lora/final_lora --model rl=models/rl/final_model
medsafe eval --model rl=models/rl/final_model --benchmark msb=medsafetybench_test.csv
medsafe eval --predictions preds.jsonl --name external
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.recipes import load_profile
from tasks.core.config import Profile
from tasks.core.errors import MedsafeError
from tasks.core.stage import read_secret_block
from tasks.core.workdir import ASSETS, Workdir
from tasks.evaluate.eval_sets import EvalSet, default_sets
from tasks.evaluate.judge import judge_enabled
from tasks.evaluate.predictions import generate_task
from tasks.evaluate.report import compare_task, evaluate_task
from tasks.reward.teacher import teacher_enabled
from tasks.train.base_model import base_model_task


def _sets(wd: Workdir, test_files: list[str] | None, benchmarks: dict[str, str] | None) -> list[EvalSet]:
    """The held-out sets (or the --test-file sets), plus the benchmarks; every file must exist."""
    named = {k: Path(v) for k, v in (benchmarks or {}).items()}
    if test_files:
        sets = [EvalSet(Path(f).stem, Path(f)) for f in test_files]
        sets += [EvalSet(k, v) for k, v in named.items()]
    else:
        sets, notes = default_sets(wd, named)
        for note in notes:
            get_run_logger().warning("evaluation: %s", note)
    missing = [f"{s.name} ({s.path})" for s in sets if not s.path.is_file()]
    if missing:
        raise MedsafeError(
            f"evaluation prompt set(s) not found: {', '.join(missing)}; "
            "run `medsafe data` first, or fix --test-file/--benchmark"
        )
    return sets


def _evaluate_models(
    cfg: Profile, wd: Workdir, models: dict[str, str], sets: list[EvalSet], comparison: str | None
) -> dict:
    teacher_on = teacher_enabled(cfg.teacher, read_secret_block)
    judge_on = judge_enabled(cfg.eval.judge, read_secret_block)
    runs = {}
    for run_name, path in models.items():
        generated = generate_task(Path(path), sets, wd, cfg, run_name, wd.training_prompts)
        runs[run_name] = evaluate_task(
            Path(generated["predictions"]),
            wd,
            cfg,
            run_name,
            teacher_on,
            ASSETS.safety_rules,
            judge_on,
            wd.training_prompts,
        )
    if len(runs) < 2:
        return {"runs": runs}
    name = comparison or "-vs-".join(runs)
    return {
        "runs": runs,
        "comparison": compare_task({k: Path(v["metrics"]) for k, v in runs.items()}, wd, name),
    }


@flow(name="medsafe-eval")
def eval_flow(
    profile: str = "tiny",
    model: str | None = None,
    predictions: str | None = None,
    test_files: list[str] | None = None,
    name: str | None = None,
    workdir: str = ".",
    models: dict[str, str] | None = None,
    benchmarks: dict[str, str] | None = None,
) -> dict:
    """Evaluate named models (generating on the held-out sets; two or more: side by side) or one
    predictions file."""
    cfg, wd = load_profile(profile), Workdir.at(workdir)
    if predictions is not None:
        return evaluate_task(
            Path(predictions),
            wd,
            cfg,
            name or Path(predictions).stem,
            teacher_enabled(cfg.teacher, read_secret_block),
            ASSETS.safety_rules,
            judge_enabled(cfg.eval.judge, read_secret_block),
            wd.training_prompts,
        )
    models = dict(models or {})
    if model is not None:
        models[name or Path(model).name] = model
    if not models:
        raise MedsafeError("nothing to evaluate: give --model NAME=PATH (repeatable) or --predictions FILE")
    summary = _evaluate_models(
        cfg, wd, models, _sets(wd, test_files, benchmarks), name if len(models) > 1 else None
    )
    return summary if len(models) > 1 else next(iter(summary["runs"].values()))


@flow(name="medsafe-evaluate")
def compare_flow(
    profile: str = "tiny",
    workdir: str = ".",
    models: dict[str, str] | None = None,
    benchmarks: dict[str, str] | None = None,
) -> dict:
    """Evaluate named models (default: the base model before SFT, the SFT adapter and the RL model) on the
    held-out sets and put them side by side."""
    cfg, wd = load_profile(profile), Workdir.at(workdir)
    if not models:
        base = base_model_task(cfg.model, wd)
        models = {"base": str(base), "sft": str(wd.sft_adapter), "rl": str(wd.rl_final)}
    return _evaluate_models(cfg, wd, models, _sets(wd, None, benchmarks), None)
