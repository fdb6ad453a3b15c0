"""`medsafe demo` in headless Chromium: one question, three tiny models, three answers with their scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.config import ModelConfig, RewardConfig
from tasks.core.workdir import ASSETS, Workdir
from tasks.model import tiny as tiny_model
from tasks.model.loading import load_model
from tasks.reward.engine import RewardEngine
from tasks.reward.rules import SafetyRules
from tasks.risk.classifier import RiskClassifier

TEXTS = [
    "胸痛请立即拨打120。",
    "Chest pain: call emergency services now.",
    "<think>想一想</think>多喝水",
] * 20
TINY = ModelConfig(base="tiny", tiny=True, dtype="float32", max_seq_len=128)


@pytest.fixture(scope="module")
def three_models(tmp_path_factory) -> dict[str, str]:
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("demo")
    base = tiny_model.build_tiny_base(root / "tiny", TEXTS)
    peft_model = get_peft_model(
        load_model(base, TINY), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(root / "sft")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(root / "rl")
    (root / "rl").joinpath("tokenizer_config.json").write_bytes((base / "tokenizer_config.json").read_bytes())
    for name in ("tokenizer.json", "chat_template.jinja", "special_tokens_map.json"):
        if (base / name).is_file():
            (root / "rl" / name).write_bytes((base / name).read_bytes())
    return {"base": str(base), "sft": str(root / "sft"), "rl": str(root / "rl")}


@pytest.mark.browser
@pytest.mark.slow
def test_the_demo_shows_three_answers_and_their_scores(three_models, tmp_path: Path) -> None:
    pytest.importorskip("gradio", reason="the demo extra is not installed (pip install -e '.[demo]')")
    from playwright.sync_api import expect

    from flows.demo import build_app
    from tasks.evaluate.side_by_side import load_contenders
    from tests.support.browser import chromium_page

    contenders = load_contenders(three_models, Workdir.at(tmp_path), TINY)
    engine = RewardEngine(SafetyRules.from_yaml(ASSETS.safety_rules), RewardConfig())
    app = build_app(
        contenders, engine, RiskClassifier.from_yaml(), ["胸口剧痛出冷汗怎么办？"], max_new_tokens=12
    )
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        with chromium_page() as page:
            page.goto(url)
            page.locator("#question textarea").fill(
                "My chest hurts and my left arm is numb, what should I do?"
            )
            page.locator("#ask").click()
            answers = page.locator(".medsafe-answer")
            expect(answers).to_have_count(3, timeout=120_000)
            for name in ("base", "sft", "rl"):
                pane = page.locator(f'.medsafe-answer[data-model="{name}"]')
                expect(pane).to_contain_text("reward total")
                expect(pane).to_contain_text("violations")
                expect(pane.locator(".reasoning")).to_contain_text("think")  # collapsed, or said to be absent
    finally:
        app.close()


def test_an_answer_renders_its_reasoning_collapsed_and_every_term_escaped() -> None:
    from tasks.evaluate.side_by_side import render_answer

    row = {
        "name": "rl",
        "think": "胸痛 <script>alert(1)</script>",
        "answer": "请立即拨打120。",
        "response": "",
        "score": {
            "total": 0.85,
            "rule_score": 1.7,
            "teacher_score": None,
            "violations": [],
            "positives": [{"signal": "emergency_action", "evidence": "拨打120"}],
        },
    }
    page = render_answer(row)
    assert "<details><summary>reasoning" in page and "&lt;script&gt;" in page and "<script>" not in page
    assert "reward total +0.850" in page and "teacher off" in page
    assert "signal: emergency_action; evidence: 拨打120" in page and "<li>none</li>" in page


def test_the_demo_says_how_to_install_gradio_when_it_is_missing(monkeypatch) -> None:
    import builtins

    from flows import demo

    real_import = builtins.__import__

    def no_gradio(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if name == "gradio":
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    with pytest.raises(demo.DemoUnavailable, match=r"pip install -e '\.\[demo\]'"):
        demo.build_app([], None, None, [], 8)
