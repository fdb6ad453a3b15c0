from __future__ import annotations

import pytest

from tasks.core.config import ModelConfig
from tasks.core.workdir import Workdir
from tasks.model import tiny as tiny_model
from tasks.model.chat import build_chat_prompt, decode_completion, format_sft_example
from tasks.model.generate import generate, generate_ids
from tasks.model.loading import (
    ModelUnavailable,
    load_model,
    load_tokenizer,
    resolve_base_model,
    resolve_dtype,
)

TEXTS = [
    "发烧三天，咳嗽，需要就医吗？",
    "Fever for three days with a cough: see a doctor.",
    "建议多喝水，注意休息。",
] * 20
TINY = ModelConfig(base="tiny", tiny=True, dtype="float32", max_seq_len=256)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_model.build_tiny_base(tmp_path_factory.mktemp("base") / "tiny", TEXTS)


@pytest.fixture(scope="module")
def tok_model(base):
    return load_tokenizer(base), load_model(base, TINY)


def test_build_chat_prompt_opens_the_assistant_turn_with_thinking_on(tok_model):
    tok, _ = tok_model
    prompt = build_chat_prompt(tok, "头痛怎么办？")
    assert prompt == "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n"


def test_format_sft_example_puts_reasoning_in_think_tags(tok_model):
    tok, _ = tok_model
    example = format_sft_example(tok, "q?", " because \n", "answer")
    assert example == {
        "messages": [
            {"role": "user", "content": "q?"},
            {"role": "assistant", "content": "<think>\nbecause\n</think>\n\nanswer"},
        ]
    }
    rendered = tok.apply_chat_template(example["messages"], tokenize=False)
    assert "<|im_start|>assistant\n<think>\nbecause\n</think>\n\nanswer<|im_end|>" in rendered


def test_decode_completion_keeps_think_and_drops_stop_tokens(tok_model):
    tok, _ = tok_model
    ids = tok.encode("<think>\nr\n</think>\n\nok<|im_end|><|endoftext|>junk", add_special_tokens=False)
    assert decode_completion(tok, ids) == "<think>\nr\n</think>\n\nok"


def test_generate_returns_one_completion_per_prompt_in_order(tok_model):
    tok, model = tok_model
    prompts = [
        build_chat_prompt(tok, q) for q in ["a much longer question about a fever and a cough", "hi", "头痛"]
    ]
    ids = generate_ids(model, tok, prompts, max_new_tokens=6, temperature=0.0, batch_size=2)
    assert len(ids) == 3 and all(0 < len(row) <= 6 for row in ids)
    alone = generate_ids(model, tok, prompts[1:2], max_new_tokens=6, temperature=0.0, batch_size=1)
    assert alone[0] == ids[1]
    texts = generate(model, tok, prompts, max_new_tokens=6, temperature=0.0, batch_size=2)
    assert texts == [decode_completion(tok, row) for row in ids]


def test_sampling_is_reproducible_with_a_seed_and_leaves_global_rng_alone(tok_model):
    import torch

    tok, model = tok_model
    prompts = [build_chat_prompt(tok, "发烧")] * 2
    state = torch.get_rng_state()
    a = generate_ids(model, tok, prompts, max_new_tokens=8, temperature=1.0, batch_size=2, seed=3)
    b = generate_ids(model, tok, prompts, max_new_tokens=8, temperature=1.0, batch_size=2, seed=3)
    assert a == b
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training is False


