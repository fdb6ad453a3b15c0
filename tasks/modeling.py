"""Model helpers every training and evaluation stage shares: find, load, prompt and sample a Qwen3 model.

One place decides where the base model comes from (the locally built `tiny` base, a local folder,
or the Hugging Face hub), which dtype and device it runs on, and how chat prompts and completions
look, so SFT, PPO, GRPO and evaluation all agree on the format the model was trained with.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.config import ModelConfig, Workdir
from tasks.errors import MedsafeError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Files a causal LM needs; skips the original-format checkpoints some hub repos carry as well.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken"]
# Tokens that end a completion; everything from the first one on is dropped from decoded text.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


class ModelUnavailable(MedsafeError, RuntimeError):
    """The configured base model cannot be found locally or fetched."""


def device() -> torch.device:
    """CUDA when present, else CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(name: str) -> torch.dtype:
    """ModelConfig.dtype as a torch dtype; `auto` is bfloat16 on a GPU that supports it, else float32."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_base_model(model_cfg: ModelConfig, workdir: Workdir) -> str:
    """Local folder of the base model: the tiny build, MEDSAFE_BASE_MODEL, a local path, or a hub download."""
    if model_cfg.tiny:
        from tasks.tiny_model import build_tiny_base

        return str(build_tiny_base(workdir.base_model / "tiny"))
    base = os.environ.get("MEDSAFE_BASE_MODEL") or model_cfg.base
    local = Path(base).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if base.startswith(("/", ".", "~")) or base.count("/") != 1:
        raise ModelUnavailable(
            f"base model path {base!r} does not exist. Point MEDSAFE_BASE_MODEL (or model.base) at a folder "
            "holding config.json, the weights and the tokenizer, or use a hub id like Qwen/Qwen3-0.6B."
        )
    return _hub_snapshot(base)


def _hub_snapshot(repo_id: str) -> str:
    from huggingface_hub import snapshot_download

    offline = any(os.environ.get(v, "").lower() in {"1", "true", "yes", "on"} for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    try:
        return snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=offline)
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one actionable message
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else _first_line(exc)
        raise ModelUnavailable(
            f"base model {repo_id!r} is not available ({why}). On a machine with internet run "
            f"`huggingface-cli download {repo_id} --local-dir DIR` (or `hf download {repo_id} --local-dir DIR`), "
            "copy DIR here and set MEDSAFE_BASE_MODEL=DIR; or run the offline `tiny` profile."
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a model or adapter; pad falls back to eos so batching always works."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    path: str | Path, model_cfg: ModelConfig, adapter: Path | None = None, merge: bool = False
) -> PreTrainedModel:
    """Causal LM in the configured dtype on device(); optionally with a LoRA adapter, merged into the weights."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=resolve_dtype(model_cfg.dtype))
    model.to(device())
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
        if merge:
            model = model.merge_and_unload()
    return model


def load_policy(base_path: str | Path, model_cfg: ModelConfig, sft_adapter: Path | None = None) -> PreTrainedModel:
    """The RL starting point: the base model with the SFT adapter merged in (a plain model, ready for a new LoRA)."""
    return load_model(base_path, model_cfg, adapter=sft_adapter, merge=True)


def build_chat_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> str:
    """The question as a Qwen3 user turn with the assistant turn opened and thinking on."""
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)


def format_assistant(think: str, answer: str) -> str:
    """Assistant content in Qwen3's reasoning format."""
    return f"<think>\n{think.strip()}\n</think>\n\n{answer.strip()}"


def format_sft_example(tokenizer: PreTrainedTokenizerBase, question: str, think: str, answer: str) -> dict[str, Any]:
    """One conversational SFT example (TRL's `messages` format); the tokenizer's template renders it."""
    del tokenizer  # the chat template is applied by the trainer; kept for a stable signature
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": format_assistant(think, answer)},
        ]
    }


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
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0} if temperature > 0 else greedy
    was_training = model.training
    model.eval()
    rng_devices = [dev] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices), torch.inference_mode():
            torch.manual_seed(seed)
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                  padding_side="left", add_special_tokens=False).to(dev)
                seqs = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                      **sampling)
                for row, i in zip(seqs[:, batch["input_ids"].shape[1] :].tolist(), idx, strict=True):
                    out[i] = _trim(row, tokenizer)
    finally:
        model.train(was_training)
    return out


def _trim(ids: list[int], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    stops = {tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS} | {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for pos, tok in enumerate(ids):
        if tok in stops:
            return ids[: pos + 1]
    return ids


def decode_completion(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """Completion text with <think> tags visible and stop/pad tokens removed."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    for stop in (*STOP_TOKENS, tokenizer.pad_token or "", tokenizer.eos_token or ""):
        if stop:
            text = text.split(stop, 1)[0]
    return text.strip()


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
    ids = generate_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                       batch_size=batch_size, top_p=top_p, seed=seed)
    return [decode_completion(tokenizer, row) for row in ids]
