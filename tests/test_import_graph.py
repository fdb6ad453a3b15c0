"""The house rule, checked on the real tree: imports point down only (see tests/support/import_graph.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.import_graph import ImportGraph, violations

ROOT = Path(__file__).resolve().parents[1]
SCORE_PATH = ("flows.cli", "flows.recipes", "tasks.core.workdir", "tasks.reward.score")


def test_the_project_imports_point_down_only() -> None:
    problems = violations(ROOT, score_entries=SCORE_PATH)
    assert not problems, "\n".join(problems)


def test_the_score_path_is_checked_for_real() -> None:
    graph = ImportGraph(ROOT)
    assert {"tasks.reward.score", "tasks.reward.engine", "flows.cli"} <= set(graph.modules)
    reached = {edge.imported for edge in graph.edges(lazy=False)["tasks.reward.score"]}
    assert "tasks.reward.engine" in reached


def write_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for package in ("flows", "tasks", "validation"):
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()


CLEAN = {
    "tasks/core/__init__.py": "",
    "tasks/core/io.py": "import json\n",
    "tasks/reward/__init__.py": "",
    "tasks/reward/score.py": "from tasks.core.io import json\n\ndef heavy():\n    import torch\n",
    "tasks/prepare/__init__.py": "",
    "tasks/prepare/split.py": (
        "from prefect import task\nfrom tasks.core import io\n\n@task\ndef split_task():\n    return io\n"
    ),
    "flows/cli.py": "import prefect\nfrom tasks.prepare.split import split_task\n",
}


def test_a_clean_synthetic_tree_passes(tmp_path: Path) -> None:
    write_package(tmp_path, CLEAN)
    assert violations(tmp_path) == []


def test_a_cycle_is_named_with_its_imports(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            **CLEAN,
            "tasks/core/a.py": "from tasks.core import b\n",
            "tasks/core/b.py": "def f():\n    import tasks.core.a\n",
        },
    )
    (problem,) = violations(tmp_path)
    assert problem.startswith("import cycle:")
    assert "tasks.core.a imports tasks.core.b" in problem and "tasks.core.b imports tasks.core.a" in problem
    assert "b.py:2" in problem


def test_tasks_importing_flows_is_named(tmp_path: Path) -> None:
    write_package(tmp_path, {**CLEAN, "validation/gate.py": "from flows.cli import app\n"})
    (problem,) = violations(tmp_path)
    assert "imports point down only" in problem and "validation.gate imports flows.cli" in problem


def test_prefect_outside_a_stage_module_is_named(tmp_path: Path) -> None:
    write_package(tmp_path, {**CLEAN, "tasks/reward/engine.py": "from prefect import get_run_logger\n"})
    (problem,) = violations(tmp_path)
    assert problem.startswith("Prefect outside a stage module") and "tasks.reward.engine" in problem


def test_torch_on_the_score_path_is_named_with_its_chain(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            **CLEAN,
            "tasks/reward/score.py": "from tasks.reward import engine\n",
            "tasks/reward/engine.py": "import torch.nn\n",
        },
    )
    (problem,) = violations(tmp_path)
    assert problem.startswith("torch on `medsafe score`'s path")
    assert "tasks.reward.score imports tasks.reward.engine" in problem and "engine.py:1" in problem


def test_imports_for_type_checking_only_do_not_count(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            **CLEAN,
            "tasks/reward/score.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n    import "
                "flows.cli\n"
            ),
        },
    )
    assert violations(tmp_path) == []
