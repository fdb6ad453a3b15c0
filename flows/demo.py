"""`medsafe demo`: a Gradio page to ask the models one question and read their answers side by side, each
with its reasoning collapsed and the reward's explanation under it (tasks/evaluate/side_by_side.py).

Gradio is an optional extra: `pip install -e .[demo]`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tasks.core.errors import MedsafeError
from tasks.core.io import read_jsonl
from tasks.core.workdir import ASSETS, Workdir

CSS = ".medsafe-answer pre{white-space:pre-wrap} .medsafe-answer{border:1px solid #ddd;padding:.5rem}"


class DemoUnavailable(MedsafeError, RuntimeError):
    """Gradio is not installed."""


def _require_gradio():  # noqa: ANN202
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError:
        raise DemoUnavailable("the demo needs Gradio, an optional extra: pip install -e '.[demo]'") from None
    return gradio


def example_questions(workdir: Workdir, limit: int = 40) -> list[str]:
    """Questions to pick from: the held-out red-team prompts, then the over-refusal set."""
    questions: list[str] = []
    for path in (workdir.split("red_team_eval"), ASSETS.over_refusal):
        if path.is_file():
            questions += [r["question"] for r in read_jsonl(path)[: limit // 2] if r.get("question")]
    return questions


def build_app(contenders: list, engine: Any, classifier: Any, examples: list[str], max_new_tokens: int):  # noqa: ANN201
    """The Gradio Blocks: a question box (or a pick from the examples), one answer column per model."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise DemoUnavailable("the demo needs Gradio, an optional extra: pip install -e '.[demo]'") from None
    from tasks.evaluate.side_by_side import answer_all, render_answer

    def ask(question: str) -> list[str]:
        question = (question or "").strip()
        if not question:
            return ["<p>Type a question or pick one.</p>"] * len(contenders)
        rows = answer_all(contenders, question, engine, classifier, max_new_tokens=max_new_tokens)
        return [render_answer(row) for row in rows]

    with gr.Blocks(title="medsafe: models side by side") as app:
        gr.Markdown(
            "## medsafe: one question, each model's answer, and how the safety reward scores it\n"
            "Not a medical device. The tiny profile's models prove the pipeline, not medical quality."
        )
        with gr.Row():
            question = gr.Textbox(label="Question", lines=2, elem_id="question", scale=4)
            pick = gr.Dropdown(choices=examples, label="or pick a held-out prompt", scale=3)
        button = gr.Button("Ask every model", variant="primary", elem_id="ask")
        with gr.Row():
            panes = [gr.HTML(label=c.name, elem_id=f"answer-{c.name}") for c in contenders]
        pick.change(lambda q: q, inputs=pick, outputs=question)
        button.click(ask, inputs=question, outputs=panes)
        question.submit(ask, inputs=question, outputs=panes)
    return app


def launch_demo(
    specs: dict[str, str],
    workdir: Path,
    settings: Any,
    port: int | None,
    max_new_tokens: int,
    block: bool = True,
):  # noqa: ANN201
    """Load the models, build the app and serve it on 127.0.0.1; returns (app, url)."""
    _require_gradio()
    from tasks.evaluate.side_by_side import default_models, load_contenders
    from tasks.reward.engine import RewardEngine
    from tasks.reward.rules import SafetyRules
    from tasks.reward.teacher import Teacher
    from tasks.risk.classifier import RiskClassifier

    wd = Workdir.at(workdir)
    contenders = load_contenders(specs or default_models(wd), wd, settings.model)
    teacher = Teacher.from_env(settings.teacher, wd.teacher_cache)
    engine = RewardEngine(SafetyRules.from_yaml(ASSETS.safety_rules), settings.reward, teacher)
    app = build_app(contenders, engine, RiskClassifier.from_yaml(), example_questions(wd), max_new_tokens)
    _, url, _ = app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=not block, quiet=True, css=CSS
    )
    return app, url
