"""The `tiny` base: a small Qwen3-architecture model and a locally trained tokenizer, built offline on a CPU.

The tokenizer is trained on the project's own sample text and carries Qwen3's real chat template and
special tokens, so every code path (chat formatting, `<think>` handling, assistant-only loss) is the one a
real Qwen3 model takes. The model then gets a short, seeded warm-up on the sample conversations rendered
with that template, so it already writes `<think>...</think>` and domain words before LoRA SFT starts
(from random weights, 30 LoRA steps learn next to nothing and every metric reads 0).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.core.io import text_hash, write_json
from tasks.model.chat import format_assistant
from tasks.model.tiny_corpus import Conversation, sample_conversations, sample_texts

log = logging.getLogger(__name__)


BUILD_VERSION = "tiny-v3"  # bump when the recipe below changes, so old builds are rebuilt


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

_SENTENCE_END = re.compile(r"(?<=[。！？；])|(?<=[.!?;])(?=\s)")  # not inside "6.1"


@dataclass(frozen=True)
class Warmup:
    """Full-parameter causal-LM warm-up of the tiny model; the defaults take about a minute on 2 CPU cores."""

    steps: int = 650
    batch_size: int = 4  # whole conversations per step; many small steps beat wide batches at this size
    learning_rate: float = 1e-2
    warmup_fraction: float = 0.05
    final_lr_fraction: float = 0.1
    max_tokens: int = 512  # a conversation is cut here; the shipped ones are all shorter
    think_tokens: int = 0  # thinks cut to whole sentences within this many tokens (0: kept whole)
    grad_clip: float = 1.0


def build_tiny_base(
    out_dir: str | Path,
    texts: Iterable[str] | None = None,
    seed: int = 0,
    conversations: Iterable[Conversation] | None = None,
    warmup: Warmup = Warmup(),
) -> Path:
    """Build (or reuse) tokenizer + warmed-up model under out_dir; rebuilt only when an input or the recipe
    changes.

    conversations is the warm-up corpus: by default the shipped sample conversations when texts is the
    default too, and none (random weights, seconds to build) when a caller brings its own texts.
    """
    out_dir = Path(out_dir)
    corpus = [t for t in (list(texts) if texts is not None else sample_texts()) if t and t.strip()]
    if not corpus:
        raise ValueError(
            "no text to train the tiny tokenizer on; pass texts= or add samples under data/samples/"
        )
    if conversations is None:
        conversations = sample_conversations() if texts is None else []
    convs = [c for c in conversations if c[0].strip() and c[2].strip()]
    fingerprint = text_hash(
        BUILD_VERSION,
        json.dumps(TINY_ARCH, sort_keys=True),
        str(seed),
        str(VOCAB_SIZE),
        json.dumps(asdict(warmup), sort_keys=True),
        json.dumps(convs, ensure_ascii=False),
        *corpus,
    )
    if _fingerprint(out_dir) == fingerprint:
        log.info("tiny base at %s is up to date (%s)", out_dir, fingerprint)
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model folder should read like any other
    try:
        tokenizer = train_tokenizer(corpus)
        model = build_tiny_model(tokenizer, seed=seed)
        texts = [
            render_conversation(tokenizer, q, clip_think(tokenizer, t, warmup.think_tokens), a)
            for q, t, a in convs
        ]
        trained = warm_up(model, tokenizer, texts, warmup, seed=seed)
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        write_json(
            tmp / FINGERPRINT_FILE,
            {
                "fingerprint": fingerprint,
                "texts": len(corpus),
                "seed": seed,
                "vocab_size": len(tokenizer),
                "arch": TINY_ARCH,
                "version": BUILD_VERSION,
                "warmup": {**asdict(warmup), "conversations": len(convs), **trained},
            },
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info(
        "built tiny base at %s: %d texts, vocab %d, warm-up %s", out_dir, len(corpus), len(tokenizer), trained
    )
    return out_dir


@contextmanager
def one_thread(on: bool = True) -> Iterator[None]:
    """Train a tiny model on one torch thread (on=False: leave the count alone). At 64 wide, handing work
    between threads costs more than it saves, and on a shared 2-core box their spin-waits made PPO ~6x slower
    (8-10 s a step instead of 1.5 s)."""
    import torch

    threads = torch.get_num_threads()
    if on:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    config = Qwen3Config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=eos[0], **TINY_ARCH
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    return model


def render_conversation(tokenizer, question: str, think: str, answer: str) -> str:
    """One conversation as Qwen3's template renders a finished chat (the text SFT trains on, prompt
    included)."""
    messages = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": format_assistant(think, answer)},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def clip_think(tokenizer, think: str, max_tokens: int) -> str:
    """The leading whole sentences of think that fit in max_tokens (at least the first one); 0 keeps it
    all."""
    if max_tokens <= 0 or len(tokenizer.encode(think, add_special_tokens=False)) <= max_tokens:
        return think
    sentences = [s for s in _SENTENCE_END.split(think) if s.strip()]
    kept = sentences[0]
    for sentence in sentences[1:]:
        longer = kept + sentence
        if len(tokenizer.encode(longer, add_special_tokens=False)) > max_tokens:
            break
        kept = longer
    return kept.strip()


def warm_up(model, tokenizer, texts: list[str], recipe: Warmup = Warmup(), seed: int = 0) -> dict[str, Any]:
    """Train every weight on texts with next-token loss, in place; the same seed and texts give the same
    weights.

    Runs on one thread: at this size a second one gains under 10% on an idle machine and loses several
    times over on a busy one, and one thread keeps the arithmetic the same on every machine.
    """
    import torch

    if recipe.steps <= 0 or not texts:
        return {"steps": 0}
    docs = [ids[: recipe.max_tokens] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, betas=(0.9, 0.95), weight_decay=0.0
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, recipe))
    threads, started, losses = torch.get_num_threads(), time.monotonic(), []
    batches = _batches(docs, recipe.batch_size, torch.Generator().manual_seed(seed))
    model.train()
    try:
        torch.set_num_threads(1)
        for _, batch in zip(range(recipe.steps), batches, strict=False):
            ids, mask = _pad(batch, tokenizer.pad_token_id)
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
        model.eval()
    tail = losses[-max(1, len(losses) // 20) :]
    return {
        "steps": len(losses),
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(tail) / len(tail), 4),
        "seconds": round(time.monotonic() - started, 1),
    }


def _lr_factor(step: int, recipe: Warmup) -> float:
    """Linear warm-up, then cosine decay to final_lr_fraction of the peak."""
    import math

    ramp = max(1, round(recipe.steps * recipe.warmup_fraction))
    if step < ramp:
        return (step + 1) / ramp
    progress = min(1.0, (step - ramp) / max(1, recipe.steps - ramp))
    return recipe.final_lr_fraction + (1 - recipe.final_lr_fraction) * 0.5 * (
        1 + math.cos(math.pi * progress)
    )


def _batches(docs: list[list[int]], size: int, generator) -> Iterator[list[list[int]]]:
    """Endless shuffled batches of whole conversations; similar lengths share a batch to keep padding low."""
    import torch

    window = size * 8
    while True:
        order = torch.randperm(len(docs), generator=generator).tolist()
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: len(docs[i]))
            groups = [chunk[k : k + size] for k in range(0, len(chunk), size)]
            for g in torch.randperm(len(groups), generator=generator).tolist():
                yield [docs[i] for i in groups[g]]


def _pad(batch: list[list[int]], pad_id: int):
    import torch

    width = max(len(ids) for ids in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


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
{%- endif %}"""  # noqa: E501 - verbatim upstream template
