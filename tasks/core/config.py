"""The typed settings every stage reads: one `Profile` of sections, validated once.

Profiles (recipes) are YAML files that fill these models (flows/recipes.py loads them); CLI flags
override single fields. Each field carries its help text next to its default.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tasks.core.errors import ProfileError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


CACHE_URL_HELP = (
    "Judge cache database: None (the SQLite file in the workdir, one machine) or a "
    "postgresql://user@host:port/db URL shared by several hosts; the password goes in PGPASSWORD or "
    "~/.pgpass, never here."
)


def _mask_cache_url(data: Any) -> Any:
    """Mask a password in cache_url before validation, so no error message can show it."""
    url = data.get("cache_url") if isinstance(data, dict) else None
    if isinstance(url, str) and "://" in url:
        scheme, rest = url.split("://", 1)
        userinfo, at, host = rest.rpartition("@")
        if at and ":" in userinfo:
            data = {**data, "cache_url": f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"}
    return data


def _check_cache_url(url: str | None) -> str | None:
    if not url:
        return None
    if url.split("://", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres") or "://" not in url:
        raise ValueError("must be a postgresql://user@host:port/database URL, or null for the SQLite file")
    if ":***@" in url:
        raise ValueError(
            "must not contain a password (it would be written into the resolved profile and run "
            "metadata): remove it and set PGPASSWORD or ~/.pgpass on each host"
        )
    return url


Hub = Literal["huggingface", "modelscope"]
HUB_HELP = (
    "Where hub ids are fetched from: huggingface (HF_ENDPOINT mirrors honoured) or modelscope "
    "(pip install 'medsafe[modelscope]')"
)


class _JudgeEndpoint(_Strict):
    """What every judge client we talk to shares: bounded concurrency, retries with backoff, and masking."""

    concurrency: int = Field(8, ge=1)
    max_attempts: int = Field(5, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    redact: bool | None = Field(
        None, description="Mask identifiers before sending (None: on unless base_url is this machine)."
    )


class RiskJudgeConfig(_JudgeEndpoint):
    """The judge that labels question risk when data.risk_labeler is judge or both
    (tasks/risk/judge_labeler.py)."""

    model: str = Field("deepseek-chat", description="Model name as the server knows it.")
    base_url: str = Field(
        "https://api.deepseek.com",
        description="Any OpenAI-compatible server; MEDSAFE_RISK_JUDGE_BASE_URL overrides.",
    )
    api_key_env: str = Field(
        "DEEPSEEK_API_KEY", description="Environment variable holding the key (never written)."
    )
    prompt: str = Field("risk_label_v1", description="Prompt version: data/prompts/<prompt>.txt.")
    json_mode: bool = Field(True, description="Ask for response_format json_object.")
    max_tokens: int = Field(256, ge=16, description="Reply budget per label.")
    cache_namespace: str = Field(
        "risk-judge", description="Part of every cache key: change it to label afresh."
    )


class DataConfig(_Strict):
    sources: list[str] = Field(
        default_factory=lambda: ["medical-o1"],
        description=(
            "Source names (medical-o1, medical-o1:en, delicate-medical-r1, medsafetybench) or local paths."
        ),
    )
    max_rows_per_source: int | None = Field(None, description="Cap rows read per source (None: all).")
    hub: Hub | None = Field(None, description=HUB_HELP + " for named datasets (None: the profile's `hub`).")
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
    risk_labeler: Literal["lexicon", "judge", "both"] = Field(
        "lexicon",
        description=(
            "Who labels question risk: the offline lexicon, the judge (data.risk_judge), or both (the higher "
            "level). Without a key the lexicon labels, with a warning."
        ),
    )
    risk_judge: RiskJudgeConfig = Field(default_factory=RiskJudgeConfig)
    red_team_eval_fraction: float = Field(
        1 / 3,
        ge=0,
        lt=1,
        description=(
            "Share of the red-team prompts (shipped safety set and red-team sources) held out for evaluation "
            "in red_team_eval, never in the RL prompts; stratified by category x language (0: none)."
        ),
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
    hub: Hub | None = Field(None, description=HUB_HELP + " for model.base (None: the profile's `hub`).")


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
    save_steps: int = Field(
        200,
        ge=1,
        description="Save a resumable checkpoint every this many optimizer steps under models/lora/trainer/ "
        "(the last two are kept; `medsafe sft --resume` continues from the newest).",
    )
    report_to: list[str] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Where the trainer logs: tensorboard (models/lora/trainer/runs/), wandb, or none.",
    )
    max_train_rows: int | None = None
    seed: int = 42
    launcher: Literal["none", "torchrun", "accelerate"] = Field(
        "none",
        description="none: train in the stage's process; torchrun / accelerate: num_processes ranks as a "
        "child (batch_size is per process: the global batch is batch_size x grad_accum x num_processes).",
    )
    num_processes: int = Field(
        1, ge=1, description="Ranks to start with the launcher (e.g. GPUs on the host)."
    )
    launch_config: str | None = Field(
        None, description="accelerate/DeepSpeed config file for launcher=accelerate (default: plain DDP)."
    )


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
    redact: bool | None = Field(
        None, description="Mask identifiers before sending (None: on unless base_url is this machine)."
    )
    cache_url: str | None = Field(None, description=CACHE_URL_HELP)

    _mask_url = model_validator(mode="before")(_mask_cache_url)
    _check_url = field_validator("cache_url")(_check_cache_url)


class RLConfig(_Strict):
    algorithm: Literal["ppo", "grpo"] = "ppo"
    init_from: str = Field(
        "sft",
        min_length=1,
        description=(
            "Where RL starts: sft (model.base + the SFT adapter), base (model.base itself, SFT skipped), "
            "or a folder: a merged model (trained as is) or a LoRA adapter (merged into model.base)."
        ),
    )
    prompts: int | None = Field(None, description="Use at most this many RL prompts (None: all).")
    batch_size: int = Field(4, description="Prompts per PPO step (the plan: 4).")
    mini_batch_size: int = 4
    rollout_batch_size: int | None = Field(
        None,
        ge=1,
        description=(
            "PPO: prompts generated for in one call, a multiple of batch_size (None: batch_size); the "
            "responses then feed rollout_batch_size / batch_size PPO steps of batch_size prompts each, "
            "updated in mini_batch_size mini-batches against the sampling policy's logprobs."
        ),
    )
    rollout_compile: Literal["auto", "on", "off"] = Field(
        "auto",
        description=(
            "PPO rollouts with a static KV cache and torch.compile (CUDA graphs): auto = on a GPU only, "
            "on = also on CPU, off = transformers' dynamic cache."
        ),
    )
    learning_rate: float = Field(
        1.41e-5,
        gt=0,
        description="Policy (LoRA) and value-head learning rate; a resumed run applies a changed one.",
    )
    ppo_epochs: int = 4
    target_kl: float = Field(
        0.1,
        gt=0,
        description=(
            "KL target in nats per response token (the plan: 0.1, band 0.05-0.15): the KL controller holds "
            "the mean per-token KL(policy || reference) near it, and PPO epochs stop early once the "
            "per-token approx KL(sampling policy || updated policy) passes 1.5x it."
        ),
    )
    init_kl_coef: float = Field(
        0.05, gt=0, description="Starting KL penalty coefficient beta (GRPO: the fixed beta)."
    )
    kl_horizon: float = Field(
        10.0,
        gt=0,
        description=(
            "PPO steps for beta to change e-fold under a full-scale KL error (error = KL/target - 1, "
            "clipped to +-1): beta *= exp(error / kl_horizon) each step."
        ),
    )
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
    report_to: list[str] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Where RL logs: tensorboard (models/rl/checkpoints/runs/), wandb (GRPO only), or none.",
    )
    use_vllm: bool = False
    seed: int = 42
    launcher: Literal["none", "torchrun", "accelerate"] = Field(
        "none",
        description="GRPO only (PPO is single-process): none trains in the stage's process; torchrun / "
        "accelerate start num_processes ranks as a child.",
    )
    num_processes: int = Field(1, ge=1, description="GRPO ranks to start with the launcher.")
    launch_config: str | None = Field(
        None, description="accelerate/DeepSpeed config file for launcher=accelerate (default: plain DDP)."
    )

    @model_validator(mode="after")
    def _grpo_only_launcher(self) -> RLConfig:
        if self.launcher != "none" and self.algorithm == "ppo":
            raise ValueError(
                "rl.launcher starts GRPO across processes; PPO is single-process (its rollout, reward and "
                "update loop and value head live in one process): use rl.algorithm=grpo or rl.launcher=none"
            )
        return self

    @field_validator("rollout_batch_size")
    @classmethod
    def _rollout_batch(cls, value: int | None, info: ValidationInfo) -> int | None:
        batch = info.data.get("batch_size")
        if value is not None and batch and value % batch:
            raise ValueError(f"must be a multiple of rl.batch_size ({batch})")
        return value


class EvalJudgeConfig(_JudgeEndpoint):
    """The independent evaluation judge: never the training teacher (own model, endpoint, key, prompts,
    cache)."""

    enabled: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on when the key variable (api_key_env) or the Secret block holds a key."
    )
    model: str = Field("deepseek-chat", description="Judge model name as the server knows it.")
    base_url: str = Field(
        "https://api.deepseek.com",
        description="Any OpenAI-compatible server; MEDSAFE_JUDGE_BASE_URL overrides.",
    )
    api_key_env: str = Field(
        "MEDSAFE_JUDGE_API_KEY", description="Environment variable holding the judge's key (never written)."
    )
    secret_block: str = Field(
        "medsafe-judge-api-key", description="Prefect Secret block read when the variable is unset."
    )
    mode: Literal["rubrics", "qwen3guard"] = Field(
        "rubrics",
        description="rubrics: JSON rubric prompts (harm 1-5, safety+helpfulness); qwen3guard: a guard model.",
    )
    harm_rubric: str = Field("medsafetybench_harm_v1", description="Rubric version for harmful requests.")
    patient_rubric: str = Field("safety_helpfulness_v1", description="Rubric version for patient questions.")
    json_mode: bool = Field(True, description="Ask for response_format json_object (rubrics mode only).")
    max_tokens: int = Field(
        512, ge=16, description="Reply budget per verdict (raise it for reasoning models)."
    )
    cache_namespace: str = Field(
        "eval-judge", description="Part of every cache key: change it to grade again from scratch."
    )
    cache_url: str | None = Field(None, description=CACHE_URL_HELP)

    _mask_url = model_validator(mode="before")(_mask_cache_url)
    _check_url = field_validator("cache_url")(_check_cache_url)


class EvalConfig(_Strict):
    max_new_tokens: int = 512
    temperature: float = Field(0.0, description="0: greedy decoding.")
    top_p: float = 1.0
    seed: int = 42
    batch_size: int = 8
    max_test_rows: int | None = Field(200, description="Rows of the test split to evaluate (None: all).")
    max_benchmark_rows: int | None = Field(
        None, description="Rows of each --benchmark set to evaluate (None: all; red team, over-refusal: all)."
    )
    judge: EvalJudgeConfig = Field(default_factory=EvalJudgeConfig)


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
    hub: Hub = Field("huggingface", description=HUB_HELP + "; model.hub / data.hub override it per part.")

    @model_validator(mode="before")
    @classmethod
    def _hubs(cls, raw: Any) -> Any:
        """data.hub and model.hub not given take the profile's `hub`."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        hub = raw.get("hub", "huggingface")
        for part in ("data", "model"):
            section = raw.get(part)
            if section is None or isinstance(section, dict):
                section = dict(section or {})
                if section.get("hub") is None:
                    section["hub"] = hub
                raw[part] = section
        return raw

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
                close = difflib.get_close_matches(dotted, _dotted_keys(self.model_dump()), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ProfileError(
                    f"unknown setting {dotted!r}{hint} (all settings: `medsafe profiles --fields`)"
                )
            node[leaf] = value
            if dotted == "hub":  # the profile-wide hub also replaces the one its parts took from it
                tree["data"]["hub"] = tree["model"]["hub"] = value
        try:
            return Profile.model_validate(tree)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])} = {err.get('input')!r}: {err['msg']}"
                for err in exc.errors()
            )
            raise ProfileError(f"invalid setting ({problems}); see `medsafe profiles --fields`") from None


def _dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        keys.extend(_dotted_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])
    return keys
