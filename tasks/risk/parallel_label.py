"""Label many rows with this process and worker processes together, with the same result as one.

The rows are cut into chunks of CHUNK_ROWS and shared out by tasks/workers.py. They are not shipped
to the workers: a worker reads the chunks it labels from the JSONL file the rows came from (or gets the
rows once, when they exist only in memory), and sends back only the labels, their evidence trimmed to
high and critical.

Free of Prefect, so a worker starts in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.io import JsonlLineError, count_jsonl_lines, jsonl_lines, parse_jsonl_line
from tasks.core.workers import ForwardChunks, run_chunks
from tasks.risk.classifier import RiskClassifier, RiskLabel, label_row, trim
from tasks.risk.lexicon import Lexicon

PARALLEL_MIN_ROWS = 20_000  # below this, a worker reading the file costs more than it saves
CHUNK_ROWS = 1_000  # about a tenth of a second of labelling: small enough to balance, large enough to claim

Labels = list[RiskLabel | None]


def label_rows(rows: list[dict[str, Any]], classifier: RiskClassifier) -> Labels:
    """Labels of rows in this process (None: a curated row), evidence trimmed to high and critical."""
    return [trim(label_row(row, classifier, weak_evidence=False)) for row in rows]


@dataclass
class LabelJob:
    """Label chunk i of `rows`; a worker's copy reads them from `source` (when given) instead."""

    lexicon: Lexicon
    total: int
    chunk_rows: int
    source: Path | None = None
    rows: list[dict[str, Any]] | None = None
    classifier: RiskClassifier | None = None
    stream: ForwardChunks[tuple[int, bytes]] | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:  # what a worker receives: the recipe, not the data
        return {**self.__dict__, "classifier": None, "stream": None} | (
            {"rows": None} if self.source is not None else {}
        )

    def open(self) -> None:
        """A worker's copy compiles the lexicon and reads the file's lines as its chunks come, front to
        back (only its own chunks are parsed)."""
        self.classifier = RiskClassifier(self.lexicon)
        if self.source is not None:
            if (found := count_jsonl_lines(self.source)) != self.total:  # a byte scan: nothing kept
                raise ValueError(
                    f"{self.source} has {found} records, not the {self.total} labelled: it changed meanwhile"
                )
            self.stream = ForwardChunks(
                jsonl_lines(self.source), self.total, self.chunk_rows, str(self.source)
            )

    def run(self, chunk: int) -> Labels:
        lo, hi = chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, self.total)
        if self.rows is not None:
            rows = self.rows[lo:hi]
        else:
            rows = [_parsed(self.source, n, raw) for n, raw in self.stream.chunk(chunk)]  # type: ignore[arg-type,union-attr]
        return label_rows(rows, self.classifier)  # type: ignore[arg-type]


def label_all(
    rows: list[dict[str, Any]],
    classifier: RiskClassifier,
    workers: int | None = None,
    min_rows: int = PARALLEL_MIN_ROWS,
    source: Path | None = None,
) -> Labels:
    """Every row's label; worker processes help from `min_rows` rows on. `source`: the JSONL file
    `rows` were read from (read_jsonl), which workers then read for themselves."""
    if len(rows) < min_rows or workers == 0:
        return label_rows(rows, classifier)
    size = CHUNK_ROWS
    job = LabelJob(classifier.lexicon, len(rows), size, source, rows, classifier)
    chunks = run_chunks(job, -(-len(rows) // size), workers, what="classification")
    return [label for chunk in chunks for label in chunk]


def _parsed(path: Path, line_no: int, raw: bytes) -> dict[str, Any]:
    obj = parse_jsonl_line(path, line_no, raw)
    if isinstance(obj, JsonlLineError):
        raise obj
    return obj
