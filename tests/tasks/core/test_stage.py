"""The stage cache key: inputs (files by content), configuration by value, code by import closure."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow, task

from tasks.core import stage as caching
from tasks.core.config import DataConfig
from tasks.core.stage import STAGE_CACHE, code_hash, inputs_key, stage
from tasks.core.workdir import Workdir


def test_a_file_counts_by_content_not_by_timestamp(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text("a: 1\n")
    first = inputs_key({"rules": f})
    f.write_text("a: 1\n")  # rewritten, same content
    assert inputs_key({"rules": f}) == first
    f.write_text("a: 2\n")
    assert inputs_key({"rules": f}) != first


def test_configs_count_by_value_and_workdirs_by_root(tmp_path):
    assert inputs_key({"cfg": DataConfig(seed=1)}) == inputs_key({"cfg": DataConfig(seed=1)})
    assert inputs_key({"cfg": DataConfig(seed=1)}) != inputs_key({"cfg": DataConfig(seed=2)})
    a, b = Workdir(tmp_path / "a"), Workdir(tmp_path / "b")
    assert inputs_key({"wd": a}) == inputs_key({"wd": Workdir(tmp_path / "a")}) != inputs_key({"wd": b})


def test_objects_without_a_value_never_leak_an_address():
    assert inputs_key({"fn": lambda x: x}) == inputs_key({"fn": lambda y: y})


def test_code_closure_reaches_lazily_imported_trainers():
    seen, todo = set(), ["tasks.train.rl"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(caching._project_imports(caching._module_file(name)))
    assert {
        "tasks.train.ppo",
        "tasks.train.ppo_core",
        "tasks.train.grpo",
        "tasks.reward.engine",
        "tasks.core.config",
    } <= seen
    assert code_hash("tasks.train.rl") != code_hash("tasks.prepare.split")


@task(cache_policy=STAGE_CACHE, persist_result=True)
def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


@flow
def _twice(path: Path) -> list:
    return [_count_lines(path, return_state=True) for _ in range(2)]


@pytest.mark.slow
def test_a_stage_is_cached_until_its_input_file_changes(tmp_path, prefect_server):
    f = tmp_path / "rows.jsonl"
    f.write_text("1\n2\n")
    first, second = _twice(f)
    assert second.is_completed() and second.name == "Cached" and second.result() == 2
    f.write_text("1\n2\n3\n")
    changed, _ = _twice(f)
    assert changed.name != "Cached" and changed.result() == 3


@stage
def _write_output(wd: Workdir, text: str, calls: str) -> dict:
    with open(calls, "a") as f:  # a str, not a Path: a Path would count by its (changing) content
        f.write("run\n")
    out = wd.root / "out" / "result.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return {"output": str(out), "note": "/not/under/the/workdir"}


@flow
def _write_flow(root: str, calls: str) -> dict:
    return _write_output(Workdir.at(root), "hello", calls)


@pytest.mark.slow
def test_a_cache_hit_whose_outputs_were_deleted_runs_again(tmp_path, prefect_server):
    root, calls = tmp_path / "run", tmp_path / "calls.txt"
    first = _write_flow(str(root), str(calls))
    assert _write_flow(str(root), str(calls)) == first
    assert calls.read_text().count("run") == 1  # the second call was a cache hit
    Path(first["output"]).unlink()  # e.g. `rm -rf runs/demo` between two runs
    again = _write_flow(str(root), str(calls))
    assert calls.read_text().count("run") == 2
    assert Path(again["output"]).read_text() == "hello"
