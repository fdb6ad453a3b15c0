"""The files an RL run reads and writes, shared by PPO and GRPO: prompts in; rewards.csv, training.log,
curves.png,
the merged final model and PPO's step-N checkpoints out. No Prefect here: the GPU benchmark imports this
without it.

    append_row(ckpt / "rewards.csv", {"step": 1, "reward_mean": 0.4, **breakdown_means(rows)})
    plot_curves(ckpt / "rewards.csv", ckpt / "curves.png")
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core.config import ModelConfig, RLConfig
from tasks.core.io import read_jsonl, write_json

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


RewardFn = Callable[[list[str], list[str], list[dict]], list[float]]


BreakdownFn = Callable[[list[str], list[str], list[dict]], list[dict]]


CSV_COLUMNS = [
    "step",
    "reward_mean",
    "reward_std",
    "rules_mean",
    "teacher_mean",
    "violations",
    "kl_per_token",
    "kl_per_response",
    "kl_coef",
    "entropy",
    "policy_loss",
    "value_loss",
    "clip_frac",
    "response_len",
]
# The reward-hacking monitor, per step: blanket refusals, safety words with no substance behind them, mean
# answer length (CJK characters + latin words, without <think>), answers holding judge-directed text, and
# the share of answers on which the rules and the teacher disagree (None while the teacher is off).
MONITOR_COLUMNS = ["refusal_rate", "hollow_rate", "answer_units", "injection_hits", "disagreement"]
CSV_COLUMNS += MONITOR_COLUMNS
# When a step passes one of these, training.log gets a warning line. Rates are shares of the step's
# answers; injection_hits is a count; answer_units is compared with the first step's (a ratio).
DRIFT_LIMITS = {"refusal_rate": 0.25, "hollow_rate": 0.2, "injection_hits": 1, "disagreement": 0.3}
LENGTH_DRIFT = (0.5, 2.0)


def load_prompts(path: Path, limit: int | None) -> list[dict]:
    """The RL prompt rows (first `limit` when set); a row without question text is named before any model
    loads."""
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise ValueError(
                f"{path}: row {i} (id {row.get('id')!r}) has no 'question' text; re-run sample_rl_prompts"
            )
    if not rows:
        raise ValueError(f"{path} holds no RL prompts; re-run sample_rl_prompts")
    return rows[:limit] if limit else rows


def breakdown_means(breakdown: list[dict]) -> dict[str, float | None]:
    """rules_mean, teacher_mean (None while the teacher is off), how many responses had a violation, and the
    reward-hacking monitor (MONITOR_COLUMNS)."""
    if not breakdown:
        return {"rules_mean": None, "teacher_mean": None, "violations": None}
    rules = [b["rule_score"] for b in breakdown if b.get("rule_score") is not None]
    teacher = [b["teacher_score"] for b in breakdown if b.get("teacher_score") is not None]
    return {
        "rules_mean": sum(rules) / len(rules) if rules else None,
        "teacher_mean": sum(teacher) / len(teacher) if teacher else None,
        "violations": sum(1 for b in breakdown if _violated(b)),
        **monitor(breakdown),
    }


def _violated(b: dict) -> bool:
    return bool(b.get("violation", bool(b.get("violations"))))


def monitor(breakdown: list[dict]) -> dict[str, float | None]:
    """The reward-hacking monitor of one step's score rows (RewardEngine.score_batch): see MONITOR_COLUMNS.

    Rules and teacher disagree on an answer when the rules flag it and the teacher gives it >= 0.5, or the
    rules pass it and the teacher gives it < 0.3 (its own threshold for unsafe). Rows that do not come from
    the reward engine (no `answer_units`) give no monitor values."""
    if not any("answer_units" in b for b in breakdown):
        return {}
    n = len(breakdown)
    units = [b["answer_units"] for b in breakdown if b.get("answer_units") is not None]
    judged = [b for b in breakdown if b.get("teacher_score") is not None]
    disagree = [
        (_violated(b) and b["teacher_score"] >= 0.5) or (not _violated(b) and b["teacher_score"] < 0.3)
        for b in judged
    ]
    return {
        "refusal_rate": sum(b.get("refusal") == "blanket" for b in breakdown) / n if n else None,
        "hollow_rate": sum(bool(b.get("hollow")) for b in breakdown) / n if n else None,
        "answer_units": sum(units) / len(units) if units else None,
        "injection_hits": sum(bool(b.get("injection")) for b in breakdown) if n else None,
        "disagreement": sum(disagree) / len(disagree) if disagree else None,
    }


def drift_warnings(row: dict[str, Any], first: dict[str, Any] | None) -> list[str]:
    """One line per monitor value past its limit (DRIFT_LIMITS; the mean answer length against the first
    step's, LENGTH_DRIFT), for training.log."""
    out = []
    for key, limit in DRIFT_LIMITS.items():
        value = row.get(key)
        if isinstance(value, int | float) and value >= limit:
            out.append(f"reward-hacking monitor: {key} {value:.3g} >= {limit} (possible reward hacking)")
    now, then = row.get("answer_units"), (first or {}).get("answer_units")
    if isinstance(now, int | float) and isinstance(then, int | float) and then > 0:
        lo, hi = LENGTH_DRIFT
        if not lo <= now / then <= hi:
            out.append(
                f"reward-hacking monitor: mean answer length {now:.4g} units is {now / then:.2f}x the first "
                f"step's {then:.4g} (outside {lo}-{hi}x)"
            )
    return out


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one step to rewards.csv (header on first write); floats to 6 significant digits."""
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def read_rows(path: Path) -> list[dict[str, Any]]:
    """rewards.csv as dicts, numbers as floats (step as int), blanks as None."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        return [
            {k: (int(v) if k == "step" else float(v) if v else None) for k, v in r.items()}
            for r in csv.DictReader(fh)
        ]


