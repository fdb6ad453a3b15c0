"""The one JSONL reader/writer, atomic file writes, and content hashing."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import xxhash

_BOM = b"\xef\xbb\xbf"


class JsonlLineError(ValueError):
    """A line of a JSONL file that is not a JSON object."""

    def __init__(self, path: Path, line_no: int, raw: str, reason: str) -> None:
        super().__init__(f"{path}:{line_no}: {reason}")
        self.path, self.line_no, self.raw, self.reason = path, line_no, raw, reason


def _blank(line: bytes) -> bool:
    """A line holding only whitespace (Unicode whitespace too, as str.strip() sees it)."""
    s = line.strip()
    return not s or (s[:1] != b"{" and not s.decode("utf-8", errors="surrogateescape").strip())


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each non-blank line; a UTF-8 byte-order mark is not data."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if line_no == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if not _blank(raw):
                yield line_no, raw


def count_jsonl_lines(path: str | Path) -> int:
    """How many records iter_jsonl will yield (valid or not), without parsing them."""
    return sum(1 for _ in _lines(Path(path)))


def iter_jsonl(
    path: str | Path, *, strict: bool = True
) -> Iterator[tuple[int, dict[str, Any] | JsonlLineError]]:
    """Yield (line number, object) for each non-blank line.

    strict=True raises on the first bad line; strict=False yields the JsonlLineError instead so
    the caller can quarantine it and go on. orjson parses (an integer beyond 64 bits arrives as a
    float); a line it refuses (not UTF-8, NaN, broken JSON) goes through the standard library, which
    accepts what it can (bytes that are not UTF-8 survive as surrogate escapes) and words the error.
    """
    path = Path(path)
    for line_no, raw in _lines(path):
        obj = parse_jsonl_line(path, line_no, raw)
        if strict and isinstance(obj, JsonlLineError):
            raise obj
        yield line_no, obj


def jsonl_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of every record iter_jsonl would yield, unparsed: for a reader that
    parses only some of them (parse_jsonl_line)."""
    return _lines(Path(path))


def parse_jsonl_line(path: Path, line_no: int, raw: bytes) -> dict[str, Any] | JsonlLineError:
    """One record of a JSONL file: the object, or the error iter_jsonl reports for it."""
    text = None
    try:
        obj, reason = orjson.loads(raw), None
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", errors="surrogateescape")
        obj, reason = _stdlib_loads(text)
    if reason is None and not isinstance(obj, dict):
        reason = f"expected a JSON object, got {type(obj).__name__}"
    if reason is None:
        return obj
    text = text if text is not None else raw.decode("utf-8", errors="surrogateescape")
    return JsonlLineError(path, line_no, text.rstrip("\r\n"), reason)


def _stdlib_loads(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at column {exc.colno})"


def read_jsonl(path: str | Path, *, keep: bool = False) -> list[dict[str, Any]]:
    """Read a JSONL file whose every line must be a JSON object.

    keep=True: the parsed rows stay in this process for the next keep=True reader of the same,
    unchanged file (same inode, size and modification time), which gets fresh copies of the row dicts
    (nested lists are shared: treat them as read-only). The data flow's last stages read the same
    split files in turn; see forget_kept.
    """
    path = Path(path)
    key = _identity(path) if keep else None
    if key is None:
        return [obj for _, obj in iter_jsonl(path, strict=True)]  # type: ignore[misc]
    with _LOCK:
        rows = _KEPT.get(key)
        if rows is not None:
            _KEPT.move_to_end(key)
    if rows is None:
        rows = [obj for _, obj in iter_jsonl(path, strict=True)]  # type: ignore[misc]
        _keep(key, rows)
    return [dict(row) for row in rows]


def _keep(key: tuple, rows: list[dict[str, Any]]) -> None:
    """Hold `rows` as the parsed content of the file `key` names, the least recently used going first."""
    with _LOCK:
        _forget_path(_KEPT, key[0])
        while _KEPT and sum(k[-1] for k in _KEPT) + key[-1] > KEEP_BYTES:
            _KEPT.popitem(last=False)
        if key[-1] <= KEEP_BYTES:
            _KEPT[key] = rows


