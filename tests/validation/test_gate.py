from __future__ import annotations

import pytest

from tasks.core.errors import MedsafeError
from tasks.core.io import read_jsonl, write_jsonl
from tasks.core.workdir import ASSETS
from validation.gate import run_quality_gate
from validation.results import FailedExpectation, GateResult, QualityGateFailed
from validation.tables import build_frames, load_tables


def _edit(path, change):
    rows = read_jsonl(path)
    write_jsonl(path, change(rows))


def test_gate_passes_on_good_data(good_case):
    # Data Docs take ~1 s per table to render: the slow flow test builds and checks them
    result = run_quality_gate(
        good_case.workdir, good_case.gate, good_case.sampling, good_case.data, build_docs=False
    )
    assert result.passed, [f.describe() for f in result.failed]
    assert result.failed == []
    assert set(result.suites) == {
        "processed_train",
        "processed_dev",
        "processed_test",
        "gold_set",
        "red_team",
        "red_team_eval",
        "rl_prompts",
        "over_refusal",
    }
    assert all(
        s["unsuccessful_expectations"] == 0 and s["evaluated_expectations"] > 5
        for s in result.suites.values()
    )
    assert result.data_docs_index is None
    result.raise_for_failure()  # a passed gate does not raise


def _safety_ids(case) -> list[str]:
    """The safety red-team prompts of the RL part, in file order."""
    return [r["id"] for r in read_jsonl(case.workdir.split("red_team")) if r["source"] == "safety_red_team"]


def _corrupt(case) -> None:
    """Duplicate id, train/test overlap, think share too low, critical+high share too low, a prompt twice."""
    first = _safety_ids(case)[0]
    processed = case.workdir.processed
    test_row = read_jsonl(processed / "test.jsonl")[0]

    def train(rows):
        for r in rows[: int(len(rows) * 0.6)]:
            r["think"] = ""
        return rows + [dict(rows[-1]), test_row | {"split": "train"}]

    def prompts(rows):
        rows = [r if r["origin"] == "safety_red_team" else r | {"risk_level": "low"} for r in rows]
        dropped = next(i for i, r in enumerate(rows) if r["id"] == first)
        return rows[:dropped] + rows[dropped + 1 :]

    _edit(processed / "train.jsonl", train)
    _edit(case.workdir.training_prompts, prompts)


def test_gate_fails_and_names_each_failed_expectation(good_case):
    _corrupt(good_case)
    result = run_quality_gate(
        good_case.workdir, good_case.gate, good_case.sampling, good_case.data, build_docs=False
    )
    assert not result.passed
    assert {(f.suite, f.expectation_type, f.column) for f in result.failed} == {
        ("processed_train", "expect_column_values_to_be_unique", "id"),
        ("processed_train", "expect_column_values_to_be_in_set", "id_in_test"),
        ("processed_train", "expect_column_values_to_be_in_set", "group_in_test"),
        ("processed_train", "expect_column_mean_to_be_between", "has_think"),
        ("processed_test", "expect_column_values_to_be_null", "train_overlap"),  # the test row put in train
        ("rl_prompts", "expect_column_mean_to_be_between", "is_critical_high"),
        ("rl_prompts", "expect_column_values_to_be_in_set", "safety_copies"),
    }
    with pytest.raises(QualityGateFailed) as info:
        result.raise_for_failure()
    message = str(info.value)
    assert "7 expectation(s)" in message
    assert (
        "[rl_prompts] expect_column_mean_to_be_between on column 'is_critical_high': observed 0.09" in message
    )
    assert (
        "[rl_prompts] expect_column_values_to_be_in_set on column 'safety_copies': observed 2 unexpected rows"
        in message
    )
    assert "min_value=0.9" in message  # the think-share threshold is named
    assert result.suites["processed_train"]["unsuccessful_expectations"] == 4