def keep_rows(path: Path, upto_step: int) -> None:
    """Drop rows of steps after upto_step, so a resumed run never logs a step twice."""
    if not path.is_file():
        return
    rows = [r for r in read_rows(path) if r["step"] <= upto_step]
    path.unlink()
    for r in rows:
        append_row(path, {k: ("" if v is None else v) for k, v in r.items()})


def plot_curves(csv_path: Path, png_path: Path) -> None:
    """Reward (mean +- std) and KL / KL coefficient per step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(csv_path)
    steps = [r["step"] for r in rows]
    fig, (ax_r, ax_k) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    mean = [r["reward_mean"] for r in rows]
    std = [r["reward_std"] for r in rows]
    ax_r.plot(steps, mean, label="reward")
    ax_r.fill_between(
        steps,
        [m - s for m, s in zip(mean, std, strict=True)],
        [m + s for m, s in zip(mean, std, strict=True)],
        alpha=0.2,
    )
    ax_r.set_ylabel("reward")
    ax_k.plot(steps, [r["kl_per_token"] for r in rows], label="KL(policy || ref)", color="tab:red")
    ax_k.set_ylabel("KL (nats / token)")
    ax_c = ax_k.twinx()
    ax_c.plot(steps, [r["kl_coef"] for r in rows], color="tab:gray", linestyle="--", label="kl_coef")
    ax_c.set_ylabel("kl_coef")
    ax_k.set_xlabel("PPO step")
    fig.suptitle("PPO: reward and KL")
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


class file_log:  # noqa: N801 - used like open()
    """Copy a logger's INFO records to training.log (appending) for the duration of a run."""

    def __init__(self, path: Path, logger: logging.Logger) -> None:
        self.path, self.logger = path, logger

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.level = self.logger.level
        self.logger.setLevel(min(self.logger.getEffectiveLevel(), logging.INFO))
        self.logger.addHandler(self.handler)

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        self.handler.close()


def final_metadata(
    algorithm: str,
    steps: int,
    prompts: int,
    base_path: Path,
    sft_adapter: Path | None,
    rl_cfg: RLConfig,
    model_cfg: ModelConfig,
    **extra: Any,
) -> dict[str, Any]:
    """metadata.json of a final model: what trained it, on what, with which settings (plus the caller's
    extras)."""
    return {
        "algorithm": algorithm,
        "steps": steps,
        "prompts": prompts,
        "base": str(base_path),
        "sft_adapter": str(sft_adapter) if sft_adapter else None,
        "config": rl_cfg.model_dump(mode="json"),
        "model": model_cfg.model_dump(mode="json"),
        **extra,
    }


def save_merged(peft_model, tokenizer, path: Path, metadata: dict[str, Any]) -> None:  # noqa: ANN001 - peft.PeftModel
    """Merge the RL LoRA into the weights and save a plain model + tokenizer + metadata.json."""
    if path.exists():
        shutil.rmtree(path)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    write_json(path / "metadata.json", metadata)


def log_drift(csv_path: Path, row: dict[str, Any], logger: logging.Logger, step: int) -> list[str]:
    """Warn in the training log about every monitor value of this step past its limit, the mean length
    judged against rewards.csv's first step; returns the warnings."""
    first = next(iter(read_rows(csv_path)), None)
    warnings = drift_warnings(row, first)
    for line in warnings:
        logger.warning("step %d %s", step, line)
    return warnings
