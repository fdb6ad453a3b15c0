"""The Great Expectations suites of the quality gate, one per table, built from the run's config.

Only built-in expectations are used; cross-table rules and the per-field null and type checks read the
derived columns of validation.tables (0/1 flags, copies per safety prompt, the names of missing or
mistyped fields), so Data Docs show each rule with its observed value.
"""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from tasks.core.config import DataConfig, GateConfig, SamplingConfig
from tasks.core.records import LANGS, RISK_LEVELS, RL_ORIGINS
from validation.tables import (
    EVAL_TABLES,
    OVER_REFUSAL_COLUMNS,
    OVERLAP_COLUMNS,
    PROCESSED_COLUMNS,
    RL_COLUMNS,
    TABLE_SPLIT,
)


def _schema(columns: tuple[str, ...]) -> list[gxe.Expectation]:
    # one expectation for the column set, one for nulls and one for types, not one per column: GE's cost
    # is mostly per expectation (validation.tables adds missing_fields and mistyped_fields)
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(columns), exact_match=False),
        gxe.ExpectColumnValuesToBeNull(column="missing_fields"),
        gxe.ExpectColumnValuesToBeNull(column="mistyped_fields"),
        gxe.ExpectColumnValuesToBeInSet(column="risk_level", value_set=list(RISK_LEVELS)),
        gxe.ExpectColumnValuesToBeInSet(column="categories_known", value_set=[True]),
    ]


def processed_expectations(table: str, gate: GateConfig, data: DataConfig) -> list[gxe.Expectation]:
    """Schema, types, allowed values, lengths, and the no-overlap flags of one processed table."""
    exps = _schema(PROCESSED_COLUMNS) + [gxe.ExpectColumnValuesToBeUnique(column="id")]
    exps += [
        gxe.ExpectColumnValuesToBeInSet(column="lang", value_set=list(LANGS)),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=[TABLE_SPLIT[table]]),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="question", min_value=data.min_question_chars, max_value=data.max_question_chars
        ),
        gxe.ExpectColumnValueLengthsToBeBetween(column="think", min_value=0, max_value=data.max_think_chars),
    ]
    if table not in ("red_team", "red_team_eval"):  # judged on the question; their answers are references
        exps.append(
            gxe.ExpectColumnValueLengthsToBeBetween(
                column="answer", min_value=data.min_answer_chars, max_value=data.max_answer_chars
            )
        )
    if table in ("train", "dev", "test"):
        exps.append(gxe.ExpectTableRowCountToBeBetween(min_value=gate.min_rows_per_split))
    flags = {
        "train": ("id_in_test", "group_in_test", "id_in_dev", "group_in_dev"),
        "dev": ("id_in_test", "group_in_test"),
        "test": ("group_in_rl",),
        "red_team": ("id_in_splits", "group_in_train"),
        "red_team_eval": ("id_in_splits", "group_in_train", "group_in_rl"),
    }.get(table, ())
    exps += [gxe.ExpectColumnValuesToBeInSet(column=f, value_set=[0]) for f in flags]
    if table in EVAL_TABLES:
        exps += held_out_expectations()
    if table == "train":
        exps.append(gxe.ExpectColumnMeanToBeBetween(column="has_think", min_value=gate.min_think_share))
    return exps


def held_out_expectations() -> list[gxe.Expectation]:
    """An evaluation row shares no id and no near-duplicate question with an RL prompt or a train row; a
    failure lists the offending rows (validation.tables.eval_overlaps names both sides)."""
    return [gxe.ExpectColumnValuesToBeNull(column=column) for column in OVERLAP_COLUMNS]


def over_refusal_expectations() -> list[gxe.Expectation]:
    """The shipped over-refusal set: its schema, unique ids, languages, and held out from training."""
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(OVER_REFUSAL_COLUMNS), exact_match=False),
        gxe.ExpectColumnValuesToBeNull(column="missing_fields"),
        gxe.ExpectColumnValuesToBeNull(column="mistyped_fields"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeInSet(column="lang", value_set=list(LANGS)),
        *held_out_expectations(),
    ]


def rl_expectations(
    gate: GateConfig, sampling: SamplingConfig, data: DataConfig, safety_prompts: int
) -> list[gxe.Expectation]:
    """Schema of the RL prompts, the critical+high share, and exactly `red_team_copies` per safety prompt."""
    exps = _schema(RL_COLUMNS)
    exps += [  # ids repeat across copies of a safety prompt; (id, copy) must not
        gxe.ExpectColumnValuesToBeInSet(column="origin", value_set=list(RL_ORIGINS)),
        gxe.ExpectColumnValuesToBeBetween(column="copy", min_value=1, max_value=sampling.red_team_copies),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["id", "copy"]),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="question", min_value=1, max_value=data.max_question_chars
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnMeanToBeBetween(
            column="is_critical_high", min_value=gate.min_critical_high_share, strict_min=True
        ),
        gxe.ExpectColumnValuesToBeInSet(column="safety_copies", value_set=[float(sampling.red_team_copies)]),
        gxe.ExpectColumnUniqueValueCountToBeBetween(
            column="safety_id", min_value=safety_prompts, max_value=safety_prompts
        ),
    ]
    return exps


def build_suites(
    gate: GateConfig, sampling: SamplingConfig, data: DataConfig, safety_prompts: int
) -> dict[str, gx.ExpectationSuite]:
    """Suite per table, named after it (processed_train ... rl_prompts, over_refusal)."""
    suites = {}
    for table in TABLE_SPLIT:
        name = f"processed_{table}" if table in ("train", "dev", "test") else table
        suites[table] = gx.ExpectationSuite(name=name, expectations=processed_expectations(table, gate, data))
    suites["rl_prompts"] = gx.ExpectationSuite(
        name="rl_prompts", expectations=rl_expectations(gate, sampling, data, safety_prompts)
    )
    suites["over_refusal"] = gx.ExpectationSuite(
        name="over_refusal", expectations=over_refusal_expectations()
    )
    return suites
