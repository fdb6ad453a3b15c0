"""The cache policy every stage uses: its inputs (files by content) and its code.

Files passed as `Path` parameters are hashed by content, so editing an input file invalidates the
stage while touching its timestamp does not; a `Workdir` counts by its root path only (two workdirs
never share results); pydantic configs count by value. Code means the task's module and every project
module it imports, transitively (lazy imports inside functions included): editing tasks/ppo.py retrains
even though rl_task's own lines did not change. Nothing time-dependent enters a key.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import hashlib
import json
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.cache_policies import CachePolicy
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger

from tasks.core.io import file_hash
from tasks.core.workdir import Workdir


def _canonical(value: Any) -> Any:

    if isinstance(value, Workdir):
        return {"workdir": str(value.root)}
    if isinstance(value, Path):
        return {"path": str(value), "content": file_hash(value) if value.exists() else None}
    if hasattr(value, "model_dump"):
        return _canonical(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_canonical(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    # Anything else must not leak a memory address into the key, or no run would ever hit the cache.
    return {"type": f"{type(value).__module__}.{type(value).__qualname__}"}


def inputs_key(inputs: dict[str, Any]) -> str:
    blob = json.dumps(_canonical(inputs), sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


@dataclasses.dataclass
class FileAwareInputs(CachePolicy):
    """Like Prefect's INPUTS, but a Path counts by its content."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:  # noqa: ANN001
        return inputs_key(inputs or {})


PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("tasks", "validation", "flows")


def _module_file(name: str) -> Path | None:
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _project_imports(path: Path) -> frozenset[str]:
    """Project modules imported anywhere in a file (`from tasks import x` counts tasks.x when it is a module);
    each file is parsed once per process, however many stages' closures reach it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return frozenset(n for n in names if n.split(".")[0] in PROJECT_PACKAGES and _module_file(n))


@cache
def code_hash(module: str) -> str:
    """Hash of a module's source and of every project module it reaches through imports."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen and _module_file(name):
            seen.add(name)
            todo.extend(_project_imports(_module_file(name)))
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(seen):
        h.update(name.encode())
        h.update(_module_file(name).read_bytes())
    return h.hexdigest()


@dataclasses.dataclass
class StageCode(CachePolicy):
    """The code a task runs: its module's import closure within the project."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:  # noqa: ANN001
        return code_hash(task_ctx.task.fn.__module__)


STAGE_CACHE = FileAwareInputs() + StageCode()


def _missing_outputs(result: Any, roots: list[Path]) -> list[str]:
    """Paths under a run's workdir that a stage's result names but that are no longer on disk."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, (str, Path)) and len(str(value)) < 4096:
            path = Path(value)
            if path.is_absolute() and any(path.is_relative_to(r) for r in roots) and not path.exists():
                found.append(str(path))

    walk(result)
    return found


class Stage(Task):
    """A cached pipeline stage that never hands back outputs which are gone.

    The cache key says *what* a stage computed, not whether its files are still there: after
    `rm -rf runs/demo` a cache hit would return paths to nothing and the next stage would fail. When a
    result names files under the run's workdir that no longer exist, the stage runs again.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:

        result = super().__call__(*args, **kwargs)
        roots = [v.root for v in (*args, *kwargs.values()) if isinstance(v, Workdir)]
        if roots and kwargs.get("return_state") is None and (missing := _missing_outputs(result, roots)):
            get_run_logger().warning(
                "%s: the cached result names %d missing output(s) (%s); running it again",
                self.name,
                len(missing),
                missing[0],
            )
            result = self.with_options(refresh_cache=True)(*args, **kwargs)
        return result


def stage(fn: Any) -> Stage:
    """Decorator for a pipeline stage: a Prefect task cached on its inputs and code (STAGE_CACHE)."""
    return Stage(fn=fn, cache_policy=STAGE_CACHE, persist_result=True)


def read_secret_block(name: str) -> str | None:
    """A Prefect Secret block's value, tried only inside a Prefect run or against a configured server; None
    when there is no such block (or no server). Stages hand this to the teacher and the judge as their key
    lookup."""
    if not (os.environ.get("PREFECT_API_URL") or FlowRunContext.get() or TaskRunContext.get()):
        return None
    try:
        from prefect.blocks.system import Secret

        block = Secret.load(name)
        if asyncio.iscoroutine(block):  # called from a running event loop: not available synchronously
            block.close()
            return None
        return str(block.get()) or None
    except Exception as exc:  # noqa: BLE001 - a missing block or server just means "no key"
        logging.getLogger(__name__).debug("no Prefect Secret block %r (%s)", name, type(exc).__name__)
        return None
