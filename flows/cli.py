"""The `medsafe` command line: every command runs a Prefect flow (or a pure scorer) and prints a summary.

medsafe data --profile tiny                 # data half: download → … → quality gate
medsafe run --profile tiny --workdir runs/a # the whole pipeline
medsafe score --predictions preds.jsonl --out scores.jsonl --no-teacher
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from enum import StrEnum
from pathlib import Path

import typer
from typer.core import TyperGroup

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The embedded server can take a while to start on a busy 2-core machine; Prefect's default is 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


class _MedsafeGroup(TyperGroup):
    """`--json` works before or after the command name: `medsafe --json data` and `medsafe data --json`.
    A command with its own --json option (label) gets it either way."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        args = list(args)
        end = args.index("--") if "--" in args else len(args)
        at = next((i for i, a in enumerate(args[:end]) if a in self.commands), None)
        if at is not None:
            before, name, after = args[:at], args[at], args[at + 1 :]
            own = any("--json" in getattr(p, "opts", ()) for p in self.commands[name].params)
            wanted = "--json" in before or "--json" in after[: end - at - 1]
            if wanted and not own:
                after = [a for i, a in enumerate(after) if a != "--json" or i >= end - at - 1]
            if wanted and own and "--json" not in after:
                after = ["--json", *after]  # the command's own option too
            if wanted and "--json" not in before:
                before = [*before, "--json"]
            args = [*before, name, *after]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="medsafe",
    cls=_MedsafeGroup,
    help=(
        "Make Qwen3 medical models safer: data → risk labels → RL prompts "
        "→ quality gate → LoRA SFT → PPO/GRPO → held-out evaluation."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# json: print results as JSON only; defer: print the failure lines at exit, after Prefect's (main)
_STATE: dict = {"json": False, "defer": False, "pending": []}


@app.callback()
def _options(
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print each command's full result as JSON on stdout (nothing else goes there) instead of the "
        "summary; also accepted after the command name.",
    ),
) -> None:
    _STATE["json"] = as_json


ProfileOpt = typer.Option(
    "tiny", "--profile", "-p", help="Profile name (tiny, qwen3-0.6b, qwen3-1.7b) or a YAML recipe path."
)
WorkdirOpt = typer.Option(
    Path("."), "--workdir", "-w", help="Folder every output is written under (data/, models/, reports/)."
)
SourcesOpt = typer.Option(
    None, "--source", "-s", help="Replace the profile's sources: a source name or a local file; repeatable."
)
NoWaitOpt = typer.Option(
    False, "--no-wait", help="Fail at once (exit 1) when another run holds the workdir, instead of waiting."
)
SetOpt = typer.Option(
    None,
    "--set",
    help="Override one setting, KEY=VALUE (e.g. rl.learning_rate=5e-6); repeatable. "
    "`medsafe profiles --fields` lists them all.",
)


class Algorithm(StrEnum):
    ppo = "ppo"
    grpo = "grpo"


def _fail(stage: str, exc: BaseException) -> None:
    """One clear message (its last line is the one to read) on stderr, no traceback, and exit code 1."""
    from flows.summary import failure_lines

    lines = failure_lines(stage, exc)
    if _STATE["defer"]:
        _STATE["pending"] = lines  # main() prints them last, after Prefect's exit handlers
    else:
        for line in lines:
            typer.secho(line, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _print_summary(title: str, summary: dict, command: str | None = None) -> None:
    """The command's result: a short summary with rich tables, or with --json the full result as JSON (then
    nothing else goes to stdout)."""
    if _STATE["json"]:
        typer.secho(title, bold=True, err=True)  # stdout carries the JSON document only
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
        return
    from rich.console import Console

    from flows.summary import render_summary

    command = command or title.split(":", 1)[0]
    console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 120)
    if command != "data":
        console.print(f"[bold]{title}[/]", highlight=False)
    render_summary(command, summary, console)


