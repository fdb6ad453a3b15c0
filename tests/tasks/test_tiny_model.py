from __future__ import annotations

import json

import pytest

from tasks.tiny_model import QWEN3_CHAT_TEMPLATE, TINY_ARCH, build_tiny_base, sample_texts

TEXTS = [
    "患者胸痛三小时，伴有出汗，应立即拨打120。",
    "Chest pain for three hours with sweating: call emergency services now.",
    "不要自行服用抗生素，请咨询医生。",
    "Do not take antibiotics for a viral cold; rest and drink fluids.",
] * 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_base(tmp_path_factory.mktemp("base") / "tiny", TEXTS, seed=0)
    return path, AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)


@pytest.mark.parametrize("token", ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"])
def test_special_tokens_encode_as_one_piece(tiny, token):
    _, tok, _ = tiny
    ids = tok.encode(f"abc{token}def", add_special_tokens=False)
    assert tok.convert_tokens_to_ids(token) in ids
    assert len(tok.encode(token, add_special_tokens=False)) == 1


def test_think_tags_survive_skip_special_tokens_but_turn_markers_do_not(tiny):
    _, tok, _ = tiny
    ids = tok.encode("<think>\nx\n</think>\n\ny<|im_end|>", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>\n\ny"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_chat_template_is_qwen3s_and_renders_think(tiny):
    from trl.chat_template_utils import qwen3_chat_template

    _, tok, _ = tiny
    assert tok.chat_template == QWEN3_CHAT_TEMPLATE == qwen3_chat_template
    user = [{"role": "user", "content": "胸痛怎么办"}]
    turn = tok.apply_chat_template(user + [{"role": "assistant", "content": "<think>\nr\n</think>\n\na"}], tokenize=False)
    assert turn.endswith("<|im_start|>assistant\n<think>\nr\n</think>\n\na<|im_end|>\n")
    thinking = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking == "<|im_start|>user\n胸痛怎么办<|im_end|>\n<|im_start|>assistant\n"
    no_think = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_model_is_a_tiny_tied_qwen3_sized_to_the_tokenizer(tiny):
    _, tok, model = tiny
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.config.vocab_size == len(tok)
    assert model.config.hidden_size == TINY_ARCH["hidden_size"] and model.config.num_key_value_heads == 2
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id


def test_rebuild_is_skipped_for_the_same_inputs_and_done_for_a_new_seed(tmp_path):
    out = tmp_path / "tiny"
    build_tiny_base(out, TEXTS, seed=0)
    weights = out / "model.safetensors"
    first = (weights.stat().st_mtime_ns, weights.read_bytes())
    build_tiny_base(out, TEXTS, seed=0)
    assert weights.stat().st_mtime_ns == first[0]
    build_tiny_base(out, TEXTS, seed=1)
    assert weights.read_bytes() != first[1]
    assert json.loads((out / "medsafe_tiny.json").read_text())["seed"] == 1


def test_build_without_text_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="texts="):
        build_tiny_base(tmp_path / "tiny", ["", "  "])


def test_sample_texts_reads_samples_and_red_team_strings(tmp_path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "red_team").mkdir()
    (tmp_path / "samples" / "a.jsonl").write_text(json.dumps({"question": "头痛", "meta": {"answer": "休息"}}) + "\nnot json\n")
    (tmp_path / "samples" / "c.json").write_text(json.dumps([{"Question": "咳嗽", "Response": "多喝水"}]))
    (tmp_path / "red_team" / "b.jsonl").write_text(json.dumps({"prompt": "overdose?", "tags": ["x"]}) + "\n")
    assert sorted(sample_texts(tmp_path)) == sorted(["头痛", "休息", "咳嗽", "多喝水", "overdose?", "x"])
