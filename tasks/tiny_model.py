"""The `tiny` base: a Qwen3-architecture model with random weights and a locally trained tokenizer.

Both are built from the project's own sample text in seconds on a CPU, so the whole pipeline runs
offline. The tokenizer carries Qwen3's real chat template and special tokens, so every code path
(chat formatting, `<think>` handling, assistant-only loss) is the one a real Qwen3 model takes.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flows.config import ASSETS_DIR
from tasks.io import iter_jsonl, text_hash, write_json

log = logging.getLogger(__name__)

BUILD_VERSION = "tiny-v1"  # bump when the recipe below changes, so old builds are rebuilt
FINGERPRINT_FILE = "medsafe_tiny.json"
VOCAB_SIZE = 3000
# Qwen3's special tokens; the think tags are added but not "special", as in Qwen3, so they survive
# decoding with skip_special_tokens=True and tokenise as one piece each.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
THINK_TOKENS = ("<think>", "</think>")
TINY_ARCH: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}


def build_tiny_base(out_dir: str | Path, texts: Iterable[str] | None = None, seed: int = 0) -> Path:
    """Build (or reuse) tokenizer + model under out_dir; rebuilt only when texts, seed or recipe change."""
    out_dir = Path(out_dir)
    corpus = [t for t in (list(texts) if texts is not None else sample_texts()) if t and t.strip()]
    if not corpus:
        raise ValueError("no text to train the tiny tokenizer on; pass texts= or add samples under data/samples/")
    fingerprint = text_hash(BUILD_VERSION, json.dumps(TINY_ARCH, sort_keys=True), str(seed), str(VOCAB_SIZE), *corpus)
    if _fingerprint(out_dir) == fingerprint:
        log.info("tiny base at %s is up to date (%s)", out_dir, fingerprint)
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model folder should read like any other
    try:
        tokenizer = train_tokenizer(corpus)
        model = build_tiny_model(tokenizer, seed=seed)
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        write_json(tmp / FINGERPRINT_FILE, {"fingerprint": fingerprint, "texts": len(corpus), "seed": seed,
                                            "vocab_size": len(tokenizer), "arch": TINY_ARCH, "version": BUILD_VERSION})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("built tiny base at %s: %d texts, vocab %d", out_dir, len(corpus), len(tokenizer))
    return out_dir


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE tokenizer and wrap it with Qwen3's special tokens and chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=TINY_ARCH["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(tokenizer, seed: int = 0):
    """A randomly initialised Qwen3ForCausalLM sized to the tokenizer; same seed, same weights."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    eos = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    config = Qwen3Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=eos[0], **TINY_ARCH)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    return model


def sample_texts(assets_dir: Path = ASSETS_DIR) -> list[str]:
    """Every string in the shipped samples and red-team prompts (any text under assets_dir as a fallback)."""
    files = sorted(p for p in (assets_dir / "samples").glob("*") if p.is_file())
    files += sorted((assets_dir / "red_team").glob("*.jsonl"))
    if not files:
        files = sorted(p for p in assets_dir.rglob("*") if p.suffix in {".jsonl", ".json", ".yaml", ".txt", ".md"})
    texts: list[str] = []
    for path in files:
        if path.suffix == ".jsonl":
            for _, obj in iter_jsonl(path, strict=False):
                if isinstance(obj, dict):
                    texts.extend(_strings(obj))
        elif path.suffix == ".json":
            texts.extend(_strings(_load_json(path)))
        else:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        log.warning("%s is not valid JSON; left out of the tiny tokenizer's corpus", path)
        return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _fingerprint(out_dir: Path) -> str | None:
    path = out_dir / FINGERPRINT_FILE
    if not path.is_file() or not (out_dir / "config.json").is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, json.JSONDecodeError):
        return None


# Qwen3's chat template, byte for byte as Qwen/Qwen3-* ship it (TRL keeps the same copy as
# trl/chat_templates/qwen3.jinja and recognises it to swap in its assistant-mask training variant).
QWEN3_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""
