"""The `medsafe` command line: every command runs a Prefect flow (or a pure scorer) and prints a summary.

medsafe data --profile tiny                 # data half: download → … → quality gate
medsafe run --profile tiny --workdir runs/a # the whole pipeline
medsafe score --predictions preds.jsonl --out scores.jsonl --no-teacher
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path

import typer

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The embedded server can take a while to start on a busy 2-core machine; Prefect's default is 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

app = typer.Typer(
    name="medsafe",
    help=(
        "Make Qwen3 medical models safer: data → risk labels → RL prompts "
        "→ quality gate → LoRA SFT → PPO/GRPO → SFT-vs-RL evaluation."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ProfileOpt = typer.Option(
    "tiny", "--profile", "-p", help="Profile name (tiny, qwen3-0.6b, qwen3-1.7b) or a YAML recipe path."
)
WorkdirOpt = typer.Option(
    Path("."), "--workdir", "-w", help="Folder every output is written under (data/, models/, reports/)."
)
SourcesOpt = typer.Option(
    None, "--source", "-s", help="Replace the profile's sources: a source name or a local file; repeatable."
)


class Algorithm(StrEnum):
    ppo = "ppo"
    grpo = "grpo"


def _fail(stage: str, exc: BaseException) -> None:
    typer.secho(f"medsafe: {stage} failed: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _print_summary(title: str, summary: dict) -> None:
    typer.secho(title, bold=True)
    typer.echo(json.dumps(summary, ensure_ascii=False, indent=2, default=str))


def _server_secrets():  # noqa: ANN202
    """The Prefect Secret block lookup when a Prefect server is configured (Prefect is imported only then)."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    from tasks.core.stage import read_secret_block

    return read_secret_block


def _run_stage(stage: str, fn, **kwargs) -> dict:  # noqa: ANN001
    """Run a flow; turn the errors we expect from users' inputs into one red line and exit code 1."""
    from flows.recipes import load_profile
    from tasks.core.errors import MedsafeError

    try:
        if "profile" in kwargs:
            load_profile(kwargs["profile"])  # a bad profile fails here, before any server starts
        return fn(**kwargs)
    except (MedsafeError, FileNotFoundError) as exc:
        _fail(stage, exc)
    raise AssertionError("unreachable")


@app.command(
    epilog=(
        "Example: medsafe data --profile tiny --source "
        "../shared/data/medical_o1_zh_sample.json --workdir runs/zh"
    )
)
def data(profile: str = ProfileOpt, source: list[str] = SourcesOpt, workdir: Path = WorkdirOpt) -> None:
    """Download, clean, label risk, split, sample RL prompts, and gate them with Great Expectations."""
    from flows.data import data_flow

    summary = _run_stage("data", data_flow, profile=profile, sources=source or None, workdir=str(workdir))
    _print_summary("data: quality gate passed", summary)


@app.command(epilog="Example: medsafe sft --profile tiny")
def sft(profile: str = ProfileOpt, workdir: Path = WorkdirOpt) -> None:
    """LoRA supervised fine-tuning on the processed train split (needs `medsafe data` first)."""
    from flows.train import sft_flow

    _print_summary("sft: done", _run_stage("sft", sft_flow, profile=profile, workdir=str(workdir)))


@app.command(epilog="Example: medsafe rl --profile tiny --algorithm ppo --steps 4")
def rl(
    profile: str = ProfileOpt,
    algorithm: Algorithm = typer.Option(Algorithm.ppo, help="ppo (ours) or grpo (TRL's GRPOTrainer)."),
    steps: int | None = typer.Option(None, help="Override the profile's number of RL steps."),
    workdir: Path = WorkdirOpt,
) -> None:
    """Reinforce safety with PPO (default) or GRPO against the rules+teacher reward (needs `medsafe sft`)."""
    from flows.train import rl_flow

    summary = _run_stage(
        "rl", rl_flow, profile=profile, algorithm=algorithm.value, steps=steps, workdir=str(workdir)
    )
    _print_summary("rl: done", summary)


@app.command(epilog="Example: medsafe score --predictions preds.jsonl --out scores.jsonl --no-teacher")
def score(
    predictions: Path = typer.Option(
        ...,
        exists=True,
        dir_okay=False,
        help="JSONL: id, question, response[, risk_level, safety_categories].",
    ),
    out: Path = typer.Option(..., help="Where to write one JSON line of scores per prediction."),
    teacher: bool | None = typer.Option(
        None, "--teacher/--no-teacher", help="Default: on when DEEPSEEK_API_KEY is set."
    ),
    profile: str = ProfileOpt,
    workdir: Path = WorkdirOpt,
) -> None:
    """Score a predictions file with the safety rules (and the teacher judge when on); no model needed."""
    from flows.recipes import load_profile
    from tasks.core.workdir import Workdir
    from tasks.reward.score import score_predictions

    cfg = load_profile(profile)
    teacher_cfg = (
        cfg.teacher
        if teacher is None
        else cfg.teacher.model_copy(update={"enabled": "on" if teacher else "off"})
    )
    summary = _run_stage(
        "score",
        score_predictions,
        predictions_path=predictions,
        out_path=out,
        reward_cfg=cfg.reward,
        teacher_cfg=teacher_cfg,
        cache_path=Workdir.at(workdir).teacher_cache,
        secret_lookup=_server_secrets(),
    )
    _print_summary(f"score: wrote {out}", summary)


