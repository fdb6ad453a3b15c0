"""The typed settings every stage reads: one `Profile` of sections, validated once.

Profiles (recipes) are YAML files that fill these models (flows/recipes.py loads them); CLI flags
override single fields. Each field carries its help text next to its default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.core.errors import ProfileError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    sources: list[str] = Field(
        default_factory=lambda: ["medical-o1"],
        description=(
            "Source names (medical-o1, medical-o1:en, delicate-medical-r1, medsafetybench) or local paths."
        ),
    )
    max_rows_per_source: int | None = Field(None, description="Cap rows read per source (None: all).")
    min_question_chars: int = Field(4, description="Shorter questions are quarantined.")
    max_question_chars: int = Field(4000, description="Longer questions are quarantined.")
    min_answer_chars: int = Field(
        2, description="Shorter answers are quarantined (empty answers always are)."
    )
    max_answer_chars: int = Field(16000, description="Longer answers are quarantined.")
    max_think_chars: int = Field(24000, description="Longer reasoning chains are quarantined.")
    near_dup_threshold: float = Field(
        0.9, description="Jaccard similarity of character shingles above which rows are near duplicates."
    )
    dev_fraction: float = Field(0.05, ge=0, lt=0.5)
    test_fraction: float = Field(0.05, ge=0, lt=0.5)
    gold_size: int = Field(
        50, ge=0, description="Rows of test held out as the gold set (all risk levels, stratified)."
    )
    seed: int = 42


class SamplingConfig(_Strict):
    target_size: int = Field(2000, ge=1, description="RL prompts in total (the plan: 2,000).")
    high_risk_share: float = Field(
        0.6, gt=0, lt=1, description="Share of critical+high among the rows sampled from train."
    )
    red_team_copies: int = Field(3, ge=1, description="Each safety red-team prompt appears this many times.")
    include_red_team: bool = Field(True, description="Add the external red-team rows (origin red_team).")
    include_gold: bool = Field(True, description="Add the gold set (origin gold).")
    seed: int = 42


class GateConfig(_Strict):
    min_critical_high_share: float = Field(
        0.4, description="RL prompts: critical+high share must exceed this."
    )
    min_think_share: float = Field(
        0.9, description="SFT targets (train) with a non-empty <think> at least this share."
    )
    min_rows_per_split: int = Field(
        1, description="train, dev and test must each have at least this many rows."
    )


class ModelConfig(_Strict):
    base: str = Field("Qwen/Qwen3-0.6B", description="Hub id or local path; MEDSAFE_BASE_MODEL overrides.")
    tiny: bool = Field(
        False, description="Build a tiny Qwen3-architecture model locally instead of loading one."
    )
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "auto"
    max_seq_len: int = 1024
    gradient_checkpointing: bool = False


class LoraConfig(_Strict):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


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
    enabled: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on when DEEPSEEK_API_KEY is set."
    )
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
    steps: int | None = Field(
        None, description="Stop after this many PPO steps (None: one pass over the prompts)."
    )
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
