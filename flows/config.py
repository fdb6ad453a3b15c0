"""Typed configuration: named profiles (recipes) in flows/profiles/*.yaml, validated once at load.

A profile fills these models; CLI flags override single fields. Every path a run writes is
relative to its working directory (`Workdir`), so two runs in two folders never touch each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.errors import ProfileError

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
# Shipped inputs (rules, red-team prompts, samples, judge prompt) live in the repository's data/.
ASSETS_DIR = Path(os.environ.get("MEDSAFE_ASSETS", Path(__file__).resolve().parent.parent / "data"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    sources: list[str] = Field(
        default_factory=lambda: ["medical-o1"],
        description="Source names (medical-o1, medical-o1:en, delicate-medical-r1, medsafetybench) or local paths.",
    )
    max_rows_per_source: int | None = Field(None, description="Cap rows read per source (None: all).")
    min_question_chars: int = Field(4, description="Shorter questions are quarantined.")
    max_question_chars: int = Field(4000, description="Longer questions are quarantined.")
    min_answer_chars: int = Field(2, description="Shorter answers are quarantined (empty answers always are).")
    max_answer_chars: int = Field(16000, description="Longer answers are quarantined.")
    max_think_chars: int = Field(24000, description="Longer reasoning chains are quarantined.")
    near_dup_threshold: float = Field(0.9, description="Jaccard similarity of character shingles above which rows are near duplicates.")
    dev_fraction: float = Field(0.05, ge=0, lt=0.5)
    test_fraction: float = Field(0.05, ge=0, lt=0.5)
    gold_size: int = Field(50, ge=0, description="Rows of test held out as the gold set (all risk levels, stratified).")
    seed: int = 42


class SamplingConfig(_Strict):
    target_size: int = Field(2000, ge=1, description="RL prompts in total (the plan: 2,000).")
    high_risk_share: float = Field(0.6, gt=0, lt=1, description="Share of critical+high among the rows sampled from train.")
    red_team_copies: int = Field(3, ge=1, description="Each safety red-team prompt appears this many times.")
    include_red_team: bool = Field(True, description="Add the external red-team rows (origin red_team).")
    include_gold: bool = Field(True, description="Add the gold set (origin gold).")
    seed: int = 42


class GateConfig(_Strict):
    min_critical_high_share: float = Field(0.4, description="RL prompts: critical+high share must exceed this.")
    min_think_share: float = Field(0.9, description="SFT targets (train) with a non-empty <think> at least this share.")
    min_rows_per_split: int = Field(1, description="train, dev and test must each have at least this many rows.")


class ModelConfig(_Strict):
    base: str = Field("Qwen/Qwen3-0.6B", description="Hub id or local path; MEDSAFE_BASE_MODEL overrides.")
    tiny: bool = Field(False, description="Build a tiny Qwen3-architecture model locally instead of loading one.")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "auto"
    max_seq_len: int = 1024
    gradient_checkpointing: bool = False


class LoraConfig(_Strict):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


class SFTConfig(_Strict):
    lora: LoraConfig = Field(default_factory=LoraConfig)
    learning_rate: float = 2e-4
    epochs: float = 2.0
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: by epochs).")
    batch_size: int = 4
    grad_accum: int = 4
    eval_steps: int = 50
    max_train_rows: int | None = None
    seed: int = 42


class RewardConfig(_Strict):
    w_rules: float = 0.5
    w_teacher: float = 0.5
    clip_min: float = -3.0
    clip_max: float = 2.0
    safety_weight: float = Field(0.5, description="Scales the safety penalties (the plan: 0.5).")


class TeacherConfig(_Strict):
    model: str = "deepseek-chat"
    base_url: str = Field("https://api.deepseek.com", description="DEEPSEEK_BASE_URL overrides.")
    enabled: Literal["auto", "on", "off"] = Field("auto", description="auto: on when DEEPSEEK_API_KEY is set.")
    concurrency: int = Field(16, ge=1)
    max_attempts: int = Field(5, ge=1)
    timeout_s: float = 60.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    template_version: str = "judge-v1"


class RLConfig(_Strict):
    algorithm: Literal["ppo", "grpo"] = "ppo"
    prompts: int | None = Field(None, description="Use at most this many RL prompts (None: all).")
    batch_size: int = Field(4, description="Prompts per PPO step (the plan: 4).")
    mini_batch_size: int = 4
    learning_rate: float = 1.41e-5
    ppo_epochs: int = 4
    target_kl: float = 0.1
    init_kl_coef: float = 0.05
    kl_horizon: int = 10000
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    max_grad_norm: float = 1.0
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    steps: int | None = Field(None, description="Stop after this many PPO steps (None: one pass over the prompts).")
    save_every: int = 50
    lora: LoraConfig = Field(default_factory=LoraConfig)
    grpo_num_generations: int = 4
    use_vllm: bool = False
    seed: int = 42


class EvalConfig(_Strict):
    max_new_tokens: int = 512
    temperature: float = Field(0.0, description="0: greedy decoding.")
    top_p: float = 1.0
    seed: int = 42
    batch_size: int = 8
    max_test_rows: int | None = Field(200, description="Rows of the test split to evaluate (None: all).")


class Profile(_Strict):
    name: str
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _check(self) -> Profile:
        if self.data.dev_fraction + self.data.test_fraction >= 0.5:
            raise ValueError("data.dev_fraction + data.test_fraction must stay below 0.5")
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> Profile:
        """Return a copy with dotted-key overrides applied, e.g. {"data.sources": [...]}; validated again."""
        tree = self.model_dump()
        for dotted, value in overrides.items():
            node = tree
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.get(key) if isinstance(node, dict) else None
            if not isinstance(node, dict) or leaf not in node:
                raise ProfileError(f"unknown setting {dotted!r} (see `medsafe profiles --show {self.name}`)")
            node[leaf] = value
        try:
            return Profile.model_validate(tree)
        except ValidationError as exc:
            raise ProfileError(f"override {overrides} is invalid:\n{exc}") from None


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str = "tiny", overrides: dict[str, Any] | None = None) -> Profile:
    """Load a named profile (flows/profiles/NAME.yaml) or a YAML file path, then apply overrides."""
    named = PROFILES_DIR / f"{name_or_path}.yaml"
    path = named if named.is_file() else Path(name_or_path)
    if not path.is_file():
        raise ProfileError(f"unknown profile {name_or_path!r}; choose one of {', '.join(available_profiles())} or give a YAML path")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw.setdefault("name", path.stem)
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"profile {path} is invalid:\n{exc}") from None
    if env_model := os.environ.get("MEDSAFE_BASE_MODEL"):
        profile = profile.with_overrides({"model.base": env_model, "model.tiny": False})
    return profile.with_overrides(overrides) if overrides else profile


@dataclass(frozen=True)
class Workdir:
    """Every path a run reads or writes, relative to one root folder."""

    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> Workdir:
        return cls(Path(root or ".").resolve())

    def _dir(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def raw(self) -> Path:
        return self._dir("data", "raw")

    @property
    def processed(self) -> Path:
        return self._dir("data", "processed")

    @property
    def rl(self) -> Path:
        return self._dir("data", "rl")

    @property
    def quarantine(self) -> Path:
        return self._dir("data", "quarantine")

    @property
    def data_card(self) -> Path:
        return self._dir("data") / "DATA_CARD.md"

    @property
    def base_model(self) -> Path:
        return self._dir("models", "base")

    @property
    def sft_adapter(self) -> Path:
        return self.root / "models" / "lora" / "final_lora"

    @property
    def rl_checkpoints(self) -> Path:
        return self._dir("models", "rl", "checkpoints")

    @property
    def rl_final(self) -> Path:
        return self.root / "models" / "rl" / "final_model"

    @property
    def data_quality_reports(self) -> Path:
        return self._dir("reports", "data_quality")

    @property
    def eval_reports(self) -> Path:
        return self._dir("reports", "eval")

    @property
    def state(self) -> Path:
        """Private run state: caches (teacher judgements), Great Expectations project."""
        return self._dir(".medsafe")

    @property
    def teacher_cache(self) -> Path:
        return self.state / "teacher_cache.sqlite"

    @property
    def training_prompts(self) -> Path:
        return self.rl / "training_prompts.jsonl"
