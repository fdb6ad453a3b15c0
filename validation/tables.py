"""Load the tables the quality gate checks and add the derived columns its expectations read.

Cross-table rules (no id or group shared by train and test, red-team isolation, copies per safety
prompt) become per-row flags here, so each one is an ordinary built-in expectation on one table. The
evaluation sets (test, red_team_eval, the shipped over-refusal set) get `rl_overlap` and `train_overlap`:
null, or the text naming the RL prompt or train row they share an id or a near-duplicate question with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.core.errors import MedsafeError
from tasks.core.io import read_jsonl
from tasks.core.records import HIGH_RISK_LEVELS, RISK_CATEGORIES, SAFETY_RED_TEAM_SOURCE
from tasks.core.workdir import ASSETS, Workdir
from tasks.prepare.held_out import cross_pairs, prompt_text

PROCESSED_TABLES: tuple[str, ...] = ("train", "dev", "test", "gold_set", "red_team", "red_team_eval")
# the value of `split` each table's rows carry
TABLE_SPLIT = {name: name for name in PROCESSED_TABLES} | {"gold_set": "gold"}
# what evaluation reads: never an RL prompt or an SFT train row, by id or near-duplicate question
EVAL_TABLES: tuple[str, ...] = ("test", "red_team_eval", "over_refusal")
OVERLAP_COLUMNS = {"rl_overlap": ("rl_prompts", "RL prompt"), "train_overlap": ("train", "train row")}
OVER_REFUSAL_COLUMNS: tuple[str, ...] = ("id", "question", "lang")
PROCESSED_COLUMNS: tuple[str, ...] = (
    "id",
    "source",
    "lang",
    "question",
    "think",
    "answer",
    "risk_level",
    "safety_categories",
    "safety_concern",
    "split",
    "group",
)
RL_COLUMNS: tuple[str, ...] = (
    "id",
    "question",
    "risk_level",
    "safety_categories",
    "safety_concern",
    "origin",
    "copy",
)
_MAKES = dict.fromkeys(PROCESSED_TABLES, "split") | {"rl_prompts": "sample_rl_prompts"}
_SHIPPED = {"over_refusal": "the shipped over-refusal set (data/over_refusal/ in the repository)"}
# what every row must carry (not null), and the type of each typed field when it is not null
_TEXT = ("id", "source", "lang", "question", "answer", "risk_level", "split", "group")
REQUIRED = {
    "processed": _TEXT,
    "rl_prompts": ("id", "question", "risk_level", "origin", "copy"),
    "over_refusal": OVER_REFUSAL_COLUMNS,
}
TYPED: dict[str, dict[str, type]] = {
    "processed": dict.fromkeys((*_TEXT, "think", "safety_concern"), str),  # safety_concern may be null
    "rl_prompts": {"question": str, "copy": int},
    "over_refusal": dict.fromkeys(OVER_REFUSAL_COLUMNS, str),
}


def table_paths(workdir: Workdir) -> dict[str, Path]:
    paths = {name: workdir.split(name) for name in PROCESSED_TABLES}
    return paths | {"rl_prompts": workdir.training_prompts, "over_refusal": ASSETS.over_refusal}


def load_tables(paths: Workdir | dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """Read every gated table (from a workdir, or the files given); a missing file names the stage that writes
    it.
    """
    tables = {}
    for name, path in (table_paths(paths) if isinstance(paths, Workdir) else paths).items():
        if not path.is_file() and name in _SHIPPED:
            raise MedsafeError(
                f"quality gate input {path} does not exist: it is {_SHIPPED[name]}; restore it from the "
                "repository (or point MEDSAFE_ASSETS at a data folder that has it)"
            )
        if not path.is_file():
            raise MedsafeError(
                f"quality gate input {path} does not exist: run the '{_MAKES[name]}' stage first"
            )
        tables[name] = read_jsonl(path, keep=True)  # the report reads them next
    return tables


# text fields stay Python objects in the frames: pandas 3 would copy each into an Arrow string column
# (258 MiB more of the gate's peak at 200k rows, and 40% of building its frames) for expectations that read
# them the same either way (set membership, lengths, uniqueness, nulls)
_TEXT_COLUMNS = frozenset(c for typed in TYPED.values() for c, kind in typed.items() if kind is str)


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    # an empty table still has its columns, so schema expectations judge it on rows, not on absence
    if not rows:
        return pd.DataFrame(columns=list(columns))
    df = pd.DataFrame(rows, dtype=object)  # every field of every row, the rows' own objects
    for column in df.columns:
        if column not in _TEXT_COLUMNS:  # numbers, flags, lists: typed as pandas infers them
            df[column] = df[column].infer_objects()
    return df


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """The column, or all nulls when it is missing (the schema expectation then fails, not the gate)."""
    return df[name] if name in df else pd.Series([None] * len(df), index=df.index, dtype=object)


def _flag(values: pd.Series, members: set[Any]) -> pd.Series:
    # as objects: an Arrow string column's isin converts every member to an Arrow scalar first
    try:
        return values.astype(object).isin(members).astype("int64")
    except TypeError:  # an unhashable cell (a list where text belongs): judge cell by cell
        return values.map(lambda v: int(isinstance(v, Hashable) and v in members)).astype("int64")


def _col(rows: list[dict[str, Any]], key: str) -> set[Any]:
    values = (r.get(key) for r in rows)
    return {v for v in values if type(v) is str or (v is not None and isinstance(v, Hashable))}


def _field_checks(df: pd.DataFrame, rows: list[dict[str, Any]], kind: str) -> None:
    """Add missing_fields and mistyped_fields: per row, the names of its required fields that are null
    (or absent), and of its fields whose value has the wrong type; null when there are none. One
    expectation each replaces one per column: GE's cost is per expectation, and a failure names the
    fields itself ("answer, group")."""
    required, typed = REQUIRED[kind], TYPED[kind]
    df["missing_fields"] = pd.Series(
        [", ".join(c for c in required if r.get(c) is None) or None for r in rows],
        index=df.index,
        dtype=object,
    )
    df["mistyped_fields"] = pd.Series(
        [", ".join(c for c, t in typed.items() if not _typed(r.get(c), t)) or None for r in rows],
        index=df.index,
        dtype=object,
    )


def _typed(value: Any, kind: type) -> bool:
    if value is None:
        return True  # a null is missing_fields' business
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _processed_frame(
    name: str, tables: dict[str, list[dict[str, Any]]], overlaps: dict[str, dict[str, list[str | None]]]
) -> pd.DataFrame:
    df = _frame(tables[name], PROCESSED_COLUMNS)
    _field_checks(df, tables[name], "processed")
    df["has_think"] = (
        _column(df, "think").map(lambda t: int(isinstance(t, str) and bool(t.strip()))).astype("int64")
    )
    df["categories_known"] = _categories_known(df)
    held_out = tables["test"] + tables["gold_set"]
    ids, groups = _column(df, "id"), _column(df, "group")
    if name in ("train", "dev"):
        df["id_in_test"] = _flag(ids, _col(held_out, "id"))
        df["group_in_test"] = _flag(groups, _col(held_out, "group"))
    if name == "train":
        df["id_in_dev"] = _flag(ids, _col(tables["dev"], "id"))
        df["group_in_dev"] = _flag(groups, _col(tables["dev"], "group"))
    rl_sources = tables["red_team"] + tables["gold_set"]  # with train, what the RL prompts are drawn from
    if name in ("red_team", "red_team_eval"):
        others = [r for t in PROCESSED_TABLES if t != name for r in tables[t]]
        df["id_in_splits"] = _flag(ids, _col(others, "id"))
    if name == "red_team":  # its near duplicates from training sources wait in dev, never in train
        df["group_in_train"] = _flag(groups, _col(tables["train"], "group"))
    if name == "red_team_eval":
        df["group_in_train"] = _flag(groups, _col(tables["train"] + tables["dev"], "group"))
    if name in ("test", "red_team_eval"):
        df["group_in_rl"] = _flag(groups, _col(rl_sources, "group"))
    _add_overlaps(df, overlaps.get(name))
    return df


def _add_overlaps(df: pd.DataFrame, overlaps: dict[str, list[str | None]] | None) -> None:
    for column, values in (overlaps or {}).items():
        df[column] = pd.Series(values, index=df.index, dtype=object)


def eval_overlaps(
    tables: dict[str, list[dict[str, Any]]], near_dup_threshold: float
) -> dict[str, dict[str, list[str | None]]]:
    """For each evaluation table and overlap column, per row: null, or what it overlaps - an RL prompt or a
    train row with its id ("srt-zh-001: same id as RL prompt srt-zh-001") or a near-duplicate question
    ("t-9 ~ train row r-3 (question Jaccard 0.93)"); an id match is named first."""
    queries = [(name, i, row) for name in EVAL_TABLES for i, row in enumerate(tables.get(name, []))]
    refs = [(column, r) for column, (table, _) in OVERLAP_COLUMNS.items() for r in tables[table]]
    pairs = cross_pairs(
        [prompt_text(row.get("question")) for *_, row in queries],
        [prompt_text(r.get("question")) for _, r in refs],
        near_dup_threshold,
    )
    closest: dict[tuple[int, str], tuple[Any, float]] = {}
    for q, k, jac in pairs:
        column, ref = refs[k]
        if jac > closest.get((q, column), (None, -1.0))[1]:
            closest[(q, column)] = (ref.get("id"), jac)
    ids = {column: _col(tables[table], "id") for column, (table, _) in OVERLAP_COLUMNS.items()}
    out = {
        name: {column: [None] * len(tables.get(name, [])) for column in OVERLAP_COLUMNS}
        for name in EVAL_TABLES
    }
    for q, (name, i, row) in enumerate(queries):
        rid = row.get("id")
        for column, (_, kind) in OVERLAP_COLUMNS.items():
            if isinstance(rid, Hashable) and rid in ids[column]:
                out[name][column][i] = f"{rid}: same id as {kind} {rid}"
            elif (q, column) in closest:
                other, jac = closest[(q, column)]
                out[name][column][i] = f"{rid} ~ {kind} {other} (question Jaccard {jac:.2f})"
    return out


def _categories_known(df: pd.DataFrame) -> pd.Series:
    # a question's label may name harmful intent besides the five answer-side safety categories
    known = _column(df, "safety_categories").map(
        lambda c: isinstance(c, list) and all(x in RISK_CATEGORIES for x in c)
    )
    return known.astype(bool)


def _rl_frame(tables: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    rows = tables["rl_prompts"]
    df = _frame(rows, RL_COLUMNS)
    _field_checks(df, rows, "rl_prompts")
    df["is_critical_high"] = (
        _column(df, "risk_level").map(lambda r: int(r in HIGH_RISK_LEVELS)).astype("int64")
    )
    df["categories_known"] = _categories_known(df)
    # only safety red-team rows carry these; GE's column-map expectations skip the nulls elsewhere
    safety_ids = [r.get("id") if r.get("origin") == "safety_red_team" else None for r in rows]
    copies = Counter(i for i in safety_ids if i is not None)
    df["safety_id"] = pd.Series(safety_ids, dtype=object)
    df["safety_copies"] = pd.Series(
        [float(copies[i]) if i is not None else None for i in safety_ids], dtype="float64"
    )
    return df


def _over_refusal_frame(
    tables: dict[str, list[dict[str, Any]]], overlaps: dict[str, dict[str, list[str | None]]]
) -> pd.DataFrame:
    rows = tables.get("over_refusal", [])
    df = _frame(rows, OVER_REFUSAL_COLUMNS)
    _field_checks(df, rows, "over_refusal")
    _add_overlaps(df, overlaps["over_refusal"])
    return df


def build_frames(
    tables: dict[str, list[dict[str, Any]]], near_dup_threshold: float = 0.9
) -> dict[str, pd.DataFrame]:
    """One DataFrame per gated table, with the derived columns the suites expect; near duplicates are
    questions at or above `near_dup_threshold` (the profile's data.near_dup_threshold)."""
    overlaps = eval_overlaps(tables, near_dup_threshold)
    frames = {name: _processed_frame(name, tables, overlaps) for name in PROCESSED_TABLES}
    return frames | {"rl_prompts": _rl_frame(tables), "over_refusal": _over_refusal_frame(tables, overlaps)}


def expected_safety_prompts(tables: dict[str, list[dict[str, Any]]]) -> int:
    """How many distinct safety red-team prompts the RL set must contain (those in red_team.jsonl)."""
    return len({r["id"] for r in tables["red_team"] if r.get("source") == SAFETY_RED_TEAM_SOURCE})
