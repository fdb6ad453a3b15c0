"""The cache policy every stage uses: its inputs (files by content) and its own source code.

Files passed as `Path` parameters are hashed by content, so editing an input file invalidates the
stage while touching its timestamp does not; a `Workdir` counts by its root path only (two workdirs
never share results); pydantic configs count by value. Nothing time-dependent enters a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from prefect.cache_policies import TASK_SOURCE, CachePolicy

from tasks.io import file_hash


def _canonical(value: Any) -> Any:
    from flows.config import Workdir  # local: flows imports tasks

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


STAGE_CACHE = FileAwareInputs() + TASK_SOURCE