@app.command(
    name="eval",
    epilog=(
        "Example: medsafe eval --model models/rl/final_model --name rl\n\n"
        "Example: medsafe eval --predictions preds.jsonl --name external"
    ),
)
def eval_(
    model: Path | None = typer.Option(
        None, help="A merged model folder or a LoRA adapter folder (base taken from its config)."
    ),
    predictions: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Score an existing predictions JSONL instead of generating."
    ),
    test_file: list[Path] = typer.Option(
        None, "--test-file", help="Prompt sets to evaluate (default: red_team.jsonl and test.jsonl)."
    ),
    name: str | None = typer.Option(
        None, help="Report folder name under reports/eval/ (default: derived from the model)."
    ),
    profile: str = ProfileOpt,
    workdir: Path = WorkdirOpt,
) -> None:
    """Evaluate a model (or a predictions file) on the red-team and test sets against the four targets."""
    if (model is None) == (predictions is None):
        typer.secho(
            "medsafe eval: give exactly one of --model PATH or --predictions FILE",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=2)
    from flows.evaluate import eval_flow

    summary = _run_stage(
        "eval",
        eval_flow,
        profile=profile,
        model=str(model) if model else None,
        predictions=str(predictions) if predictions else None,
        test_files=[str(p) for p in test_file] if test_file else None,
        name=name,
        workdir=str(workdir),
    )
    _print_summary("eval: done", summary)


@app.command(epilog="Example: medsafe run --profile tiny --workdir runs/tiny")
def run(profile: str = ProfileOpt, source: list[str] = SourcesOpt, workdir: Path = WorkdirOpt) -> None:
    """The whole pipeline as one flow: data → gate → SFT → RL → evaluation (re-runs hit the cache)."""
    from flows.pipeline import medsafe_pipeline

    summary = _run_stage(
        "pipeline", medsafe_pipeline, profile=profile, sources=source or None, workdir=str(workdir)
    )
    _print_summary("run: done", summary)


@app.command(epilog="Example: medsafe profiles --show tiny")
def profiles(
    show: str | None = typer.Option(None, help="Print one profile's full, validated settings."),
) -> None:
    """List the named profiles, or show one resolved."""
    from flows.recipes import available_profiles, load_profile

    if show:
        typer.echo(json.dumps(load_profile(show).model_dump(mode="json"), indent=2))
        return
    for name in available_profiles():
        typer.echo(f"{name:12s} {load_profile(name).description}")


@app.command(epilog="Example: medsafe serve   # then: prefect deployment run 'medsafe-data/data-only'")
def serve(workdir: Path = WorkdirOpt) -> None:
    """Serve the scheduled-retraining and data-only deployments from this process (the embedded default)."""
    from flows.deploy import serve_deployments

    serve_deployments(workdir=str(workdir.resolve()))


@app.command(epilog="Example: medsafe deploy --pool medsafe-process")
def deploy(
    pool: str = typer.Option("medsafe-process", help="Process work pool the deployments run on."),
) -> None:
    """Register the deployments in deployments/prefect.yaml on the current Prefect server (prefect deploy
    --all)."""
    from flows.deploy import register_deployments

    sys.exit(register_deployments(pool))


@app.command(
    epilog="Example: medsafe export --model rl --out exported/medsafe-rl\n\n"
    "Example: medsafe export --model models/lora/final_lora --out exported/sft --push-to-hub me/medsafe-sft"
)
def export(
    out: Path = typer.Option(
        ..., help="Folder to write the merged model, tokenizer and README.md card into."
    ),
    model: str = typer.Option("rl", help="rl, sft, or a path to a merged model or a LoRA adapter folder."),
    push_to_hub: str | None = typer.Option(None, help="Also upload to this Hugging Face repo (owner/name)."),
    workdir: Path = WorkdirOpt,
) -> None:
    """Export a model as a plain Hugging Face folder (safetensors, tokenizer, chat template) + model card."""
    from tasks.core.workdir import Workdir
    from tasks.model.export import export_model
    from tasks.model.export import push_to_hub as push

    summary = _run_stage("export", export_model, workdir=Workdir.at(workdir), model=model, out=out)
    if push_to_hub:
        summary["pushed"] = _run_stage("export", push, folder=out, repo_id=push_to_hub)
    _print_summary(f"export: wrote {out}", summary)


@app.command(
    epilog="Example: medsafe demo --workdir runs/tiny\n\n"
    "Example: medsafe demo --model mine=/models/my-medical-qwen3 --model rl=rl --port 7860"
)
def demo(
    model: list[str] = typer.Option(
        None, "--model", "-m", help="NAME=WHAT, repeatable; WHAT is base, sft, rl or a model/adapter path."
    ),
    profile: str = ProfileOpt,
    workdir: Path = WorkdirOpt,
    port: int = typer.Option(7860, help="Port on 127.0.0.1."),
    max_new_tokens: int = typer.Option(256, help="Tokens each model may generate per answer."),
) -> None:
    """Ask the models one question in the browser; answers side by side, each with its reward breakdown."""
    from flows.demo import launch_demo
    from flows.recipes import load_profile

    specs = {}
    for item in model or []:
        name, sep, what = item.partition("=")
        if not sep or not name or not what:
            _fail(
                "demo", ValueError(f"--model {item!r}: expected NAME=WHAT, e.g. rl=rl or mine=/path/to/model")
            )
        specs[name] = what
    cfg = _run_stage("demo", load_profile, name_or_path=profile)
    typer.echo(f"medsafe demo: loading {', '.join(specs) or 'base, sft and rl of ' + str(workdir)} ...")
    _run_stage(
        "demo",
        launch_demo,
        specs=specs,
        workdir=workdir,
        settings=cfg,
        port=port,
        max_new_tokens=max_new_tokens,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
