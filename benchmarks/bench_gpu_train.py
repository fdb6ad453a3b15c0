"""Benchmark LoRA SFT throughput and PPO step time on the real Qwen3 architectures with random bf16 weights.

    python -m benchmarks.bench_gpu_train --arch qwen3-0.6b
    python -m benchmarks.bench_gpu_train --arch qwen3-1.7b
    python -m benchmarks.bench_gpu_train --smoke          # tiny sizes (real vocab), runs on a CPU in seconds

No weights are downloaded: the configs are Qwen3-0.6B's and Qwen3-1.7B's, so the cost per token is the
real one. SFT: forward + backward + AdamW on a LoRA (the profile's r, alpha and target modules) over
random token ids, full-sequence loss, bf16 autocast as the HF Trainer runs it. PPO: tasks.train.ppo.ppo_step
itself (sample, policy/reference/value forwards, ppo_epochs clipped updates) at the plan's numbers:
4 prompts of 128 tokens, 256 new tokens each (EOS suppressed until then, so every step samples all of
them), 4 PPO epochs over one mini-batch of 4. Needs torch, transformers, peft, tokenizers, pydantic and
pyyaml; not Prefect. The reward is a cheap deterministic function of the text: teacher latency is not
part of these figures. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import torch

log = logging.getLogger("bench_gpu_train")

ARCHS: dict[str, dict[str, Any]] = {
    "qwen3-0.6b": {
        "hidden_size": 1024,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 3072,
    },
    "qwen3-1.7b": {
        "hidden_size": 2048,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 6144,
    },
    "smoke": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
    },
}
COMMON = {
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
}
# Qwen3's ids for its special tokens, so the synthetic tokenizer lines up with the real vocabulary.
SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<think>": 151667,
    "</think>": 151668,
}
# Per arch: SFT batch and whether the profile turns gradient checkpointing on (qwen3-1.7b.yaml does).
PLANS = {
    "qwen3-0.6b": {"sft_batch": 8, "checkpointing": False},
    "qwen3-1.7b": {"sft_batch": 4, "checkpointing": True},
    "smoke": {"sft_batch": 2, "checkpointing": False},
}
# Import names that differ from the package to install.
PIP_NAMES = {"yaml": "pyyaml"}


def require_project() -> None:
    """Import what the benchmark needs up front, so a missing package is named before any model is built."""
    import importlib

    for module in ("transformers", "peft", "tokenizers", "tasks.train.ppo"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = (exc.name or module).split(".")[0]
            raise SystemExit(
                f"bench_gpu_train: cannot import {module}: {exc}. Install the missing package "
                f"(pip install {PIP_NAMES.get(missing, missing)}) and run from the repository root; the "
                "benchmark needs torch, transformers, peft, tokenizers, pydantic and pyyaml."
            ) from exc


def lora_section() -> dict[str, Any]:
    """The project's LoRA defaults (tasks.core.config)."""
    from tasks.core.config import LoraConfig

    cfg = LoraConfig()
    return {"r": cfg.r, "alpha": cfg.alpha, "target_modules": list(cfg.target_modules)}


def peft_lora(section: dict[str, Any]):
    from peft import LoraConfig

    return LoraConfig(
        r=section["r"],
        lora_alpha=section["alpha"],
        lora_dropout=0.0,
        target_modules=section["target_modules"],
        task_type="CAUSAL_LM",
    )


