"""Reading raw files back: local files (.json array or JSON Lines, .jsonl, .csv, .parquet) record by record,
and the upstream schemas a file's columns are recognised by.

A bad record is yielded with the reason it cannot be read, never raised: cleanup quarantines it.
A file that is not a table at all raises SourceFormatError naming the file and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.errors import MedsafeError
from tasks.core.io import count_jsonl_lines, iter_jsonl

LOCAL_FORMATS = (".json", ".jsonl", ".csv", ".parquet")
_SNIFF_ROWS = 1000  # rows whose keys decide a file's schema


@dataclass(frozen=True)
class Schema:
    """One upstream layout: which columns hold question, think and answer; `required` (+ one of `any_of`)
    identify it.
    """

    name: str
    question: str
    answer: str
    think: str | None
    required: frozenset[str]
    any_of: frozenset[str] = frozenset()
    red_team: bool = False  # rows are adversarial prompts: a question is enough

    def matches(self, columns: set[str]) -> bool:
        return self.required <= columns and (not self.any_of or bool(self.any_of & columns))

    def describe(self) -> str:
        return f"{self.name} ({', '.join(sorted(self.required | self.any_of))})"


# Order matters: the first schema whose columns are present wins.
SCHEMAS: tuple[Schema, ...] = (
    Schema("medical-o1", "Question", "Response", "Complex_CoT", frozenset({"Question", "Response"})),
    Schema(
        "medsafetybench",
        "harmful_medical_request",
        "safe_response",
        None,
        frozenset({"harmful_medical_request"}),
        red_team=True,
    ),
    Schema(
        "delicate-medical-r1",
        "question",
        "answer",
        "think",
        frozenset({"question", "answer", "think"}),
        frozenset({"metrics", "instruction"}),
    ),
    Schema("processed", "question", "answer", "think", frozenset({"question", "answer"})),
    Schema("alpaca", "input", "output", None, frozenset({"instruction", "input", "output"})),
)
SCHEMA_BY_NAME: dict[str, Schema] = {s.name: s for s in SCHEMAS}


class SourceFormatError(MedsafeError):
    """A file that is not a table of rows, or whose columns match no known schema."""


def detect_format(path: Path) -> str:
    """The reading format: .json holding JSON Lines (a common mislabel) reads as jsonl."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt != "json":
        return fmt
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape") as fh:
        first = next((line for line in fh if line.strip()), "")
        if first.lstrip().startswith("["):
            return "json"
    try:
        return "jsonl" if isinstance(json.loads(first), dict) else "json"
    except json.JSONDecodeError:
        return "json"


def _load_json_array(path: Path) -> list[Any]:
    try:
        with path.open("r", encoding="utf-8-sig", errors="surrogateescape") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise SourceFormatError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}); a .json source must hold one "
            "JSON array of objects - fix the file, or save one "
            "object per line as .jsonl so bad lines are quarantined"
        ) from None
    if not isinstance(data, list):
        raise SourceFormatError(
            f"{path}: expected a JSON array of objects, found a JSON {type(data).__name__}"
        )
    return data


def iter_file_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | None, str, str]]:
    """Yield (line or index, row or None, reason, raw text) for every record; reason is '' for a readable
    object."""
    if fmt == "jsonl":
        for line_no, item in iter_jsonl(path, strict=False):
            if isinstance(item, dict):
                yield line_no, item, "", ""
            else:
                yield (
                    line_no,
                    None,
                    "invalid_json" if item.reason.startswith("invalid") else "not_an_object",
                    item.raw,
                )
    elif fmt == "json":
        for i, item in enumerate(_load_json_array(path), start=1):
            yield (
                (i, item, "", "")
                if isinstance(item, dict)
                else (i, None, "not_an_object", json.dumps(item, ensure_ascii=False))
            )
    elif fmt == "csv":
        yield from _iter_csv(path)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=2048)
            index = 0
            for batch in batches:
                for row in batch.to_pylist():
                    index += 1
                    yield index, row, "", ""
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise SourceFormatError(f"{path}: unreadable parquet ({exc}); re-export the file") from None
    else:
        raise SourceFormatError(f"{path}: unsupported format {fmt!r}; use one of {', '.join(LOCAL_FORMATS)}")


def _iter_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str, str]]:
    csv.field_size_limit(2**31 - 1)  # multi-megabyte cells are rows to judge, not reasons to crash
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise SourceFormatError(f"{path}: empty CSV; the first line must name the columns")
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                yield line, None, "wrong_field_count", ",".join(fields)
            else:
                yield line, dict(zip(header, fields, strict=True)), "", ""


def inspect_file(path: Path) -> tuple[str, int, list[str]]:
    """(format, record count, columns seen in the first rows) of a local file; raises SourceFormatError."""
    fmt = detect_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001
            raise SourceFormatError(f"{path}: unreadable parquet ({exc}); re-export the file") from None
        return fmt, meta.metadata.num_rows, list(meta.schema_arrow.names)
    rows, columns = 0, {}
    for _, row, _, _ in iter_file_rows(path, fmt):
        rows += 1
        if row is not None:
            columns.update(dict.fromkeys(row))
        if rows == _SNIFF_ROWS and fmt == "jsonl":  # the rest only needs counting, not parsing
            rows = count_jsonl_lines(path)
            break
    return fmt, rows, list(columns)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def copy_file(src: Path, dest: Path) -> None:
    """Copy src over dest atomically (nothing to do when they are the same file)."""
    if src.resolve() == dest.resolve():
        return
    tmp = dest.with_name(f".{dest.name}.tmp")
    with src.open("rb") as fin, tmp.open("wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            fout.write(chunk)
    os.replace(tmp, dest)


def read_manifest(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["sources"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceFormatError(
            f"{path}: not a raw-data manifest ({exc}); re-run the download stage"
        ) from None


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record of a raw file: the row as read, or why it could not be read (then `raw` holds the text)."""

    source: str
    schema: str
    source_line: int
    row: dict[str, Any] | None
    error: str = ""
    raw: str = ""


def iter_raw_records(manifest_path: Path, max_rows_per_source: int | None = None) -> Iterator[RawRecord]:
    """Every record of every source in the manifest, in order; a bad row is yielded, never raised."""
    for entry in read_manifest(manifest_path):
        path = manifest_path.parent / entry["file"]
        for n, (line, row, reason, raw) in enumerate(iter_file_rows(path, entry["format"]), start=1):
            if max_rows_per_source is not None and n > max_rows_per_source:
                break
            yield RawRecord(entry["name"], entry["schema"], line, row, reason, raw)