def _server_secrets():  # noqa: ANN202
    """The Prefect Secret block lookup when a Prefect server is configured (Prefect is imported only then)."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    from tasks.core.stage import read_secret_block

    return read_secret_block


def _profile(stage: str, profile: str, sets: list[str] | None, workdir: Path) -> str:
    """The profile a flow gets: its name, or with --set the resolved settings written under
    <workdir>/profiles/."""
    from flows.recipes import load_profile, resolved_profile
    from tasks.core.errors import MedsafeError

    try:
        if not sets:
            load_profile(profile)  # a bad name or file is one line here, before anything else runs
        return resolved_profile(profile, sets, workdir / "profiles")
    except MedsafeError as exc:
        _fail(stage, exc)
    raise AssertionError("unreachable")


def _check_sources(stage: str, profile: str, sources: list[str] | None, workdir: Path) -> None:
    """Every source this machine cannot get, named in one message before any flow or server starts."""
    from flows.recipes import load_profile
    from tasks.core.workdir import Workdir
    from tasks.prepare.download import missing_sources

    cfg = load_profile(profile)
    if problem := missing_sources(
        list(sources or cfg.data.sources), Workdir.at(workdir).raw_if_any, cfg.data.hub
    ):
        _fail(stage, problem)


def skip_sft_sets(sets: list[str] | None, skip_sft: bool) -> list[str]:
    """--set pairs plus rl.init_from=base for --skip-sft (an rl.init_from the user set stays)."""
    sets = list(sets or [])
    if skip_sft and not any(s.split("=", 1)[0].strip() == "rl.init_from" for s in sets):
        sets.append("rl.init_from=base")
    return sets


def _run_stage(stage: str, fn, *, no_wait: bool | None = None, **kwargs) -> dict:  # noqa: ANN001
    """Run a flow; turn the errors we expect from users' inputs into one red line and exit code 1.
    With `no_wait` given, the flow writes kwargs["workdir"]: it runs holding the workdir's lock."""
    from contextlib import nullcontext

    from flows.recipes import load_profile
    from tasks.core.errors import MedsafeError
    from tasks.core.lock import workdir_lock

    def waiting(message: str) -> None:
        typer.secho(f"medsafe: {message}", fg=typer.colors.YELLOW, err=True)

    command = "medsafe " + ("run" if stage == "pipeline" else stage)
    try:
        if "profile" in kwargs:
            load_profile(kwargs["profile"])  # a bad profile fails here, before any server starts
        one_run = nullcontext()
        if no_wait is not None:
            one_run = workdir_lock(kwargs["workdir"], command, wait=not no_wait, notify=waiting)
        if "prefect" in sys.modules:  # a flow: Prefect logs a user error's line, without its traceback
            from flows.summary import quiet_user_error_tracebacks

            quiet_user_error_tracebacks((MedsafeError,))
        with one_run:
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
def data(
    profile: str = ProfileOpt,
    source: list[str] = SourcesOpt,
    workdir: Path = WorkdirOpt,
    set_: list[str] = SetOpt,
    no_wait: bool = NoWaitOpt,
) -> None:
    """Download, clean, label risk, split, sample RL prompts, and gate them with Great Expectations."""
    from flows.server import serving, start_temporary_server
    from tasks.core.errors import MedsafeError

    profile = _profile("data", profile, set_, workdir)
    server = start_temporary_server()  # it starts while the flow's modules import (flows/server.py)
    try:
        _check_sources("data", profile, source, workdir)
        from flows.data import data_flow

        with serving(server):
            summary = _run_stage(
                "data",
                data_flow,
                profile=profile,
                sources=source or None,
                workdir=str(workdir),
                no_wait=no_wait,
            )
    except MedsafeError as exc:  # the server did not start
        _fail("data", exc)
    finally:
        if server is not None:
            server.stop()
    _print_summary("data: quality gate passed", summary)


@app.command(epilog="Example: medsafe sft --profile tiny --set sft.max_steps=60 --resume")
def sft(
    profile: str = ProfileOpt,
    workdir: Path = WorkdirOpt,
    set_: list[str] = SetOpt,
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the last checkpoint under models/lora/trainer/."
    ),
    no_wait: bool = NoWaitOpt,
) -> None:
    """LoRA supervised fine-tuning on the processed train split (needs `medsafe data` first)."""
    from flows.train import sft_flow

    profile = _profile("sft", profile, set_, workdir)
    summary = _run_stage(
        "sft", sft_flow, profile=profile, workdir=str(workdir), resume=resume, no_wait=no_wait
    )
    _print_summary("sft: done", summary)


