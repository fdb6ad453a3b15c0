from __future__ import annotations

import json
import math

import pytest

from tasks.model.chat import build_chat_prompt
from tasks.model.generate import generate
from tasks.model.tiny import QWEN3_CHAT_TEMPLATE, TINY_ARCH, Warmup, build_tiny_base, render_conversation
from tasks.model.tiny_corpus import sample_conversations, sample_texts

TEXTS = [
    "患者胸痛三小时，伴有出汗，应立即拨打120。",
    "Chest pain for three hours with sweating: call emergency services now.",
    "不要自行服用抗生素，请咨询医生。",
    "Do not take antibiotics for a viral cold; rest and drink fluids.",
] * 20
CONVERSATIONS = [
    ("胸痛三小时伴出汗怎么办？", "胸痛伴出汗提示心梗可能。", "患者胸痛三小时，伴有出汗，应立即拨打120。"),
    (
        "Chest pain and sweating?",
        "Possible heart attack.",
        "Chest pain for three hours with sweating: call emergency services now.",
    ),
    ("感冒能吃抗生素吗？", "病毒感染抗生素无效。", "不要自行服用抗生素，请咨询医生。"),
    (
        "Antibiotics for a cold?",
        "Colds are viral.",
        "Do not take antibiotics for a viral cold; rest and drink fluids.",
    ),
]
QUICK = Warmup(steps=40)  # enough to fit four short conversations; the default recipe takes about a minute


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_base(
        tmp_path_factory.mktemp("base") / "tiny", TEXTS, seed=0, conversations=CONVERSATIONS, warmup=QUICK
    )
    return path, AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)