def test_a_missing_column_is_named(good_case):
    _edit(
        good_case.workdir.processed / "dev.jsonl",
        lambda rows: [{k: v for k, v in r.items() if k != "source"} for r in rows],
    )
    result = run_quality_gate(
        good_case.workdir, good_case.gate, good_case.sampling, good_case.data, build_docs=False
    )
    schema = [f for f in result.failed if f.expectation_type == "expect_table_columns_to_match_set"]
    assert not result.passed and [(f.suite, f.observed) for f in schema] == [
        ("processed_dev", "missing columns: source")
    ]


def test_derived_flags_mark_cross_table_problems(good_case):
    first, second = _safety_ids(good_case)[:2]
    _corrupt(good_case)
    frames = build_frames(load_tables(good_case.workdir))
    train = frames["train"]
    assert train["id_in_test"].tolist()[-1] == 1 and train["id_in_test"].sum() == 1
    assert train["has_think"].mean() < 0.5
    rl = frames["rl_prompts"]
    assert sorted(rl.loc[rl["safety_id"] == first, "safety_copies"].tolist()) == [2.0, 2.0]
    assert set(rl.loc[rl["safety_id"] == second, "safety_copies"]) == {3.0}
    assert rl["safety_copies"].isna().sum() == (rl["origin"] != "safety_red_team").sum()
    assert frames["red_team"]["id_in_splits"].sum() == 0


def test_data_docs_are_built_once_with_a_page_per_table(good_case):
    _corrupt(good_case)
    result = run_quality_gate(good_case.workdir, good_case.gate, good_case.sampling, good_case.data)
    docs = good_case.workdir.data_quality_reports / "data_docs"
    assert result.data_docs_index == str(docs / "index.html")
    suites = set(result.suites)
    assert {p.stem for p in (docs / "expectations").glob("*.html")} == suites
    assert {p.parts[len(docs.parts) + 1] for p in (docs / "validations").rglob("*.html")} == suites
    page = next((docs / "validations" / "rl_prompts").rglob("*.html")).read_text(encoding="utf-8")
    assert "safety_copies" in page and "is_critical_high" in page  # failures shown with their columns
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert all(name in index for name in suites)


def test_flags_survive_cells_that_are_not_text(good_case):
    train = good_case.workdir.processed / "train.jsonl"
    _edit(train, lambda rows: rows + [dict(rows[0], id=["not", "text"], group=None)])
    frame = build_frames(load_tables(good_case.workdir))["train"]
    assert frame["id_in_test"].tolist()[-1] == 0 and frame["id_in_test"].dtype == "int64"
    result = run_quality_gate(
        good_case.workdir, good_case.gate, good_case.sampling, good_case.data, build_docs=False
    )
    failed = {(f.suite, f.expectation_type, f.column): f.observed for f in result.failed}
    assert "['id']" in failed[("processed_train", "expect_column_values_to_be_null", "mistyped_fields")]
    assert "['group']" in failed[("processed_train", "expect_column_values_to_be_null", "missing_fields")]


def test_missing_and_mistyped_fields_are_named_per_row(good_case):
    _edit(
        good_case.workdir.training_prompts,
        lambda rows: rows + [dict(rows[0], copy=True, question=None), dict(rows[0], copy="2", origin=None)],
    )
    rl = build_frames(load_tables(good_case.workdir))["rl_prompts"]
    assert rl["missing_fields"].tolist()[-2:] == ["question", "origin"]
    assert rl["mistyped_fields"].tolist()[-2:] == ["copy", "copy"]  # a bool is no copy number, nor is text
    assert rl["missing_fields"].iloc[:-2].isna().all() and rl["mistyped_fields"].iloc[:-2].isna().all()


def test_missing_table_names_the_stage_to_run(good_case):
    good_case.workdir.training_prompts.unlink()
    with pytest.raises(
        MedsafeError, match="training_prompts.jsonl does not exist: run the 'sample_rl_prompts' stage"
    ):
        run_quality_gate(good_case.workdir, good_case.gate, good_case.sampling)


