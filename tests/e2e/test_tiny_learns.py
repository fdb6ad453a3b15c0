"""The embedded default learns: from the tiny profile's SFT adapter, PPO and GRPO with the tiny profile's RL
settings answer held-out prompts (red_team_eval + test + over-refusal, none of them an RL prompt) better under
the rules than the SFT model: paired mean gain in rule score, RL - SFT, with its bootstrap 95% interval above
0 on at least 50 prompts. Seeded and greedy-evaluated, so the figures repeat run after run; the effect is
asserted, not a time.

The e2e pipeline's workdir supplies the data and the tiny base (the fast profile keeps the tiny profile's data
and model settings, so both are the ones `medsafe run --profile tiny` makes); SFT, RL and the answers are
made here in the library, into a temporary folder, with the tiny profile's own settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.recipes import load_profile
from tasks.core.config import Profile
from tasks.core.io import read_jsonl
from tasks.core.workdir import ASSETS, Workdir
from tasks.evaluate.eval_sets import default_sets
from tasks.evaluate.metrics import evaluate_predictions
from tasks.evaluate.predictions import generate_predictions
from tasks.evaluate.statistics import Estimate, paired_bootstrap_diff
from tasks.model.tiny import one_thread
from tasks.reward.engine import RewardEngine
from tasks.reward.rules import SafetyRules

pytestmark = pytest.mark.slow

# The documented GRPO run of the tiny profile (docs/performance.md): `--set` these on top of it.
GRPO_SETS: dict[str, object] = {"rl.algorithm": "grpo", "rl.batch_size": 16}
MIN_PROMPTS = 50


@dataclass
class Learning:
    source: Workdir
    root: Path
    profile: Profile
    engine: RewardEngine
    sft_scores: dict[tuple[str, str], float]

    def scores(self, model: Path, name: str, profile: Profile, base: Path | None = None) -> dict:
        sets, _ = default_sets(self.source)
        path = generate_predictions(
            model,
            sets,
            self.root / f"{name}.jsonl",
            model_cfg=profile.model,
            eval_cfg=profile.eval,
            base_path=base,
            training_prompts=self.source.training_prompts,
        )
        per_row, _ = evaluate_predictions(read_jsonl(path), self.engine)
        return {(str(r["set"]), str(r["id"])): float(r["rule_score"]) for r in per_row}

    def gain(self, algorithm: str, overrides: dict[str, object]) -> Estimate:
        profile = load_profile("tiny", overrides)
        assert profile.rl.algorithm == algorithm
        if algorithm == "ppo":
            from tasks.train.ppo import train_ppo as train
        else:
            from tasks.train.grpo import train_grpo as train
        out = self.root / algorithm
        with one_thread():  # as the pipeline trains the tiny model (tasks/train/rl.py)
            train(
                self.source.training_prompts,
                self.source.base_model / "tiny",
                self.root / "sft" / "final_lora",
                out,
                profile.rl,
                profile.model,
                self.engine.as_reward_fn(),
                self.engine.breakdown_fn(),
                metadata={},
            )
        after = self.scores(out / "final_model", algorithm, profile)
        keys = sorted(set(self.sft_scores) & set(after))
        est = paired_bootstrap_diff([self.sft_scores[k] for k in keys], [after[k] for k in keys])
        record = {"algorithm": algorithm, "gain": est.as_dict(), "sft_n": len(self.sft_scores)}
        (self.root / f"{algorithm}-gain.json").write_text(json.dumps(record), encoding="utf-8")
        print(f"tiny {algorithm}: RL - SFT mean rule score {est.as_dict()}")  # the figures, for the notes
        return est


@pytest.fixture(scope="module")
def learning(first_pipeline_run, tmp_path_factory: pytest.TempPathFactory) -> Learning:  # noqa: ANN001
    from tasks.train.sft_trainer import train_sft

    source = Workdir.at(first_pipeline_run.workdir)
    base = source.base_model / "tiny"
    needed = [source.split("train"), source.split("dev"), source.training_prompts, base / "config.json"]
    missing = [str(p) for p in needed if not p.is_file()]
    assert not missing, f"the e2e pipeline run left no {missing}:\n{first_pipeline_run.result.output[-3000:]}"
    root = tmp_path_factory.mktemp("tiny-learns")
    profile = load_profile("tiny")
    train_sft(source.split("train"), source.split("dev"), base, root / "sft", profile.sft, profile.model)
    engine = RewardEngine(SafetyRules.from_yaml(ASSETS.safety_rules), profile.reward, None)
    learning = Learning(source, root, profile, engine, {})
    learning.sft_scores = learning.scores(root / "sft" / "final_lora", "sft", profile, base)
    return learning


@pytest.mark.parametrize(("algorithm", "overrides"), [("ppo", {}), ("grpo", GRPO_SETS)], ids=["ppo", "grpo"])
def test_rl_beats_sft_on_held_out_prompts(learning: Learning, algorithm: str, overrides: dict) -> None:
    est = learning.gain(algorithm, overrides)
    assert est.n >= MIN_PROMPTS, f"only {est.n} held-out prompts paired"
    assert est.lo is not None and est.lo > 0, (
        f"tiny {algorithm}: RL - SFT mean rule score {est.value:+.3f} "
        f"[{est.lo:+.3f}, {est.hi:+.3f}], n = {est.n}: the interval does not clear 0"
    )