def conversation_loss(model, tok, conversation) -> float:
    """Mean next-token loss (nats) of the model on one chat-rendered conversation."""
    import torch

    ids = torch.tensor([tok.encode(render_conversation(tok, *conversation), add_special_tokens=False)])
    with torch.inference_mode():
        return model(input_ids=ids, labels=ids).loss.item()


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
    turn = tok.apply_chat_template(
        user + [{"role": "assistant", "content": "<think>\nr\n</think>\n\na"}], tokenize=False
    )
    assert turn.endswith("<|im_start|>assistant\n<think>\nr\n</think>\n\na<|im_end|>\n")
    thinking = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking == "<|im_start|>user\n胸痛怎么办<|im_end|>\n<|im_start|>assistant\n"
    no_think = tok.apply_chat_template(
        user, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_model_is_a_tiny_tied_qwen3_sized_to_the_tokenizer(tiny):
    _, tok, model = tiny
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.config.vocab_size == len(tok)
    assert model.config.hidden_size == TINY_ARCH["hidden_size"] and model.config.num_key_value_heads == 2
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id


def test_warm_up_brings_the_loss_well_below_random_init(tiny):
    from tasks.model.tiny import build_tiny_model

    path, tok, model = tiny
    random_init = build_tiny_model(tok, seed=0)
    chance = math.log(len(tok))
    assert conversation_loss(random_init, tok, CONVERSATIONS[0]) == pytest.approx(chance, abs=0.3)
    assert conversation_loss(model, tok, CONVERSATIONS[0]) < chance - 3
    record = json.loads((path / "medsafe_tiny.json").read_text())["warmup"]
    assert record["steps"] == QUICK.steps and record["conversations"] == len(CONVERSATIONS)
    assert record["final_loss"] < record["first_loss"] - 3


def test_warm_up_is_deterministic_for_a_seed(tiny, tmp_path):
    path, _, _ = tiny
    again = build_tiny_base(tmp_path / "tiny", TEXTS, seed=0, conversations=CONVERSATIONS, warmup=QUICK)
    assert (again / "model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()


def test_rebuild_is_skipped_for_the_same_inputs_and_done_for_a_new_seed_or_warm_up(tmp_path):
    out = tmp_path / "tiny"
    build_tiny_base(out, TEXTS, seed=0)
    weights = out / "model.safetensors"
    first = (weights.stat().st_mtime_ns, weights.read_bytes())
    assert (
        json.loads((out / "medsafe_tiny.json").read_text())["warmup"]["steps"] == 0
    )  # own texts: no warm-up
    build_tiny_base(out, TEXTS, seed=0)
    assert weights.stat().st_mtime_ns == first[0]
    build_tiny_base(out, TEXTS, seed=1)
    assert weights.read_bytes() != first[1]
    assert json.loads((out / "medsafe_tiny.json").read_text())["seed"] == 1
    second = weights.read_bytes()
    build_tiny_base(out, TEXTS, seed=1, conversations=CONVERSATIONS, warmup=Warmup(steps=2))
    assert weights.read_bytes() != second


def test_build_without_text_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="texts="):
        build_tiny_base(tmp_path / "tiny", ["", "  "])


def test_sample_texts_reads_samples_and_red_team_strings(tmp_path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "red_team").mkdir()
    (tmp_path / "samples" / "a.jsonl").write_text(
        json.dumps({"question": "头痛", "meta": {"answer": "休息"}}) + "\nnot json\n"
    )
    (tmp_path / "samples" / "c.json").write_text(json.dumps([{"Question": "咳嗽", "Response": "多喝水"}]))
    (tmp_path / "red_team" / "b.jsonl").write_text(json.dumps({"prompt": "overdose?", "tags": ["x"]}) + "\n")
    assert sorted(sample_texts(tmp_path)) == sorted(["头痛", "休息", "咳嗽", "多喝水", "overdose?", "x"])


def test_sample_conversations_reads_every_shipped_schema(tmp_path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "red_team").mkdir()
    (tmp_path / "samples" / "o1.json").write_text(
        json.dumps(
            [
                {"Question": "咳嗽", "Complex_CoT": "多为感冒", "Response": "多喝水"},
                {
                    "Question": "头晕",
                    "Complex_CoT": "",
                    "Response": "<think>\n可能低血糖\n</think>\n\n吃点糖",
                },
                {"Question": "发热", "Complex_CoT": "病毒", "Response": ""},
            ]
        )
    )
    (tmp_path / "samples" / "r1.jsonl").write_text(
        json.dumps({"question": "腹痛", "think": "排除阑尾炎", "answer": "就医"}) + "\n{broken\n[1, 2]\n"
    )
    (tmp_path / "samples" / "bench.csv").write_text(
        "harmful_medical_request,safe_response\nhow to overdose?,I can't help.\n"
    )
    (tmp_path / "samples" / "README.md").write_text("# not data")
    (tmp_path / "red_team" / "rt.jsonl").write_text(
        json.dumps(
            {
                "id": "x",
                "question": "chest pain?",
                "reference_answer": "<think>ACS until proven otherwise</think>\nCall 911.",
            }
        )
        + "\n"
    )
    assert sample_conversations(tmp_path) == [
        ("咳嗽", "多为感冒", "多喝水"),
        ("头晕", "可能低血糖", "吃点糖"),
        ("腹痛", "排除阑尾炎", "就医"),
    ]  # the red-team set is the evaluation set: never in the warm-up


def test_shipped_conversations_all_carry_reasoning():
    conversations = sample_conversations()
    assert len(conversations) > 200
    assert all(q and think and answer for q, think, answer in conversations)
    assert not any("<think>" in a or "</think>" in a or "</think>" in t for _, t, a in conversations)
    assert any(q.isascii() for q, _, _ in conversations) and any(not q.isascii() for q, _, _ in conversations)


@pytest.mark.slow
def test_default_build_writes_think_blocks_and_domain_words(tmp_path):
    """The real recipe on the shipped samples: about a minute on 2 CPU cores."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_base(tmp_path / "tiny")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    conversations = sample_conversations()[::20]
    mean_loss = sum(conversation_loss(model, tok, c) for c in conversations) / len(conversations)
    assert mean_loss < math.log(len(tok)) - 2.5
    questions = [
        "我爸今天早上突然说话不清楚，右手没力气，要紧吗？",
        "Can I double my blood pressure pill if I forgot yesterday's?",
        "孕妇感冒了可以吃什么药？",
        "My child swallowed some of my iron tablets. What should I do?",
        "经常失眠，可以自己买安眠药吃吗？",
        "What is the first-line treatment for anaphylaxis?",
    ]
    # medical-o1 reasoning chains are long, so a think block needs room to close
    responses = generate(model, tok, [build_chat_prompt(tok, q) for q in questions], max_new_tokens=256)
    assert all(r.startswith("<think>") for r in responses)
    assert sum("</think>" in r for r in responses) >= len(responses) // 2


def test_one_thread_trains_the_tiny_model_on_one_thread_and_restores_the_count() -> None:
    import torch

    from tasks.model.tiny import one_thread

    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), one_thread():
        raise RuntimeError("a failed run")
    assert torch.get_num_threads() == before
    with one_thread(False):  # a real model keeps torch's count
        assert torch.get_num_threads() == before
