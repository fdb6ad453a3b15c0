"""The chat format every stage agrees on: Qwen3's template with thinking on, the `<think>` assistant turn,
and how a completion's text ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


# Tokens that end a completion; everything from the first one on is dropped from decoded text.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


def build_chat_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> str:
    """The question as a Qwen3 user turn with the assistant turn opened and thinking on."""
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=True
    )


def format_assistant(think: str, answer: str) -> str:
    """Assistant content in Qwen3's reasoning format."""
    return f"<think>\n{think.strip()}\n</think>\n\n{answer.strip()}"


def format_sft_example(
    tokenizer: PreTrainedTokenizerBase, question: str, think: str, answer: str
) -> dict[str, Any]:
    """One conversational SFT example (TRL's `messages` format); the tokenizer's template renders it."""
    del tokenizer  # the chat template is applied by the trainer; kept for a stable signature
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": format_assistant(think, answer)},
        ]
    }


def decode_completion(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """Completion text with <think> tags visible and stop/pad tokens removed."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    for stop in (*STOP_TOKENS, tokenizer.pad_token or "", tokenizer.eos_token or ""):
        if stop:
            text = text.split(stop, 1)[0]
    return text.strip()