def build_model(arch: str, dtype: torch.dtype, dev: torch.device):
    """Random-weight Qwen3ForCausalLM of the named architecture, created directly on the device."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        **ARCHS[arch],
        **COMMON,
        eos_token_id=SPECIAL_IDS["<|im_end|>"],
        pad_token_id=SPECIAL_IDS["<|endoftext|>"],
    )
    torch.manual_seed(0)
    with dev:
        return Qwen3ForCausalLM._from_config(config, dtype=dtype)


def synthetic_tokenizer():
    """A word-level tokenizer over Qwen3's full id range (w0..w151935 plus the special tokens) with Qwen3's
    template.
    """
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tasks.model.tiny import QWEN3_CHAT_TEMPLATE

    vocab = {f"w{i}": i for i in range(COMMON["vocab_size"])}
    for token, idx in SPECIAL_IDS.items():
        del vocab[f"w{idx}"]
        vocab[token] = idx
    core = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in list(SPECIAL_IDS)[:3]])
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in list(SPECIAL_IDS)[3:]])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = QWEN3_CHAT_TEMPLATE
    return tok


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _peak_gib(dev: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda" else None


def bench_sft(
    model, lora: dict, batch: int, seq: int, warmup: int, steps: int, checkpointing: bool
) -> dict[str, Any]:
    """LoRA SFT steps on random ids: tokens/s over the timed steps and peak GPU memory."""
    from peft import get_peft_model

    dev = model.device
    policy = get_peft_model(model, peft_lora(lora))
    if checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        policy.enable_input_require_grads()
    policy.train()
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=2e-4)
    ids = torch.randint(0, 151000, (batch, seq), device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for i in range(warmup + steps):
        _sync(dev)
        start = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = policy(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(dev)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            losses.append(loss.item())
    result = {
        "batch": batch,
        "seq_len": seq,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "checkpointing": checkpointing,
        "step_s": round(sum(times) / len(times), 4),
        "tokens_per_s": round(batch * seq * len(times) / sum(times), 1),
        "peak_mem_gib": _peak_gib(dev),
        "loss_last": round(losses[-1], 4),
    }
    if checkpointing:
        policy.gradient_checkpointing_disable()
    del opt
    policy.unload()  # back to the plain model for the PPO part
    return result


def bench_ppo(model, lora: dict, args: argparse.Namespace) -> dict[str, Any]:
    """PPO steps (batch prompts x prompt_tokens, new_tokens sampled, ppo_epochs updates): seconds per step."""
    dev = model.device
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    step = _project_ppo(model, lora, args)
    times, rows = [], []
    for i in range(args.ppo_warmup + args.ppo_steps):
        _sync(dev)
        start = time.perf_counter()
        row = step()
        _sync(dev)
        if i >= args.ppo_warmup:
            times.append(time.perf_counter() - start)
            rows.append(row)
    return {
        "impl": "tasks.train.ppo.ppo_step",
        "batch": args.ppo_batch,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "ppo_epochs": args.ppo_epochs,
        "timed_steps": len(times),
        "warmup_steps": args.ppo_warmup,
        "s_per_step": round(sum(times) / len(times), 3),
        "step_s": [round(t, 3) for t in times],
        "response_len_mean": round(sum(r["response_len"] for r in rows) / len(rows), 1),
        "updates_per_step": [r["updates"] for r in rows],
        "peak_mem_gib": _peak_gib(dev),
    }


def _project_ppo(model, lora: dict, args: argparse.Namespace):
    """A closure running tasks.train.ppo.ppo_step on a TrainState built around the random model."""
    from peft import get_peft_model

    from tasks.core.config import RLConfig
    from tasks.model.chat import build_chat_prompt
    from tasks.train.ppo import ppo_step
    from tasks.train.ppo_core import AdaptiveKLController
    from tasks.train.ppo_state import TrainState, ValueHead

    cfg = RLConfig(
        batch_size=args.ppo_batch,
        mini_batch_size=args.ppo_batch,
        ppo_epochs=args.ppo_epochs,
        max_new_tokens=args.new_tokens,
        seed=0,
    )
    tok = synthetic_tokenizer()
    overhead = len(tok(build_chat_prompt(tok, ""), add_special_tokens=False)["input_ids"])
    question = " ".join(f"w{i}" for i in range(1, args.prompt_tokens - overhead + 1))
    policy = get_peft_model(model, peft_lora(lora))
    policy.eval()
    # Every response is new_tokens long, so the timing is that of the plan's length, not of an early EOS.
    policy.generation_config.min_new_tokens = args.new_tokens
    value_head = ValueHead(model.config.hidden_size).to(model.device)
    params = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    state = TrainState(
        policy,
        value_head,
        torch.optim.AdamW(params, lr=cfg.learning_rate),
        AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon),
        tok,
        cfg,
        max_prompt_tokens=args.prompt_tokens,
    )
    rows = [{"id": str(i), "question": question} for i in range(args.ppo_batch)]

    def reward(questions, responses, metas):
        return [(len(r) % 97) / 97 for r in responses]  # varies across responses so advantages are non-zero

    return lambda: ppo_step(state, rows, reward, None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=[a for a in ARCHS if a != "smoke"], default="qwen3-0.6b")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes (2 layers, hidden 64, real vocab) on any device"
    )
    parser.add_argument("--part", choices=["all", "sft", "ppo"], default="all")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--sft-batch", type=int, help="default: 8 for 0.6B, 4 for 1.7B")
    parser.add_argument("--sft-warmup", type=int, default=3)
    parser.add_argument("--sft-steps", type=int, default=10)
    parser.add_argument("--checkpointing", choices=["profile", "on", "off"], default="profile")
    parser.add_argument("--ppo-batch", type=int, default=4, help="prompts per PPO step (the plan: 4)")
    parser.add_argument(
        "--prompt-tokens", type=int, default=128, help="tokens per templated prompt (the plan: 128)"
    )
    parser.add_argument(
        "--new-tokens", type=int, default=256, help="tokens sampled per response (the plan: 256)"
    )
    parser.add_argument("--ppo-epochs", type=int, default=4, help="PPO epochs per step (the plan: 4)")
    parser.add_argument("--ppo-warmup", type=int, default=1)
    parser.add_argument("--ppo-steps", type=int, default=3)
    args = parser.parse_args(argv)
    require_project()
    arch = "smoke" if args.smoke else args.arch
    if args.smoke:
        args.seq_len, args.sft_warmup, args.sft_steps = 64, 1, 2
        args.prompt_tokens, args.new_tokens, args.ppo_warmup, args.ppo_steps = 16, 8, 0, 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    plan = PLANS[arch]
    checkpointing = plan["checkpointing"] if args.checkpointing == "profile" else args.checkpointing == "on"
    lora = lora_section()
    model = build_model(arch, dtype, dev)
    result: dict[str, Any] = {
        "arch": arch,
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
        "dtype": str(dtype),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "lora": lora,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    if args.part in ("all", "sft"):
        log.info("SFT: %s, batch %d x %d tokens", arch, args.sft_batch or plan["sft_batch"], args.seq_len)
        result["sft"] = bench_sft(
            model,
            lora,
            args.sft_batch or plan["sft_batch"],
            args.seq_len,
            args.sft_warmup,
            args.sft_steps,
            checkpointing,
        )
    if args.part in ("all", "ppo"):
        log.info(
            "PPO: %s, %d prompts x %d tokens, %d new tokens",
            arch,
            args.ppo_batch,
            args.prompt_tokens,
            args.new_tokens,
        )
        result["ppo"] = bench_ppo(model, lora, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