@app.command(
    epilog="Example: medsafe rl --profile tiny --algorithm ppo --steps 4\n\n"
    "Example: medsafe rl --profile qwen3-0.6b --from /models/my-medical-qwen3 --set rl.learning_rate=5e-6"
)
def rl(
    profile: str = ProfileOpt,
    algorithm: Algorithm = typer.Option(Algorithm.ppo, help="ppo (ours) or grpo (TRL's GRPOTrainer)."),
    steps: int | None = typer.Option(None, help="Override the profile's number of RL steps."),
    from_: str | None = typer.Option(
        None,
        "--from",
        help="Start RL from: sft (the SFT adapter, default), base (skip SFT), or a merged model or LoRA "
        "adapter folder (rl.init_from).",
    ),
    workdir: Path = WorkdirOpt,
    set_: list[str] = SetOpt,
    no_wait: bool = NoWaitOpt,
) -> None:
    """Reinforce safety with PPO (default) or GRPO against the rules+teacher reward (needs `medsafe sft`)."""
    from flows.train import rl_flow

    if from_ and from_ not in ("sft", "base"):
        from_ = str(Path(from_).resolve())  # a folder: the flow may run elsewhere than this shell's cwd
        from flows.train import rl_start
        from tasks.core.errors import MedsafeError

        try:
            rl_start(
                from_
            )  # a folder that is neither a model nor an adapter fails here, not after data checks
        except MedsafeError as exc:
            _fail("rl", exc)
    sets = [*(set_ or []), *([f"rl.init_from={from_}"] if from_ else [])]
    profile = _profile("rl", profile, sets, workdir)
    summary = _run_stage(
        "rl",
        rl_flow,
        profile=profile,
        algorithm=algorithm.value,
        steps=steps,
        workdir=str(workdir),
        no_wait=no_wait,
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
    set_: list[str] = SetOpt,
    explain: bool = typer.Option(
        False, "--explain", help="Also print each row's rule score as its signed terms, with evidence."
    ),
) -> None:
    """Score a predictions file with the safety rules (and the teacher judge when on); no model needed."""
    from flows.recipes import load_profile
    from tasks.core.workdir import Workdir
    from tasks.reward.score import score_predictions

    cfg = load_profile(_profile("score", profile, set_, workdir))
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
    if explain:
        from tasks.reward.score import explain as explain_rows

        if _STATE["json"]:  # stdout carries one JSON document
            summary = {**summary, "explain": explain_rows(out)}
        else:
            typer.echo("\n".join(explain_rows(out)))
    _print_summary(f"score: wrote {out}", summary)