def test_gate_result_round_trips_and_message_names_everything(tmp_path):
    failed = FailedExpectation(
        "rl_prompts", "expect_column_mean_to_be_between", "is_critical_high", "0.3", "min_value=0.4"
    )
    result = GateResult(
        passed=False, failed=[failed], suites={"rl_prompts": {"rows": 3}}, data_docs_index="/x/index.html"
    )
    assert GateResult.from_dict(result.to_dict()) == result
    message = str(QualityGateFailed(result))
    for part in (
        "rl_prompts",
        "expect_column_mean_to_be_between",
        "is_critical_high",
        "observed 0.3",
        "/x/index.html",
    ):
        assert part in message


def test_gate_fails_naming_evaluation_prompts_planted_in_training(good_case):
    wd = good_case.workdir
    held_out = read_jsonl(wd.split("red_team_eval"))
    test_row = read_jsonl(wd.split("test"))[0]
    over_refusal = read_jsonl(ASSETS.over_refusal)[3]
    assert held_out, "the fixture must hold red-team prompts out"
    planted = {
        k: held_out[0][k] for k in ("id", "question", "risk_level", "safety_categories", "safety_concern")
    }
    reworded = {**planted, "id": "rl-copy", "question": test_row["question"] + "!"}  # same question, new id
    _edit(
        wd.training_prompts,
        lambda rows: (
            rows + [planted | {"origin": "red_team", "copy": 1}, reworded | {"origin": "train", "copy": 1}]
        ),
    )
    _edit(
        wd.split("train"),
        lambda rows: rows + [dict(rows[0], id="t-or", group="t-or", question=over_refusal["question"])],
    )
    result = run_quality_gate(wd, good_case.gate, good_case.sampling, good_case.data, build_docs=False)
    assert not result.passed
    failed = {(f.suite, f.column): f.observed for f in result.failed}
    assert set(failed) == {
        ("red_team_eval", "rl_overlap"),
        ("processed_test", "rl_overlap"),
        ("over_refusal", "train_overlap"),
    }
    rid = held_out[0]["id"]
    assert f"{rid}: same id as RL prompt {rid}" in failed[("red_team_eval", "rl_overlap")]
    assert (
        f"{test_row['id']} ~ RL prompt rl-copy (question Jaccard" in failed[("processed_test", "rl_overlap")]
    )
    assert (
        f"{over_refusal['id']} ~ train row t-or (question Jaccard 1.00)"
        in failed[("over_refusal", "train_overlap")]
    )
    with pytest.raises(QualityGateFailed, match=rid):
        result.raise_for_failure()


def test_evaluation_sets_start_apart_from_training(good_case):
    frames = build_frames(load_tables(good_case.workdir))
    for name in ("test", "red_team_eval", "over_refusal"):
        assert frames[name]["rl_overlap"].isna().all() and frames[name]["train_overlap"].isna().all()
    assert len(frames["over_refusal"]) >= 120 and len(frames["red_team_eval"]) > 0
    prompts = {p["id"] for p in read_jsonl(good_case.workdir.training_prompts)}
    assert not prompts & {r["id"] for r in read_jsonl(good_case.workdir.split("red_team_eval"))}


def test_gate_skips_gx_batch_fingerprints_and_restores_the_setting(good_case, monkeypatch):
    """GX's per-batch fingerprint hashes every cell (0.7 s of a 50k-row gate) and nothing reads it: the gate
    turns it off while its checkpoints run. Fails when a GX upgrade renames the setting or the hash."""
    import great_expectations.execution_engine.pandas_execution_engine as gx_pandas

    before = gx_pandas.HASH_THRESHOLD
    hashed = []
    real = gx_pandas.hash_pandas_dataframe
    monkeypatch.setattr(gx_pandas, "hash_pandas_dataframe", lambda df: hashed.append(len(df)) or real(df))
    result = run_quality_gate(
        good_case.workdir, good_case.gate, good_case.sampling, good_case.data, build_docs=False
    )
    assert result.passed and len(result.suites) == 8
    assert hashed == []
    assert before == gx_pandas.HASH_THRESHOLD
