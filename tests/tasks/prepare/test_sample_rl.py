from __future__ import annotations

import random
import string
from collections import Counter

import pytest

from tasks.core.config import DataConfig, SamplingConfig
from tasks.core.records import RL_ORIGINS
from tasks.prepare.sample_rl import plan_train_counts, sample_rl_prompts, summarize
from tasks.prepare.split import split_rows


def _row(rid: str, risk: str, source: str = "medical-o1") -> dict:
    return {
        "id": rid,
        "source": source,
        "lang": "zh",
        "question": f"问题 {rid}",
        "think": "t",
        "answer": "a",
        "risk_level": risk,
        "safety_categories": [],
        "safety_concern": None,
        "split": "train",
        "group": rid,
    }


def _train(n_high: int, n_general: int) -> list[dict]:
    high = [_row(f"h{i}", "critical" if i % 3 == 0 else "high") for i in range(n_high)]
    return high + [_row(f"n{i}", "medium" if i % 2 else "low") for i in range(n_general)]


def _red_team(n_safety: int = 5, n_external: int = 2) -> list[dict]:
    safety = [_row(f"srt-{i}", "critical", "safety_red_team") for i in range(n_safety)]
    return safety + [_row(f"mb-{i}", "high", "medsafetybench") for i in range(n_external)]


GOLD = [_row(f"gold-{i}", "medium") for i in range(3)]


def test_plan_ratio_copies_and_origins():
    cfg = SamplingConfig(target_size=100)
    report = sample_rl_prompts(_train(200, 200), _red_team(), GOLD, cfg)
    by_origin = Counter(p["origin"] for p in report.prompts)
    assert by_origin == {"safety_red_team": 15, "red_team": 2, "gold": 3, "train": 80}
    train = [p for p in report.prompts if p["origin"] == "train"]
    assert sum(p["risk_level"] in ("critical", "high") for p in train) == 48  # 60% of the 80 train slots
    copies = Counter((p["id"]) for p in report.prompts if p["origin"] == "safety_red_team")
    assert copies == {f"srt-{i}": 3 for i in range(5)}
    assert {p["copy"] for p in report.prompts if p["id"] == "srt-0"} == {1, 2, 3}
    assert {p["copy"] for p in report.prompts if p["origin"] != "safety_red_team"} == {1}
    assert report.notes == [] and report.shortfall == {}
    assert set(report.prompts[0]) == {
        "id",
        "question",
        "risk_level",
        "safety_categories",
        "safety_concern",
        "origin",
        "copy",
    }


def test_no_silent_duplicates():
    train = _train(200, 200)
    train += [dict(train[0]), dict(train[250])]  # repeated ids in the input
    report = sample_rl_prompts(train, _red_team(), GOLD, SamplingConfig(target_size=300))
    keys = [(p["id"], p["copy"]) for p in report.prompts]
    assert len(keys) == len(set(keys))
    assert any("skipped 2 train rows" in n for n in report.notes)


def test_too_few_high_risk_rows_shrink_the_general_share_and_say_so():
    cfg = SamplingConfig(target_size=100)
    report = sample_rl_prompts(_train(12, 500), _red_team(), GOLD, cfg)
    train = [p for p in report.prompts if p["origin"] == "train"]
    high = sum(p["risk_level"] in ("critical", "high") for p in train)
    assert (high, len(train) - high) == (12, 8)  # 8 = floor(12 * 0.4 / 0.6): the 60/40 mix holds
    assert report.shortfall == {"high_risk": 36, "general": 24, "total": 60}
    assert len(report.prompts) == 100 - 60
    assert any("short of target_size" in n and "no rows repeated" in n for n in report.notes)
    assert summarize(report, cfg)["shortfall"]["total"] == 60


def test_too_few_general_rows_shrink_the_high_risk_share():
    report = sample_rl_prompts(_train(500, 10), [], [], SamplingConfig(target_size=100))
    high = sum(p["risk_level"] in ("critical", "high") for p in report.prompts)
    assert (high, len(report.prompts) - high) == (15, 10)  # 15 = 10 * 0.6 / 0.4
    assert report.shortfall["total"] == 75


@pytest.mark.parametrize(
    ("n_high", "n_general", "rest"), [(0, 100, 50), (7, 100, 50), (100, 3, 50), (5, 3, 50), (100, 100, 17)]
)
def test_plan_never_drops_below_the_high_risk_share(n_high, n_general, rest):
    high, general = plan_train_counts(n_high, n_general, rest, 0.6)
    assert high <= n_high and general <= n_general and high + general <= rest
    if high + general:
        assert high / (high + general) >= 0.6


def test_sampling_is_deterministic_and_seeded():
    args = (_train(300, 300), _red_team(), GOLD)
    a = sample_rl_prompts(*args, SamplingConfig(target_size=120)).prompts
    b = sample_rl_prompts(*args, SamplingConfig(target_size=120)).prompts
    c = sample_rl_prompts(*args, SamplingConfig(target_size=120, seed=3)).prompts
    assert a == b
    assert {p["id"] for p in a} != {p["id"] for p in c}


def test_optional_origins_can_be_turned_off():
    cfg = SamplingConfig(target_size=60, include_red_team=False, include_gold=False, red_team_copies=2)
    report = sample_rl_prompts(_train(100, 100), _red_team(), GOLD, cfg)
    assert set(Counter(p["origin"] for p in report.prompts)) == {"safety_red_team", "train"}
    assert Counter(p["origin"] for p in report.prompts)["safety_red_team"] == 10


def test_summary_counts():
    cfg = SamplingConfig(target_size=100)
    summary = summarize(sample_rl_prompts(_train(200, 200), _red_team(), GOLD, cfg), cfg)
    assert summary["total"] == 100 and set(summary["origins"]) <= set(RL_ORIGINS)
    assert sum(summary["risk_distribution"].values()) == 100
    assert summary["red_team_copies"] == {"prompts": 5, "expected_copies": 3, "copies_seen": [3]}
    # 15 safety (critical) + 2 external (high) + 48 train critical/high out of 100
    assert summary["critical_high_share"] == pytest.approx(0.65)


def test_rl_prompts_come_from_the_rl_part_of_the_split_only():
    rng = random.Random(11)
    red = [
        _row(f"srt-{i}", "critical", "safety_red_team")
        | {
            "question": "".join(rng.choice(string.ascii_lowercase) for _ in range(40)),
            "lang": ("zh", "en")[i % 2],
        }
        for i in range(30)
    ]
    train = _train(300, 300)
    split = split_rows(train + red[20:], red[:20], DataConfig(test_fraction=0.2, gold_size=5))
    report = sample_rl_prompts(split.train, split.red_team, split.gold_set, SamplingConfig(target_size=200))
    held_out = {r["id"] for r in split.red_team_eval + split.test}
    assert len(split.red_team_eval) == 10 and not held_out & {p["id"] for p in report.prompts}
    copies = Counter(p["id"] for p in report.prompts if p["origin"] == "safety_red_team")
    assert set(copies) == {r["id"] for r in split.red_team if r["source"] == "safety_red_team"}
    assert set(copies.values()) == {3}