def _json_native(value: Any) -> bool:
    """Whether `value` reads back from its JSON as itself: dicts with text keys, lists, text, 64-bit
    integers, finite floats, booleans, null (not tuples, which read back as lists; not NaN, which orjson
    writes as null)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -(2**63) <= value < 2**64
    if kind is float:
        return value - value == 0.0  # neither inf nor NaN
    if kind is list:
        return all(map(_json_native, value))
    if kind is dict:
        return all(type(k) is str for k in value) and all(map(_json_native, value.values()))
    return False


KEEP_BYTES = 192 * 2**20  # files kept parsed at once, by size on disk (their rows take 2-3x that in memory)
REMEMBER_MIN_BYTES = 1 << 20  # smaller files are read and hashed afresh: cheap, and rewritten fastest
_KEPT: OrderedDict[tuple, list[dict[str, Any]]] = OrderedDict()
_HASHES: dict[tuple, str] = {}
_LOCK = threading.Lock()


def _forget_path(memo: dict, resolved: str) -> None:
    """Drop what is remembered about earlier versions of a file."""
    for k in [k for k in memo if k[0] == resolved]:
        del memo[k]


def _identity(path: Path) -> tuple | None:
    """What tells an unchanged file from a rewritten one (an atomic rewrite gets a new inode); None for a
    small file, whose rewrites (three of the same size within one clock tick could reuse an inode and
    a timestamp) are too cheap to remember anything about."""
    st = path.stat()
    if st.st_size < REMEMBER_MIN_BYTES:
        return None
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def forget_kept() -> None:
    """Drop the rows read_jsonl(keep=True) holds (and the remembered file hashes)."""
    with _LOCK:
        _KEPT.clear()
        _HASHES.clear()


def dumps_line(row: dict[str, Any]) -> bytes:
    """One compact JSONL line (UTF-8, not ASCII-escaped); the standard library takes what orjson refuses
    (surrogate escapes of bytes that were not UTF-8, integer keys, huge integers)."""
    try:
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
        return text.encode("utf-8", errors="surrogateescape")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], *, keep: bool = False) -> int:
    """Write rows atomically (temp file + rename) so a crash never leaves half a file. Returns the count.

    keep=True: the next read_jsonl(keep=True) of the file gets copies of these rows instead of parsing it
    again (the data flow's stages each read what the one before wrote) - when every row reads back from
    its JSON as itself (_json_native) and the file is at least REMEMBER_MIN_BYTES and at most KEEP_BYTES.
    The rows must not change after they are written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    kept: list[dict[str, Any]] | None = [] if keep else None
    with atomic_open(path, binary=True) as fh:
        for row in rows:
            try:
                line = orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
            except (orjson.JSONEncodeError, TypeError):  # what orjson refuses may not read back as itself
                line, kept = dumps_line(row), None
            fh.write(line)
            n += 1
            if kept is not None:
                kept = kept if type(row) is dict and _json_native(row) else None
                if kept is not None:
                    kept.append(dict(row))
    if kept is not None and (key := _identity(path)) is not None:
        _keep(key, kept)
    return n


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2, sort_keys=False)
        fh.write("\n")


def write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        fh.write(text)


def _process_umask() -> int:
    """The umask this process started with (read once: setting it is the only way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_process_umask()


class atomic_open:  # noqa: N801 - used like open()
    """Context manager: write to a temp file beside `path`, then rename over it on success.

    mkstemp creates the temp file 0600; it gets the mode open() would have given (0666 less the umask).
    """

    def __init__(self, path: Path, binary: bool = False) -> None:
        self.path, self.binary = path, binary

    def __enter__(self):
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.fchmod(fd, _FILE_MODE)
        self.fh = (
            os.fdopen(fd, "wb")
            if self.binary
            else os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape")
        )
        return self.fh

    def __exit__(self, exc_type, exc, tb) -> None:
        self.fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def text_hash(*parts: str, length: int = 16) -> str:
    """Stable short hash of text parts (used for row ids and cache keys)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode("utf-8", errors="surrogateescape"))
        h.update(b"\x1f")
    return h.hexdigest()[:length]


def file_hash(path: str | Path) -> str:
    """Content hash (XXH3-128: a fingerprint for cache keys and reports, not a security digest; 4x SHA-256's
    speed here) of a file, or of every file below a directory (names included); a file's hash is
    remembered while it stays unchanged (same inode, size and modification time)."""
    path = Path(path)
    if path.is_file():
        key = _identity(path)
        if key is None:
            return _content_hash([path], None)
        with _LOCK:
            known = _HASHES.get(key)
        if known is None:
            known = _content_hash([path], None)
            with _LOCK:
                _forget_path(_HASHES, key[0])
                _HASHES[key] = known
        return known
    return _content_hash(sorted(p for p in path.rglob("*") if p.is_file()), path)


def _content_hash(files: list[Path], root: Path | None) -> str:
    h = xxhash.xxh3_128()
    for f in files:
        if root is not None:
            h.update(str(f.relative_to(root)).encode())
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()
