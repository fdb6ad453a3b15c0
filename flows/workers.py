"""The data flow's worker processes (tasks/core/workers.py): what they import as they start, and what
they compile while they wait. `medsafe data` starts them with its temporary server, before it imports the
flow, so they are ready when cleanup begins; a flow run elsewhere starts them itself."""

from __future__ import annotations

DATA_WORKER_MODULES = ("tasks.prepare.clean_record", "tasks.risk.parallel_label")
DATA_WORKER_WARMUP = ("tasks.risk.parallel_label:warm_default",)  # the shipped lexicon, compiled
