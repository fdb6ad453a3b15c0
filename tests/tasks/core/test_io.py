"""The one JSONL reader/writer: orjson for speed, the standard library for what orjson refuses."""

from __future__ import annotations

import json

import pytest

from tasks.core import io
from tasks.core.io import JsonlLineError, count_jsonl_lines, file_hash, iter_jsonl, read_jsonl, write_jsonl


def test_reader_keeps_line_numbers_skips_blanks_and_the_bom(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"a": 1}\n\n   \n\xe3\x80\x80\n{"b": "\xe4\xb8\xad"}\r\n'
    )  # U+3000 line is blank
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (5, {"b": "中"})]
    assert count_jsonl_lines(path) == 2


def test_what_orjson_refuses_is_read_as_the_standard_library_reads_it(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"x": NaN}\n{"big": 123456789012345678901234567890}\n{"bad": "\xff"}\n')
    rows = read_jsonl(path)
    assert rows[0]["x"] != rows[0]["x"]  # NaN
    assert rows[1]["big"] == pytest.approx(1.2345678901234568e29)  # orjson: beyond 64 bits, a float
    assert rows[2]["bad"] == "\udcff"  # a byte that is not UTF-8 survives as a surrogate escape


def test_bad_lines_are_named_or_yielded(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"ok": 1}\n{"broken": \n[1, 2]\n', encoding="utf-8")
    items = list(iter_jsonl(path, strict=False))
    assert [n for n, _ in items] == [1, 2, 3]
    assert isinstance(items[1][1], JsonlLineError) and items[1][1].reason.startswith("invalid JSON (")
    assert items[1][1].raw == '{"broken": '
    assert items[2][1].reason == "expected a JSON object, got list"
    with pytest.raises(JsonlLineError, match=r"rows.jsonl:2: invalid JSON"):
        read_jsonl(path)


def test_writer_round_trips_what_it_is_given(tmp_path):
    rows = [
        {"q": "胸痛怎么办？", "n": 1.5, "tags": ["a"], "none": None},
        {"raw": "bad \udcff byte"},
        {1: "int key"},
    ]
    path = tmp_path / "out.jsonl"
    assert write_jsonl(path, rows) == 3
    lines = path.read_bytes().splitlines()
    assert lines[0] == json.dumps(rows[0], ensure_ascii=False, separators=(",", ":")).encode()
    back = read_jsonl(path)
    assert back[:2] == rows[:2] and back[2] == {"1": "int key"}


# ---- rows and hashes remembered while a file stays unchanged ---------------------------------------


@pytest.fixture
def remember_small_files(monkeypatch):
    monkeypatch.setattr(io, "REMEMBER_MIN_BYTES", 1)
    yield
    io.forget_kept()


def test_kept_rows_are_reused_until_the_file_changes(tmp_path, remember_small_files, monkeypatch):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [{"id": "a", "cats": ["x"]}, {"id": "b", "cats": []}])
    first = read_jsonl(path, keep=True)
    parses = []
    monkeypatch.setattr(io, "parse_jsonl_line", lambda *a: parses.append(a) or {"parsed": "again"})
    second = read_jsonl(path, keep=True)
    assert second == first and not parses  # no parse: the kept rows
    second[0]["id"] = "changed"  # a reader's own copy of each row
    assert read_jsonl(path, keep=True)[0]["id"] == "a"
    write_jsonl(path, [{"id": "c", "cats": []}, {"id": "d", "cats": ["y"]}])  # same size, new file
    assert read_jsonl(path, keep=True) == [{"parsed": "again"}] * 2 and len(parses) == 2
    assert read_jsonl(path) == [{"parsed": "again"}] * 2  # keep=False always parses


def test_a_writer_keeps_what_reads_back_as_itself(tmp_path, remember_small_files, monkeypatch):
    """write_jsonl(keep=True): the next keep=True reader gets copies of the written rows, unparsed - only
    when every row reads back from its JSON unchanged."""
    rows = [{"id": "a", "n": 1, "p": 0.5, "ok": True, "none": None, "cats": ["x"], "ev": [{"t": "胸痛"}]}]
    path = tmp_path / "classified.jsonl"
    write_jsonl(path, rows, keep=True)
    parses = []
    monkeypatch.setattr(io, "parse_jsonl_line", lambda *a: parses.append(a) or {"parsed": "again"})
    got = read_jsonl(path, keep=True)
    assert got == rows and not parses
    got[0]["id"] = "changed"
    rows[0]["id"] = "changed too"  # the writer's rows and a reader's copy are not what is kept
    assert read_jsonl(path, keep=True)[0]["id"] == "a"
    for odd in ({"cats": ("x",)}, {"p": float("nan")}, {1: "integer key"}, {"big": 2**70}):
        odd_path = tmp_path / "odd.jsonl"
        write_jsonl(odd_path, [{"id": "a"}, odd], keep=True)  # would read back as something else
        assert read_jsonl(odd_path, keep=True) == [{"parsed": "again"}] * 2
    io.forget_kept()
    write_jsonl(path, rows)  # keep=False: nothing kept
    assert read_jsonl(path, keep=True) == [{"parsed": "again"}]


def test_small_files_and_the_default_reader_keep_nothing(tmp_path):
    path = tmp_path / "gold_set.jsonl"
    write_jsonl(path, [{"id": "a"}])
    read_jsonl(path, keep=True)
    assert not io._KEPT
    read_jsonl(path)
    assert not io._KEPT


def test_kept_rows_stay_within_their_budget(tmp_path, remember_small_files, monkeypatch):
    paths = [tmp_path / f"{n}.jsonl" for n in "abc"]
    for p in paths:
        write_jsonl(p, [{"text": "x" * 100}])
    monkeypatch.setattr(io, "KEEP_BYTES", 2 * paths[0].stat().st_size)
    for p in paths:
        read_jsonl(p, keep=True)
    assert [k[0] for k in io._KEPT] == [str(p.resolve()) for p in paths[1:]]  # the oldest read went first
    io.forget_kept()
    assert not io._KEPT


def test_a_file_hash_follows_its_content(tmp_path, remember_small_files):
    path = tmp_path / "classified.jsonl"
    write_jsonl(path, [{"id": "a"}])
    before = file_hash(path)
    assert file_hash(path) == before
    write_jsonl(path, [{"id": "b"}])  # same size, new content
    assert file_hash(path) != before
    write_jsonl(path, [{"id": "a"}])
    assert file_hash(path) == before
    assert file_hash(tmp_path) != file_hash(path)  # a folder hashes its files' names too


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    """Outputs get the mode open() would give (mkstemp alone makes every report -rw-------)."""
    import subprocess
    import sys

    script = (
        f"import os; os.umask({umask}); from pathlib import Path;"
        "from tasks.core.io import write_jsonl, write_text;"
        f"write_jsonl(Path({str(tmp_path)!r}) / 'a.jsonl', [{{'x': 1}}]);"
        f"write_text(Path({str(tmp_path)!r}) / 'b.md', 'hi')"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    for name in ("a.jsonl", "b.md"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