def test_load_model_applies_and_merges_an_adapter(base, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    peft_model = get_peft_model(
        load_model(base, TINY), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    assert isinstance(load_model(base, TINY, adapter=tmp_path / "adapter"), PeftModel)
    merged = load_model(base, TINY, adapter=tmp_path / "adapter", merge=True)
    plain = load_model(base, TINY)
    assert not isinstance(merged, PeftModel)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not merged.state_dict()[q].equal(plain.state_dict()[q])


def test_auto_dtype_is_float32_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("GPU present")
    assert resolve_dtype("auto") == torch.float32


def test_resolve_tiny_builds_under_the_workdir(tmp_path, monkeypatch):
    monkeypatch.setattr(tiny_model, "sample_texts", lambda: TEXTS)
    monkeypatch.setattr(tiny_model, "sample_conversations", lambda: [])  # where it lands, not the warm-up
    path = resolve_base_model(TINY, Workdir.at(tmp_path))
    assert path == str(tmp_path / "models" / "base" / "tiny")
    assert (tmp_path / "models" / "base" / "tiny" / "tokenizer.json").is_file()


def test_resolve_prefers_medsafe_base_model_and_local_paths(base, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSAFE_BASE_MODEL", str(base))
    assert resolve_base_model(ModelConfig(base="Qwen/Qwen3-0.6B"), Workdir.at(tmp_path)) == str(
        base.resolve()
    )
    monkeypatch.delenv("MEDSAFE_BASE_MODEL")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        resolve_base_model(ModelConfig(base=str(tmp_path / "missing")), Workdir.at(tmp_path))


def test_offline_hub_id_raises_one_actionable_message(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSAFE_BASE_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable) as info:
        resolve_base_model(ModelConfig(base="medsafe-tests/no-such-model"), Workdir.at(tmp_path))
    message = str(info.value)
    assert "'medsafe-tests/no-such-model'" in message
    assert "huggingface-cli download medsafe-tests/no-such-model --local-dir DIR" in message
    assert "MEDSAFE_BASE_MODEL=DIR" in message and "HF_HUB_OFFLINE" in message
    assert info.value.__suppress_context__


def test_modelscope_hub_downloads_through_modelscope_and_loads_from_where_files_land(
    base, tmp_path, monkeypatch
):
    """model.hub modelscope: the modelscope package's snapshot_download is called with the repo id and the
    weight patterns, and the model is loaded from the folder it returns (offline: it copies a local build)."""
    import shutil
    import sys
    import types

    calls = []

    def snapshot_download(repo_id, allow_patterns=None, **kw):  # noqa: ANN001
        calls.append((repo_id, allow_patterns))
        dest = tmp_path / "modelscope_cache" / repo_id
        shutil.copytree(base, dest)
        return str(dest)

    monkeypatch.delenv("MEDSAFE_BASE_MODEL", raising=False)
    monkeypatch.setitem(sys.modules, "modelscope", types.SimpleNamespace(snapshot_download=snapshot_download))
    cfg = ModelConfig(base="Qwen/Qwen3-0.6B", hub="modelscope", dtype="float32")
    folder = resolve_base_model(cfg, Workdir.at(tmp_path))
    assert folder == str(tmp_path / "modelscope_cache" / "Qwen/Qwen3-0.6B")
    assert calls and calls[0][0] == "Qwen/Qwen3-0.6B" and "*.safetensors" in calls[0][1]
    assert load_model(folder, cfg).config.hidden_size > 0


def test_modelscope_hub_without_the_package_or_the_network_names_the_local_route(tmp_path, monkeypatch):
    import sys
    import types

    monkeypatch.delenv("MEDSAFE_BASE_MODEL", raising=False)
    cfg = ModelConfig(base="Qwen/Qwen3-0.6B", hub="modelscope")
    monkeypatch.setitem(sys.modules, "modelscope", None)
    with pytest.raises(
        ModelUnavailable, match=r"pip install 'medsafe\[modelscope\]'.*MEDSAFE_BASE_MODEL=DIR"
    ):
        resolve_base_model(cfg, Workdir.at(tmp_path))

    def unreachable(repo_id, **kw):  # noqa: ANN001
        raise ConnectionError("Failed to resolve 'www.modelscope.cn'")

    monkeypatch.setitem(sys.modules, "modelscope", types.SimpleNamespace(snapshot_download=unreachable))
    with pytest.raises(ModelUnavailable) as info:
        resolve_base_model(cfg, Workdir.at(tmp_path))
    message = str(info.value)
    assert "not available from ModelScope (ConnectionError: Failed to resolve" in message
    assert "modelscope download --model Qwen/Qwen3-0.6B --local_dir DIR" in message
    assert "MEDSAFE_BASE_MODEL=DIR" in message and info.value.__suppress_context__
