"""Raw-file readers: copies, checksums, and the names download still exports."""

from __future__ import annotations

import hashlib
import json

from tasks.prepare import download
from tasks.prepare.raw_files import RawRecord, copy_file, inspect_file, iter_raw_records, sha256_of


def test_copy_file_copies_and_leaves_no_temporary_file(tmp_path):
    src, dest = tmp_path / "a.jsonl", tmp_path / "raw" / "a.jsonl"
    dest.parent.mkdir()
    src.write_bytes(b'{"Question": "q", "Response": "r"}\n' * 1000)
    copy_file(src, dest)
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.jsonl"]
    copy_file(dest, dest)  # the same file: nothing to do, nothing lost
    assert dest.read_bytes() == src.read_bytes()


def test_sha256_of_matches_hashlib(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(bytes(range(256)) * 5000)
    assert sha256_of(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_inspect_counts_every_line_beyond_the_sniffed_rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [json.dumps({"Question": f"q{i}", "Response": "r"}) for i in range(2500)]
    path.write_text("\n".join(rows[:1200] + ["", "not json"] + rows[1200:]) + "\n", encoding="utf-8")
    fmt, count, columns = inspect_file(path)
    assert (fmt, count, sorted(columns)) == ("jsonl", 2501, ["Question", "Response"])


def test_raw_records_come_back_in_order_with_their_lines(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text(
        '{"Question": "a?", "Response": "x"}\n[1]\n{"Question": "b?", "Response": "y"}\n', encoding="utf-8"
    )
    manifest = download.download_sources([str(src)], tmp_path / "raw")
    records = list(iter_raw_records(manifest))
    assert [(r.source_line, r.error) for r in records] == [(1, ""), (2, "not_an_object"), (3, "")]
    assert isinstance(records[0], RawRecord) and records[1].raw == "[1]"
