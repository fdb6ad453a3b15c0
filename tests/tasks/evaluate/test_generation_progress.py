"""The evaluation's generation progress bar: answers done / total, and the answers themselves untouched."""

from __future__ import annotations

from tasks.core.config import ModelConfig
from tasks.evaluate.predictions import _progress
from tasks.model.chat import build_chat_prompt
from tasks.model.generate import generate
from tasks.model.loading import load_model, load_tokenizer
from tasks.model.tiny import build_tiny_base


def test_progress_counts_every_answer_and_leaves_them_unchanged(tmp_path, capsys):
    base = build_tiny_base(tmp_path / "tiny", texts=["头痛怎么办？请就医。"] * 20)
    model, tok = (
        load_model(base, ModelConfig(base=str(base), tiny=True, dtype="float32")),
        load_tokenizer(base),
    )
    prompts = [build_chat_prompt(tok, f"问题{i}？") for i in range(5)]
    plain = generate(model, tok, prompts, max_new_tokens=4, batch_size=2)
    with _progress(model, len(prompts), "tiny"):
        counted = generate(model, tok, prompts, max_new_tokens=4, batch_size=2)
    assert counted == plain and "generate" not in vars(model)  # same answers; the wrapper is gone
    assert "5/5" in capsys.readouterr().err
