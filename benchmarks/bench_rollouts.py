"""Rollout generation speed of PPO (tasks.train.ppo.sample_rollout) before/after: tokens/s per setting.

    python -m benchmarks.bench_rollouts --base runs/tiny/models/base/tiny          # CPU, the tiny model
    python -m benchmarks.bench_rollouts --base /models/Qwen3-0.6B --new-tokens 256 --modes off,auto

Settings are run round-robin in one process (so a shared machine's load hits them alike): for each
`--rollout-batch` (prompts per generate call: 4 = the plan's batch, today's path) and each
`--modes` value (rl.rollout_compile: off = dynamic KV cache, on/auto = static cache + torch.compile),
`--rounds` timed calls after one warm-up call. EOS is suppressed so every call samples exactly
--new-tokens tokens per prompt. Reports generated tokens per second of wall time and of process CPU time
(CPU time / cores used is what an idle machine's wall time would be). Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from tasks.core.config import ModelConfig, RLConfig
from tasks.train.ppo import build_state, sample_rollout

QUESTIONS = [
    "我头痛三天了，还发烧，该怎么办？",
    "My father has crushing chest pain and is sweating. What should we do?",
    "孩子误吞了几片降压药，需要去医院吗？",
    "Can I take ibuprofen with my blood pressure pills?",
    "最近总是失眠，可以自己买安眠药吃吗？",
    "I feel hopeless and have thought about ending it all.",
    "孕妇感冒了能吃什么药？",
    "What does a fasting glucose of 7.2 mmol/L mean?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="model folder (the tiny build or a Qwen3 folder)")
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--rollout-batch", default="4,16", help="prompts per generate call, comma-separated")
    ap.add_argument("--modes", default="off", help="rl.rollout_compile values, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_cfg = ModelConfig(base=args.base, tiny=False, dtype=args.dtype, max_seq_len=args.new_tokens + 256)
    settings = [(int(b), m) for b in args.rollout_batch.split(",") for m in args.modes.split(",")]
    states = {}
    for b, mode in settings:
        cfg = RLConfig(max_new_tokens=args.new_tokens, batch_size=b, rollout_compile=mode)
        state = build_state(Path(args.base), None, cfg, model_cfg, None)
        gen = state.policy.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else state.tokenizer.eos_token_id
        stops = [state.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        ids = {*(eos if isinstance(eos, list) else [eos]), *stops} - {None}
        gen.suppress_tokens = sorted(ids)  # every prompt samples all new tokens
        questions = (QUESTIONS * (b // len(QUESTIONS) + 1))[:b]
        sample_rollout(state, questions)  # warm-up (compilation happens here)
        states[(b, mode)] = (state, questions)
    totals = {k: {"tokens": 0, "wall": 0.0, "cpu": 0.0} for k in states}
    for _ in range(args.rounds):
        for key, (state, questions) in states.items():
            w0, c0 = time.perf_counter(), time.process_time()
            rollout = sample_rollout(state, questions)
            totals[key]["wall"] += time.perf_counter() - w0
            totals[key]["cpu"] += time.process_time() - c0
            new = rollout.input_ids.shape[1] - rollout.prompt_len
            totals[key]["tokens"] += int(rollout.input_ids.shape[0] * new)
    dev = next(iter(states.values()))[0].policy.device
    for (b, mode), t in totals.items():
        print(
            json.dumps(
                {
                    "device": str(dev),
                    "rollout_batch": b,
                    "rollout_compile": mode,
                    "new_tokens": args.new_tokens,
                    "rounds": args.rounds,
                    "tokens": t["tokens"],
                    "tokens_per_s_wall": round(t["tokens"] / t["wall"], 1),
                    "tokens_per_cpu_s": round(t["tokens"] / t["cpu"], 1),
                    "torch_threads": torch.get_num_threads(),
                    "load_avg": os.getloadavg()[0],
                }
            )
        )


if __name__ == "__main__":
    main()
