"""Batched generation from templated prompts: greedy or sampled, seeded, similar lengths batched together."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.model.chat import STOP_TOKENS, decode_completion

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def generate_ids(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    batch_size: int = 8,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[list[int]]:
    """Completion token ids per prompt (padding removed, stop token kept); greedy when temperature == 0."""
    import torch

    dev = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    out: list[list[int]] = [[] for _ in prompts]
    # top_k=0: sample from the full distribution (transformers would otherwise default to top-50).
    greedy = {"do_sample": False}
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        if temperature > 0
        else greedy
    )
    was_training = model.training
    model.eval()
    rng_devices = [dev] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices), torch.inference_mode():
            torch.manual_seed(seed)
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = tokenizer(
                    [prompts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    padding_side="left",
                    add_special_tokens=False,
                ).to(dev)
                seqs = model.generate(
                    **batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
                )
                for row, i in zip(seqs[:, batch["input_ids"].shape[1] :].tolist(), idx, strict=True):
                    out[i] = _trim(row, tokenizer)
    finally:
        model.train(was_training)
    return out


def _trim(ids: list[int], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    stops = {tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS} | {
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    }
    for pos, tok in enumerate(ids):
        if tok in stops:
            return ids[: pos + 1]
    return ids


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    batch_size: int = 8,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """Batched generation from already-templated prompts; returns the decoded completions only, in order."""
    ids = generate_ids(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        batch_size=batch_size,
        top_p=top_p,
        seed=seed,
    )
    return [decode_completion(tokenizer, row) for row in ids]
