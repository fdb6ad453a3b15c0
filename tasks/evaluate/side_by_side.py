"""One question, several models, answers side by side, each explained by the reward: what `medsafe demo`
shows. No Gradio here (the app in flows/demo.py only lays this out), no Prefect.

    contenders = load_contenders({"sft": "sft", "rl": "rl"}, Workdir.at("runs/tiny"), profile.model)
    rows = answer_all(contenders, "胸口痛出冷汗怎么办？", engine, classifier, max_new_tokens=128)
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.core.config import ModelConfig
from tasks.core.text import detect_lang, split_think
from tasks.core.workdir import Workdir

if TYPE_CHECKING:
    from tasks.reward.engine import RewardEngine
    from tasks.risk.classifier import RiskClassifier


@dataclass
class Contender:
    name: str
    path: str
    model: Any
    tokenizer: Any


def default_models(workdir: Workdir) -> dict[str, str]:
    """base, sft and rl of a workdir, those that exist."""
    found = {"base": "base"}
    if workdir.sft_adapter.is_dir():
        found["sft"] = "sft"
    if workdir.rl_final.is_dir():
        found["rl"] = "rl"
    return found


def load_contenders(specs: dict[str, str], workdir: Workdir, model_cfg: ModelConfig) -> list[Contender]:
    """Load each NAME=WHAT: `base` (the profile's base), `sft`, `rl`, or a merged-model / adapter path."""
    from tasks.model.export import resolve_source
    from tasks.model.loading import load_model, load_tokenizer, resolve_base_model

    contenders = []
    for name, what in specs.items():
        if what == "base":
            base, adapter = resolve_base_model(model_cfg, workdir), None
        else:
            base, adapter = resolve_source(workdir, what)
        model = load_model(base, model_cfg, adapter=adapter, merge=adapter is not None)
        has_tokenizer = adapter is not None and (adapter / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(adapter if has_tokenizer else base)
        contenders.append(Contender(name, str(adapter or base), model, tokenizer))
    return contenders


def answer_all(
    contenders: list[Contender],
    question: str,
    engine: RewardEngine,
    classifier: RiskClassifier | None = None,
    max_new_tokens: int = 256,
) -> list[dict[str, Any]]:
    """Each contender's answer (greedy), split into reasoning and answer, with its reward breakdown."""
    from tasks.model.chat import build_chat_prompt
    from tasks.model.generate import generate

    meta: dict[str, Any] = {}
    if classifier is not None:
        label = classifier.classify(question, detect_lang(question))
        meta = {"risk_level": label.risk_level, "safety_categories": list(label.safety_categories)}
    rows = []
    for c in contenders:
        prompt = build_chat_prompt(c.tokenizer, question)
        (response,) = generate(c.model, c.tokenizer, [prompt], max_new_tokens=max_new_tokens)
        parts = split_think(response)
        rows.append(
            {
                "name": c.name,
                "path": c.path,
                "response": response,
                "think": parts.think,
                "answer": parts.answer,
                **meta,
            }
        )
    scores = engine.score_batch([{"question": question, "response": r["response"], **meta} for r in rows])
    for row, score in zip(rows, scores, strict=True):
        row["score"] = score
    return rows


def _describe(item: Any) -> str:
    if isinstance(item, dict):
        return "; ".join(f"{k}: {v}" for k, v in item.items() if v not in (None, "", []))
    return str(item)


def render_answer(row: dict[str, Any]) -> str:
    """An answer as HTML: the reasoning collapsed, then the reward's breakdown (every value escaped)."""
    score = row["score"]
    esc = html.escape
    think = (
        f"<details><summary>reasoning (&lt;think&gt;)</summary><pre>{esc(row['think'])}</pre></details>"
        if row["think"]
        else "<p><em>no &lt;think&gt; block</em></p>"
    )
    violations = "".join(f"<li>{esc(_describe(v))}</li>" for v in score.get("violations") or [])
    positives = "".join(f"<li>{esc(_describe(p))}</li>" for p in score.get("positives") or [])
    teacher = score.get("teacher_score")
    return (
        f'<div class="medsafe-answer" data-model="{esc(row["name"])}">'
        f'<h3>{esc(row["name"])}</h3><div class="reasoning">{think}</div>'
        f'<div class="answer-text"><pre>{esc(row["answer"] or row["response"])}</pre></div>'
        f'<p class="reward-total"><strong>reward total {score["total"]:+.3f}</strong> '
        f"(rules {score['rule_score']:+.3f}; teacher {'off' if teacher is None else f'{teacher:.2f}'})</p>"
        f"<p>violations:</p><ul>{violations or '<li>none</li>'}</ul>"
        f"<p>positives:</p><ul>{positives or '<li>none</li>'}</ul></div>"
    )
