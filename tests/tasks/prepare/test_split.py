from __future__ import annotations

import json
import random
import string
from collections import Counter
from pathlib import Path

import pytest

from tasks.core.config import DataConfig
from tasks.core.errors import MedsafeError
from tasks.core.io import read_jsonl
from tasks.core.text import ThinkSplit, split_think
from tasks.prepare.split import load_safety_red_team, split_rows, stratified_take, write_splits

LEVELS = ("critical", "high", "medium", "low")


def _row(i: int, group: str, risk: str = "low", source: str = "medical-o1") -> dict:
    return {
        "id": f"r{i:05d}",
        "source": source,
        "lang": "zh",
        "question": f"问题{i}：头痛三天怎么办",
        "think": "分析",
        "answer": "建议就医",
        "risk_level": risk,
        "safety_categories": [],
        "safety_concern": None,
        "split": "",
        "group": group,
    }


def _rows(n: int, per_group: int = 3) -> list[dict]:
    return [_row(i, f"g{i // per_group}", LEVELS[(i // per_group) % 4]) for i in range(n)]


def _safety_file(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "safety_red_team.jsonl"
    rows = [
        {
            "id": f"srt-{i}",
            "lang": "zh",
            "question": f"孩子高烧抽搐{i}怎么办",
            "reference_answer": f"<think>红旗信号{i}</think>\n立即拨打120。",
            "risk_level": "critical",
            "safety_categories": ["emergency"],
            "safety_concern": "急危重症",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _split_of(result) -> dict[str, str]:
    return {r["id"]: name for name, rows in result.tables().items() for r in rows}


def test_split_is_deterministic_and_depends_on_seed():
    rows = _rows(600)
    cfg = DataConfig(dev_fraction=0.1, test_fraction=0.1, gold_size=5)
    first, again = split_rows(rows, [], cfg), split_rows(rows, [], cfg)
    other = split_rows(rows, [], cfg.model_copy(update={"seed": 7}))
    assert _split_of(first) == _split_of(again)
    assert _split_of(first) != _split_of(other)


def test_rows_are_copied_once_with_group_and_split_set_in_place():
    rows = _rows(60) + [{k: v for k, v in _row(7000, "").items() if k not in ("group", "split")}]
    before = json.dumps(rows, ensure_ascii=False)
    result = split_rows(rows, [], DataConfig(dev_fraction=0.2, test_fraction=0.2, gold_size=0))
    assert json.dumps(rows, ensure_ascii=False) == before  # the input is not modified
    out = {r["id"]: r for table in result.tables().values() for r in table}
    assert list(out["r00000"]) == list(rows[0])  # existing keys keep their place
    assert list(out["r07000"])[-2:] == ["group", "split"] and out["r07000"]["group"] == "r07000"
    assert all(out[r["id"]] is not r for r in rows)


def test_near_duplicate_groups_never_straddle_splits():
    rows = _rows(900, per_group=3)
    result = split_rows(rows, [], DataConfig(dev_fraction=0.1, test_fraction=0.1, gold_size=10))
    held_out = {"test": "test", "gold_set": "test"}  # gold is drawn from test, so it counts as test
    splits_per_group: dict[str, set[str]] = {}
    for name, table in result.tables().items():
        for r in table:
            splits_per_group.setdefault(r["group"], set()).add(held_out.get(name, name))
    assert all(len(s) == 1 for s in splits_per_group.values())
    assert sum(len(t) for t in result.tables().values()) == 900


def test_fractions_are_met_on_average():
    result = split_rows(
        _rows(3000, per_group=1), [], DataConfig(dev_fraction=0.1, test_fraction=0.05, gold_size=0)
    )
    counts = Counter({name: len(rows) for name, rows in result.tables().items()})
    assert 0.08 < counts["dev"] / 3000 < 0.12
    assert 0.035 < counts["test"] / 3000 < 0.065
    assert all(r["split"] == name for name in ("train", "dev", "test") for r in getattr(result, name))


def test_red_team_rows_never_enter_train_dev_test(tmp_path):
    rows = _rows(300)
    rows.append(_row(90001, "g-rt", "critical", source="medsafetybench"))
    rows.append(_row(90003, "g-rt2", "high", source="MedSafetyBench:en"))
    rows.append(_row(90002, "g-rt", "high"))  # a near duplicate of the red-team prompt from a training source
    shipped = load_safety_red_team(_safety_file(tmp_path))
    result = split_rows(rows, shipped, DataConfig(dev_fraction=0.2, test_fraction=0.2, gold_size=0))
    red = {r["id"]: r for r in result.red_team + result.red_team_eval}
    assert set(red) == {"r90001", "r90003", "srt-0", "srt-1", "srt-2"}
    assert all(r["split"] == "red_team" for r in result.red_team)
    assert all(r["split"] == "red_team_eval" for r in result.red_team_eval)
    for name in ("train", "dev", "test", "gold_set"):
        assert not {r["id"] for r in getattr(result, name)} & set(red)
        assert all(
            "red" not in r["source"] and "bench" not in r["source"].lower() for r in getattr(result, name)
        )
    # the training-source near duplicate is never trained on: test beside a held-out prompt, dev beside RL
    beside = "test" if "r90001" in {r["id"] for r in result.red_team_eval} else "dev"
    assert "r90002" in {r["id"] for r in getattr(result, beside)}
    assert any("red-team prompt" in n for n in result.notes)
    srt = red["srt-1"]
    assert (srt["source"], srt["think"], srt["answer"]) == ("safety_red_team", "红旗信号1", "立即拨打120。")
    assert (srt["risk_level"], srt["safety_categories"], srt["safety_concern"]) == (
        "critical",
        ["emergency"],
        "急危重症",
    )


def test_gold_set_is_stratified_by_risk_and_removed_from_test():
    rows = _rows(2000, per_group=1)
    cfg = DataConfig(dev_fraction=0.05, test_fraction=0.2, gold_size=40)
    result = split_rows(rows, [], cfg)
    test_before = Counter(r["risk_level"] for r in result.test + result.gold_set)
    gold = Counter(r["risk_level"] for r in result.gold_set)
    assert sum(gold.values()) == 40
    assert set(gold) == set(LEVELS)
    for level in LEVELS:  # proportional within one row
        assert abs(gold[level] - 40 * test_before[level] / sum(test_before.values())) <= 1
    assert not {r["id"] for r in result.gold_set} & {r["id"] for r in result.test}
    assert all(r["split"] == "gold" for r in result.gold_set)


def test_gold_takes_at_most_half_of_test_and_says_so():
    result = split_rows(
        _rows(400, per_group=1), [], DataConfig(dev_fraction=0.0, test_fraction=0.05, gold_size=500)
    )
    assert len(result.test) > 0
    assert len(result.gold_set) == (len(result.test) + len(result.gold_set)) // 2
    assert any("gold set capped" in n for n in result.notes)


def test_stratified_take_keeps_a_rare_level():
    rows = [_row(i, f"g{i}", "low") for i in range(19)] + [_row(99, "g99", "critical")]
    taken, rest = stratified_take(rows, 4, seed=1)
    assert len(taken) == 4 and len(rest) == 16
    assert Counter(r["risk_level"] for r in taken) == {"critical": 1, "low": 3}
    assert stratified_take(rows, 4, seed=1)[0] == taken


def test_write_splits_writes_all_six_tables(tmp_path):
    result = split_rows(
        _rows(300), load_safety_red_team(_safety_file(tmp_path)), DataConfig(gold_size=2, test_fraction=0.2)
    )
    paths = write_splits(result, tmp_path / "processed")
    assert set(paths) == {"train", "dev", "test", "gold_set", "red_team", "red_team_eval"}
    for name, path in paths.items():
        assert read_jsonl(path) == result.tables()[name]


def test_split_think_cuts_reasoning_from_answer():
    assert split_think("<think> a\nb </think>\n答：c") == ThinkSplit("a\nb", "答：c")
    assert split_think("no tags") == ThinkSplit("", "no tags")
    assert split_think("<think>never closed") == ThinkSplit("never closed", "", unclosed=True)


def test_safety_red_team_file_with_missing_key_names_file_and_line(tmp_path):
    path = _safety_file(tmp_path)
    path.write_text(
        path.read_text(encoding="utf-8") + json.dumps({"id": "x", "question": "q"}) + "\n", encoding="utf-8"
    )
    with pytest.raises(MedsafeError, match=r"safety_red_team\.jsonl:4: .*lacks lang"):
        load_safety_red_team(path)


def _text(rng: random.Random, n: int = 40) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def _red_rows(per_stratum: int, seed: int = 3) -> list[dict]:
    """Safety red-team rows with unrelated questions: per_stratum in each of 2 categories x 2 languages."""
    rng, rows = random.Random(seed), []
    for category in ("emergency", "mental_health"):
        for lang in ("zh", "en"):
            for i in range(per_stratum):
                rid = f"srt-{category}-{lang}-{i}"
                rows.append(
                    {
                        "id": rid,
                        "source": "safety_red_team",
                        "lang": lang,
                        "question": _text(rng),
                        "think": "",
                        "answer": "call 120",
                        "risk_level": "critical",
                        "safety_categories": [category],
                        "safety_concern": None,
                        "group": rid,
                        "split": "red_team",
                    }
                )
    return rows


def test_red_team_hold_out_is_a_stratified_third_deterministic_and_seeded():
    shipped, cfg = _red_rows(15), DataConfig(gold_size=0)
    result = split_rows(_rows(30), shipped, cfg)
    held = Counter((r["safety_categories"][0], r["lang"]) for r in result.red_team_eval)
    assert held == {(c, lang): 5 for c in ("emergency", "mental_health") for lang in ("zh", "en")}
    assert len(result.red_team) == 40 and not {r["id"] for r in result.red_team} & {
        r["id"] for r in result.red_team_eval
    }
    again = split_rows(_rows(30), shipped, cfg)
    assert again.red_team_eval == result.red_team_eval
    other = split_rows(_rows(30), shipped, cfg.model_copy(update={"seed": 5}))
    assert {r["id"] for r in other.red_team_eval} != {r["id"] for r in result.red_team_eval}
    none = split_rows(_rows(30), shipped, cfg.model_copy(update={"red_team_eval_fraction": 0.0}))
    assert none.red_team_eval == [] and len(none.red_team) == 60
    half = split_rows(_rows(30), shipped, cfg.model_copy(update={"red_team_eval_fraction": 0.5}))
    assert len(half.red_team_eval) == 30


def test_near_duplicate_prompts_stay_on_one_side_and_out_of_training():
    shipped = _red_rows(6)
    paraphrases = [  # a reworded copy of each held-out candidate, from a red-team source and a training one
        r
        for i, base in enumerate(shipped[::2])
        for r in (
            {
                **base,
                "id": f"mb-{i}",
                "source": "medsafetybench",
                "group": f"mb-{i}",
                "question": base["question"][:-2] + "zz",
            },
            _row(80000 + i, f"t-{i}") | {"question": base["question"][:-1] + "q"},
        )
    ]
    training = [r for r in paraphrases if r["source"] == "medical-o1"]
    external = [r for r in paraphrases if r["source"] == "medsafetybench"]
    result = split_rows(_rows(60) + external + training, shipped, DataConfig(gold_size=2, test_fraction=0.2))
    side = {r["id"]: "eval" for r in result.red_team_eval} | {r["id"]: "rl" for r in result.red_team}
    place = _split_of(result)
    for i, base in enumerate(shipped[::2]):
        assert side[f"mb-{i}"] == side[base["id"]]  # near duplicates share a side
        assert place[f"r{80000 + i:05d}"] == ("test" if side[base["id"]] == "eval" else "dev")
    assert {"eval", "rl"} == set(side.values())


def test_near_duplicate_questions_in_training_sources_share_a_split():
    rows = _rows(300, per_group=1)
    twins = [
        _row(70000 + i, f"x{i}") | {"question": "同一个问题：胸口闷痛三天，需要去医院吗" + "？" * (i % 2)}
        for i in range(40)
    ]
    result = split_rows(rows + twins, [], DataConfig(dev_fraction=0.2, test_fraction=0.2, gold_size=0))
    place = _split_of(result)
    assert len({place[r["id"]] for r in twins}) == 1
    assert len({r["group"] for t in result.tables().values() for r in t if r["id"].startswith("r7")}) == 1


def test_gold_leaves_test_with_its_group_and_avoids_red_team_groups(tmp_path):
    rows = _rows(600, per_group=2)
    rows.append(_row(90001, "g-rt", "critical", source="medsafetybench"))
    rows += [_row(90002 + i, "g-rt", "low") for i in range(30)]  # training-source rows in a red-team group
    cfg = DataConfig(dev_fraction=0.05, test_fraction=0.3, gold_size=20, red_team_eval_fraction=0.5)
    result = split_rows(rows, [], cfg)
    assert [r["id"] for r in result.red_team_eval] == ["r90001"]
    gold_groups = {r["group"] for r in result.gold_set}
    assert "g-rt" not in gold_groups and not gold_groups & {r["group"] for r in result.test}
    assert len(result.gold_set) > 20 and any("go with it" in n for n in result.notes)