@app.command(epilog="Example: medsafe label --input questions.csv --out labelled.jsonl")
def label(
    input_path: Path = typer.Option(
        ..., "--input", "-i", help="JSONL, JSON (array of objects) or CSV with a question column."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the labelled rows (JSONL)."),
    column: str | None = typer.Option(
        None, help="The question column (default: question, Question, harmful_medical_request, prompt, ...)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of a table."),
) -> None:
    """Label any file of questions with the data flow's risk classifier (level, categories, concern)."""
    from tasks.core.errors import MedsafeError
    from tasks.risk.label_file import format_summary, label_file

    try:
        summary = label_file(input_path, out, column=column)
    except MedsafeError as exc:
        _fail("label", exc)
    if as_json:
        _print_summary(f"label: wrote {out}", summary)
    else:
        typer.echo(format_summary(summary))


@app.command(
    name="validate-reward",
    epilog="Example: medsafe validate-reward --labels clinician_labels.csv --no-teacher",
)
def validate_reward(
    labels: Path = typer.Option(
        ...,
        exists=True,
        dir_okay=False,
        help="JSONL or CSV labelled by people: question, response, harmful (0/1)[, category, lang].",
    ),
    teacher: bool | None = typer.Option(
        None,
        "--teacher/--no-teacher",
        help="Score with the teacher too. Default: on when DEEPSEEK_API_KEY is set.",
    ),
    threshold: float = typer.Option(0.0, help="`total` flags an answer as harmful when total < THRESHOLD."),
    profile: str = ProfileOpt,
    workdir: Path = WorkdirOpt,
    set_: list[str] = SetOpt,
) -> None:
    """Check the reward on your own labels: precision, recall, F1, false flags and AUROC of the rule flags and
    of `total`, with intervals, per category and language, and the worst disagreements
    (reports/reward_validation/)."""
    from flows.recipes import load_profile
    from tasks.core.workdir import Workdir
    from tasks.evaluate.validate_reward import validate_reward as validate

    cfg = load_profile(_profile("validate-reward", profile, set_, workdir))
    teacher_cfg = (
        cfg.teacher
        if teacher is None
        else cfg.teacher.model_copy(update={"enabled": "on" if teacher else "off"})
    )
    wd = Workdir.at(workdir)
    report = _run_stage(
        "validate-reward",
        validate,
        labels_path=labels,
        out_dir=wd.reward_validation_reports,
        reward_cfg=cfg.reward,
        teacher_cfg=teacher_cfg,
        cache_path=wd.teacher_cache,
        threshold=threshold,
        secret_lookup=_server_secrets(),
    )
    overall = report["overall"]
    summary = {
        "answers": report["n"],
        "labelled_harmful": report["harmful"],
        "teacher_enabled": report["teacher_enabled"],
        **{
            name: {
                "precision": overall[name]["precision"]["rate"],
                "recall": overall[name]["recall"]["rate"],
                "f1": overall[name]["f1"]["value"],
                "false_flag_rate": overall[name]["false_flag_rate"]["rate"],
                "auroc": overall[name]["auroc"]["value"],
            }
            for name in ("rule_flag", "total")
        },
        "reports": report["files"],
    }
    _print_summary(f"validate-reward: wrote {report['files']['md']}", summary)


@app.command(
    name="eval",
    epilog=(
        "Example: medsafe eval --model base=models/base/tiny --model sft=models/lora/final_lora "
        "--model rl=models/rl/final_model\n\n"
        "Example: medsafe eval --model rl=models/rl/final_model --benchmark msb=../msb_test.csv\n\n"
        "Example: medsafe eval --predictions preds.jsonl --name external"
    ),
)
def eval_(
    model: list[str] = typer.Option(
        None,
        "--model",
        help="NAME=PATH (repeatable): a merged model folder or a LoRA adapter folder (base taken from its "
        "config); two or more are put side by side with paired differences. A bare PATH is named by --name.",
    ),
    predictions: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Score an existing predictions JSONL instead of generating."
    ),
    benchmark: list[str] = typer.Option(
        None,
        "--benchmark",
        help="NAME=PATH (repeatable): an extra prompt set, a MedSafetyBench CSV (harmful_medical_request[, "
        "safe_response]) or a JSONL prompt file, evaluated beside the held-out sets.",
    ),
    test_file: list[Path] = typer.Option(
        None,
        "--test-file",
        help="Replace the held-out sets (red_team_eval, test minus gold, over_refusal) with these files.",
    ),
    name: str | None = typer.Option(
        None, help="Report folder name under reports/eval/ (default: the model's name, or A-vs-B-vs-C)."
    ),
    profile: str = ProfileOpt,
    workdir: Path = WorkdirOpt,
    set_: list[str] = SetOpt,
    no_wait: bool = NoWaitOpt,
) -> None:
    """Evaluate models (or a predictions file) on held-out prompts: the safety targets, over-refusal and a
    helpfulness proxy with 95% intervals (plus the independent judge when on)."""
    from tasks.core.errors import MedsafeError
    from tasks.evaluate.eval_sets import parse_named

    if bool(model) == (predictions is not None):
        typer.secho(
            "medsafe eval: give exactly one of --model NAME=PATH (repeatable) or --predictions FILE",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=2)
    try:
        models = dict(
            parse_named(m, "--model") if "=" in m else (name or Path(m).name, Path(m)) for m in model or []
        )
        benchmarks = dict(parse_named(b, "--benchmark") for b in benchmark or [])
    except MedsafeError as exc:
        typer.secho(f"medsafe eval: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    from flows.evaluate import eval_flow

    profile = _profile("eval", profile, set_, workdir)

    summary = _run_stage(
        "eval",
        eval_flow,
        profile=profile,
        predictions=str(predictions) if predictions else None,
        test_files=[str(p) for p in test_file] if test_file else None,
        name=name,
        workdir=str(workdir),
        models={k: str(v) for k, v in models.items()} or None,
        benchmarks={k: str(v) for k, v in benchmarks.items()} or None,
        no_wait=no_wait,
    )
    _print_summary("eval: done", summary)


@app.command(
    epilog="Example: medsafe run --profile tiny --workdir runs/tiny\n\n"
    "Example: medsafe run --profile qwen3-0.6b --set model.base=/models/my-medical-qwen3 --skip-sft"
)
def run(
    profile: str = ProfileOpt,
    source: list[str] = SourcesOpt,
    workdir: Path = WorkdirOpt,
    set_: list[str] = SetOpt,
    skip_sft: bool = typer.Option(
        False,
        "--skip-sft",
        help="No SFT: RL starts from the base model (rl.init_from=base; evaluation compares base vs RL).",
    ),
    no_wait: bool = NoWaitOpt,
) -> None:
    """The whole pipeline as one flow: data → gate → SFT → RL → evaluation (re-runs hit the cache)."""
    from flows.pipeline import medsafe_pipeline

    profile = _profile("pipeline", profile, skip_sft_sets(set_, skip_sft), workdir)
    _check_sources("pipeline", profile, source, workdir)
    summary = _run_stage(
        "pipeline",
        medsafe_pipeline,
        profile=profile,
        sources=source or None,
        workdir=str(workdir),
        no_wait=no_wait,
    )
    _print_summary("run: done", summary)


@app.command(epilog="Example: medsafe profiles --show qwen3-0.6b --set rl.learning_rate=5e-6")
def profiles(
    show: str | None = typer.Option(None, help="Print one profile's full, validated settings."),
    set_: list[str] = SetOpt,
    fields: bool = typer.Option(False, "--fields", help="List every setting with its default and help."),
) -> None:
    """List the named profiles, or show one resolved (with any --set applied)."""
    from flows.recipes import available_profiles, field_help, load_profile, parse_sets
    from tasks.core.errors import MedsafeError

    if fields:
        rows = field_help()
        if _STATE["json"]:
            typer.echo(json.dumps([{"key": k, "default": d, "help": h} for k, d, h in rows], indent=2))
            return
        for key, default, description in rows:
            typer.echo(f"{key:32s} {default:14s} {description}".rstrip())
        return
    try:
        if show:
            shown = load_profile(show, parse_sets(set_) or None)
            typer.echo(json.dumps(shown.model_dump(mode="json"), indent=2))  # JSON with or without --json
            return
        listed = {name: load_profile(name).description for name in available_profiles()}
    except MedsafeError as exc:
        _fail("profiles", exc)
    if _STATE["json"]:
        typer.echo(json.dumps(listed, ensure_ascii=False, indent=2))
        return
    for name, description in listed.items():
        typer.echo(f"{name:12s} {description}")


@app.command(epilog="Example: medsafe setup   # once per machine or PREFECT_HOME; `make install` runs it")
def setup() -> None:
    """Prepare this machine once: create Prefect's local database, so that the first `medsafe data` does not
    spend ~4 s creating it. Does nothing when it exists or a server is configured."""
    from flows.server import prepare_database

    result = prepare_database()
    typer.echo(json.dumps(result) if _STATE["json"] else result["detail"])


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
    """The console entry point: a failed command's message is the last thing it prints."""
    import atexit

    def last_words() -> None:
        for line in _STATE["pending"]:
            typer.secho(line, fg=typer.colors.RED, err=True)

    # Registered before Prefect is imported, so it runs after Prefect's own exit handlers (they stop the
    # temporary server and flush its logs, and print while they do).
    atexit.register(last_words)
    _STATE["defer"] = True
    try:
        app()
    except SystemExit as exc:
        _exit_now(exc.code)
        raise


def _exit_now(code: object) -> None:
    """End the process with `code` once every exit handler has run, skipping the interpreter's teardown.

    Tearing down what a command imported (Great Expectations, pydantic, pandas: ~430k objects) takes
    1.1-1.4 s after the work is done: 7% of a 50k-row `medsafe data`. Nothing is lost by skipping it: the
    exit handlers (Prefect's, logging's, last_words) run here as they would at exit, files are written
    atomically and closed, and the streams are flushed. With a thread still working or an exit status
    that is not a number, Python ends the process as usual.
    """
    import atexit
    import threading

    if code is not None and not isinstance(code, int):
        return
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()  # what Python runs at exit, in the same order (and clears them)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
