"""Where things live: the shipped assets under the repository's data/, and every path a run writes.

Every path a run reads or writes is relative to its working directory (`Workdir`), so two runs in two
folders never touch each other; no other module spells out a path under it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Shipped inputs (rules, red-team prompts, samples, judge prompts) live in the repository's data/.
ASSETS_DIR = Path(os.environ.get("MEDSAFE_ASSETS", Path(__file__).resolve().parents[2] / "data"))


@dataclass(frozen=True)
class Assets:
    """The versioned inputs the project ships: rules, lexicons, prompt sets, judge prompts, samples."""

    root: Path = ASSETS_DIR

    @property
    def safety_rules(self) -> Path:
        return self.root / "rules" / "safety_rules.yaml"

    @property
    def risk_lexicon(self) -> Path:
        return self.root / "rules" / "risk_lexicon.yaml"

    @property
    def safety_red_team(self) -> Path:
        return self.root / "red_team" / "safety_red_team.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def over_refusal(self) -> Path:
        """Benign questions that sound alarming: a helpful answer is due, a refusal is over-refusal."""
        return self.root / "over_refusal" / "over_refusal.jsonl"

    @property
    def rubrics(self) -> Path:
        """The evaluation judge's versioned rubric prompts."""
        return self.root / "rubrics"

    def judge_prompt(self, version: str) -> Path:
        """The prompt file of a judge template version ("judge-v1" -> prompts/judge_v1.txt)."""
        return self.root / "prompts" / f"{version.replace('-', '_')}.txt"


ASSETS = Assets()


@dataclass(frozen=True)
class Workdir:
    """Every path a run reads or writes, relative to one root folder (folders are created on first use)."""

    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> Workdir:
        return cls(Path(root or ".").resolve())

    def _dir(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    # ---- data
    @property
    def raw(self) -> Path:
        return self._dir("data", "raw")

    @property
    def raw_if_any(self) -> Path:
        """Where raw copies live, not created: for read-only checks before a run takes the workdir."""
        return self.root / "data" / "raw"

    @property
    def processed(self) -> Path:
        return self._dir("data", "processed")

    def split(self, name: str) -> Path:
        """A processed table: train, dev, test, gold_set, red_team (RL part) or red_team_eval (held out)."""
        return self.processed / f"{name}.jsonl"

    @property
    def rl(self) -> Path:
        return self._dir("data", "rl")

    @property
    def training_prompts(self) -> Path:
        return self.rl / "training_prompts.jsonl"

    @property
    def teacher_judgements(self) -> Path:
        return self.rl / "teacher_judgements.jsonl"

    @property
    def quarantine(self) -> Path:
        return self._dir("data", "quarantine")

    @property
    def data_card(self) -> Path:
        return self._dir("data") / "DATA_CARD.md"

    # ---- models
    @property
    def base_model(self) -> Path:
        return self._dir("models", "base")

    @property
    def sft_dir(self) -> Path:
        """SFT outputs: the adapter, its loss curve and metadata."""
        return self.root / "models" / "lora"

    @property
    def sft_adapter(self) -> Path:
        return self.sft_dir / "final_lora"

    @property
    def rl_dir(self) -> Path:
        """RL outputs: checkpoints/ (logs, curves, step-N) and final_model/."""
        return self.root / "models" / "rl"

    @property
    def rl_checkpoints(self) -> Path:
        return self._dir("models", "rl", "checkpoints")

    @property
    def rl_final(self) -> Path:
        return self.rl_dir / "final_model"

    # ---- reports
    @property
    def data_quality_reports(self) -> Path:
        return self._dir("reports", "data_quality")

    @property
    def gate_result(self) -> Path:
        return self.data_quality_reports / "gate_result.json"

    @property
    def data_docs(self) -> Path:
        """Where the gate's Great Expectations Data Docs site is built."""
        return self.data_quality_reports / "data_docs"

    @property
    def eval_reports(self) -> Path:
        return self._dir("reports", "eval")

    @property
    def reward_validation_reports(self) -> Path:
        """`medsafe validate-reward`: the reward's flags and totals against people's labels."""
        return self._dir("reports", "reward_validation")

    # ---- private state
    @property
    def state(self) -> Path:
        """Private run state: caches (teacher judgements)."""
        return self._dir(".medsafe")

    @property
    def teacher_cache(self) -> Path:
        return self.state / "teacher_cache.sqlite"

    @property
    def judge_cache(self) -> Path:
        """The evaluation judge's verdicts: its own file, never the training teacher's."""
        return self.state / "judge_cache.sqlite"
