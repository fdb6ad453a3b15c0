"""The one JSONL reader/writer: orjson for speed, the standard library for what orjson refuses."""

from __future__ import annotations

import json

import pytest

from tasks.io import JsonlLineError, count_jsonl_lines, iter_jsonl, read_jsonl, write_jsonl


def test_reader_keeps_line_numbers_skips_blanks_and_the_bom(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n   \n\xe3\x80\x80\n{"b": "\xe4\xb8\xad"}\r\n')  # U+3000 line is blank
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
    rows = [{"q": "胸痛怎么办？", "n": 1.5, "tags": ["a"], "none": None}, {"raw": "bad \udcff byte"}, {1: "int key"}]
    path = tmp_path / "out.jsonl"
    assert write_jsonl(path, rows) == 3
    lines = path.read_bytes().splitlines()
    assert lines[0] == json.dumps(rows[0], ensure_ascii=False, separators=(",", ":")).encode()
    back = read_jsonl(path)
    assert back[:2] == rows[:2] and back[2] == {"1": "int key"}
