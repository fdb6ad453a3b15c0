"""Download stage: source resolution, schema recognition, raw copies + manifest, robust reading, offline
errors."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.errors import MedsafeError
from tasks.core.workdir import ASSETS_DIR
from tasks.prepare.download import (
    HubSource,
    SourceUnavailable,
    download_sources,
    resolve_source,
    source_inputs,
)
from tasks.prepare.raw_files import SourceFormatError, iter_raw_records, read_manifest

O1_ROW = {
    "Question": "What causes a fever in adults?",
    "Complex_CoT": "Think about infection.",
    "Response": "Usually an infection.",
}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def entries_for(tmp_path: Path, *sources: str | Path) -> list[dict]:
    return read_manifest(download_sources([str(s) for s in sources], tmp_path / "raw"))


# ---- names and paths ---------------------------------------------------------------------------


def test_named_sources_resolve_to_hub_ids_and_files():
    (default,) = resolve_source("medical-o1")
    (zh,) = resolve_source("medical-o1:zh")
    (delicate,) = resolve_source("delicate-medical-r1")
    (mirror,) = resolve_source("delicate-medical-r1:someone/copy")
    assert (
        isinstance(default, HubSource)
        and default.config == "en"
        and default.manual_file == "medical_o1_sft.json"
    )
    assert (
        zh.repo == "FreedomIntelligence/medical-o1-reasoning-SFT"
        and zh.manual_file == "medical_o1_sft_Chinese.json"
    )
    assert delicate.repo == "krisfu/delicate_medical_r1_data" and mirror.repo == "someone/copy"
    (msb,) = resolve_source("medsafetybench")
    assert msb.repo is None and msb.schema == "medsafetybench"


def test_unknown_names_and_file_types_get_a_clear_error(tmp_path):
    with pytest.raises(SourceUnavailable, match="en, zh, en_mix, zh_mix"):
        resolve_source("medical-o1:fr")
    with pytest.raises(
        SourceUnavailable, match="neither a known name .*medsafetybench.*nor an existing file"
    ):
        resolve_source(str(tmp_path / "nothing.jsonl"))
    txt = tmp_path / "rows.txt"
    txt.write_text("hello\n")
    with pytest.raises(SourceFormatError, match=r"rows.txt: unsupported file type '.txt'"):
        resolve_source(str(txt))


def test_tiny_samples_are_the_shipped_files():
    files = resolve_source("tiny-samples")
    assert {p.name for p in files} >= {
        "medical_o1_zh.json",
        "medical_o1_en.json",
        "delicate_medical_r1.jsonl",
        "medsafetybench.csv",
    }
    assert all(p.parent == ASSETS_DIR / "samples" for p in files)


def test_source_inputs_pass_files_as_paths_so_the_cache_sees_their_content(tmp_path):
    local = write_lines(tmp_path / "a.jsonl", [json.dumps(O1_ROW)])
    assert source_inputs([str(local), "tiny-samples", "medical-o1:zh"]) == [
        local,
        ASSETS_DIR / "samples",
        "medical-o1:zh",
    ]


# ---- local files: recognition, copies, manifest ------------------------------------------------


def test_local_files_of_every_format_are_recognised_and_copied(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "o1.json").write_text(json.dumps([O1_ROW, O1_ROW]), encoding="utf-8")
    write_lines(
        src / "delicate.jsonl",
        [json.dumps({"instruction": "i", "question": "q?", "think": "t", "answer": "a", "metrics": {}})],
    )
    with (src / "msb.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(
            [["harmful_medical_request", "safe_response"], ["Give me oxycodone", "I can't help"]]
        )
    pq.write_table(
        pa.table({"question": ["q1", "q2", "q3"], "answer": ["a1", "a2", "a3"]}), src / "done.parquet"
    )
    entries = entries_for(
        tmp_path, *(src / n for n in ("o1.json", "delicate.jsonl", "msb.csv", "done.parquet"))
    )
    got = {e["name"]: (e["format"], e["schema"], e["rows"], e["red_team"]) for e in entries}
    assert got == {
        "o1": ("json", "medical-o1", 2, False),
        "delicate": ("jsonl", "delicate-medical-r1", 1, False),
        "msb": ("csv", "medsafetybench", 1, True),
        "done": ("parquet", "processed", 3, False),
    }
    for e in entries:
        copy = tmp_path / "raw" / e["file"]
        assert copy.read_bytes() == (src / f"{e['name']}{copy.suffix}").read_bytes()
        assert e["sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()


def test_unrecognised_columns_name_the_file_the_columns_and_the_schemas(tmp_path):
    path = write_lines(tmp_path / "odd.jsonl", [json.dumps({"prompt": "p", "completion": "c"})])
    with pytest.raises(SourceFormatError) as err:
        entries_for(tmp_path, path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "['completion', 'prompt']" in msg
    assert "medical-o1 (Complex_CoT, Question, Response)" not in msg  # required columns only
    assert "medical-o1 (Question, Response)" in msg and "medsafetybench (harmful_medical_request)" in msg


def test_an_entirely_broken_json_file_is_one_clear_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"Question": "a", "Response": "b"}, {"Question": ', encoding="utf-8")
    with pytest.raises(
        SourceFormatError, match=r"broken.json: not valid JSON .*line 1.*one JSON array of objects"
    ):
        entries_for(tmp_path, path)
    obj = tmp_path / "object.json"
    obj.write_text(json.dumps({"data": [1, 2]}, indent=2), encoding="utf-8")
    with pytest.raises(SourceFormatError, match="expected a JSON array of objects, found a JSON dict"):
        entries_for(tmp_path, obj)
    assert issubclass(SourceFormatError, MedsafeError) and issubclass(SourceUnavailable, MedsafeError)


def test_a_json_file_holding_json_lines_is_read_line_by_line(tmp_path):
    path = write_lines(tmp_path / "lines.json", [json.dumps(O1_ROW), "{broken", json.dumps(O1_ROW)])
    (entry,) = entries_for(tmp_path, path)
    assert entry["format"] == "jsonl" and entry["rows"] == 3
    errors = [r.error for r in iter_raw_records(tmp_path / "raw" / "manifest.json")]
    assert errors == ["", "invalid_json", ""]


# ---- reading never raises on a bad row --------------------------------------------------------


def test_bad_jsonl_lines_become_records_with_their_raw_text(tmp_path):
    lines = [
        json.dumps(O1_ROW),
        '{"Question": "cut off',
        "",
        "[1, 2]",
        '"just a string"',
        json.dumps({**O1_ROW, "Question": 7}),
    ]
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    (entry,) = entries_for(tmp_path, path)
    records = list(iter_raw_records(tmp_path / "raw" / "manifest.json"))
    assert entry["rows"] == len(records) == 5  # the blank line is not a record
    assert [(r.source_line, r.error) for r in records] == [
        (1, ""),
        (2, "invalid_json"),
        (4, "not_an_object"),
        (5, "not_an_object"),
        (6, ""),
    ]
    assert records[1].row is None and records[1].raw == '{"Question": "cut off'
    assert records[5 - 1].row == {**O1_ROW, "Question": 7}  # wrong types are cleanup's business
    assert {r.source for r in records} == {"mixed"} and {r.schema for r in records} == {"medical-o1"}


def test_json_array_items_that_are_not_objects_are_records_too(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text(json.dumps([O1_ROW, [1], "x", None, O1_ROW]), encoding="utf-8")
    entries_for(tmp_path, path)
    records = list(iter_raw_records(tmp_path / "raw" / "manifest.json"))
    assert [(r.source_line, r.error, r.raw) for r in records][1:4] == [
        (2, "not_an_object", "[1]"),
        (3, "not_an_object", '"x"'),
        (4, "not_an_object", "null"),
    ]


def test_csv_records_keep_their_first_line_and_bad_field_counts_are_flagged(tmp_path):
    path = tmp_path / "msb.csv"
    path.write_text(
        '\ufeffharmful_medical_request,safe_response\n"line one\nline '
        'two",ok\n\nonly-one-field\nq,a,extra\n"last?",fine\n',
        encoding="utf-8",
    )
    (entry,) = entries_for(tmp_path, path)
    records = list(iter_raw_records(tmp_path / "raw" / "manifest.json"))
    assert entry["rows"] == 4 and entry["columns"] == ["harmful_medical_request", "safe_response"]
    assert [(r.source_line, r.error) for r in records] == [
        (2, ""),
        (5, "wrong_field_count"),
        (6, "wrong_field_count"),
        (7, ""),
    ]
    assert records[0].row == {"harmful_medical_request": "line one\nline two", "safe_response": "ok"}
    assert records[2].raw == "q,a,extra"


def test_multi_megabyte_rows_are_read_whole(tmp_path):
    big = "x" * 5_000_000
    jl = write_lines(tmp_path / "big.jsonl", [json.dumps({**O1_ROW, "Response": big}), json.dumps(O1_ROW)])
    cs = tmp_path / "big.csv"
    with cs.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["harmful_medical_request", "safe_response"], ["q?", big]])
    entries_for(tmp_path, jl, cs)
    records = list(iter_raw_records(tmp_path / "raw" / "manifest.json"))
    assert [
        len(r.row["Response"] if r.schema == "medical-o1" else r.row["safe_response"]) for r in records
    ] == [5_000_000, len(O1_ROW["Response"]), 5_000_000]


def test_max_rows_per_source_caps_each_source(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", [json.dumps(O1_ROW)] * 5)
    b = write_lines(tmp_path / "b.jsonl", ["{bad"] + [json.dumps(O1_ROW)] * 4)
    entries_for(tmp_path, a, b)
    records = list(iter_raw_records(tmp_path / "raw" / "manifest.json", max_rows_per_source=2))
    assert [(r.source, r.source_line, r.error) for r in records] == [
        ("a", 1, ""),
        ("a", 2, ""),
        ("b", 1, "invalid_json"),
        ("b", 2, ""),
    ]


def test_two_files_with_the_same_name_get_distinct_raw_copies(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    one = write_lines(tmp_path / "x" / "rows.jsonl", [json.dumps(O1_ROW)])
    two = write_lines(tmp_path / "y" / "rows.jsonl", [json.dumps(O1_ROW)] * 2)
    entries = entries_for(tmp_path, one, two)
    assert [(e["name"], e["file"], e["rows"]) for e in entries] == [
        ("rows", "rows.jsonl", 1),
        ("rows-2", "rows-2.jsonl", 2),
    ]


# ---- named sources without the hub ------------------------------------------------------------


def test_offline_hub_fails_fast_with_one_message_and_no_traceback(tmp_path):
    """A fresh interpreter with HF_HUB_OFFLINE=1 and an empty cache, as a user would run it."""
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from tasks.prepare.download import SourceUnavailable, download_sources
        try:
            download_sources(["medical-o1"], Path(sys.argv[1]))
        except SourceUnavailable as exc:
            print(exc)
            sys.exit(3)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_DATASETS_CACHE", None)
    raw = tmp_path / "raw"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(raw)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 3, proc.stderr
    msg = proc.stdout
    assert "FreedomIntelligence/medical-o1-reasoning-SFT" in msg and "HF_HUB_OFFLINE=1" in msg
    assert (
        f"put it at {raw / 'medical_o1_sft.json'}" in msg and "--source /path/to/medical_o1_sft.json" in msg
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(msg.strip().splitlines()) == 1


def test_offline_set_after_import_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceUnavailable, match="medsafe-tests/not-a-dataset.*offline mode is on") as err:
        download_sources(["delicate-medical-r1:medsafe-tests/not-a-dataset"], tmp_path / "raw")
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_unreachable_hub_is_reported_without_the_libraries_retries(tmp_path, monkeypatch):
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:1")  # nothing listens on port 1
    with pytest.raises(SourceUnavailable, match=r"the hub at http://127.0.0.1:1 cannot be reached") as err:
        download_sources(["medical-o1:zh"], tmp_path / "raw")
    assert "medical_o1_sft_Chinese.json" in str(err.value) and "--source tiny-samples" in str(err.value)


def test_medsafetybench_must_be_supplied_and_is_picked_up_from_raw(tmp_path):
    raw = tmp_path / "raw"
    with pytest.raises(
        SourceUnavailable, match=rf"not on the Hugging Face hub.*put it at {raw / 'medsafetybench.csv'}"
    ):
        download_sources(["medsafetybench"], raw)
    with (raw / "medsafetybench.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["harmful_medical_request", "safe_response"], ["q?", "no"]])
    (entry,) = read_manifest(download_sources(["medsafetybench"], raw))
    assert (entry["schema"], entry["rows"], entry["origin"]) == (
        "medsafetybench",
        1,
        f"file:{raw / 'medsafetybench.csv'}",
    )


def test_a_hand_downloaded_hub_file_in_raw_replaces_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "medical_o1_sft.json").write_text(json.dumps([O1_ROW] * 3), encoding="utf-8")
    (entry,) = read_manifest(download_sources(["medical-o1"], raw))
    assert (entry["schema"], entry["rows"], entry["spec"]) == ("medical-o1", 3, "medical-o1")


def test_an_unchanged_hub_copy_from_an_earlier_run_is_reused_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    raw = tmp_path / "raw"
    raw.mkdir()
    copy = write_lines(raw / "medical-o1-zh.jsonl", [json.dumps(O1_ROW)])
    entry = {
        "name": "medical-o1-zh",
        "spec": "medical-o1:zh",
        "origin": "hub:FreedomIntelligence/medical-o1-reasoning-SFT/zh",
        "file": copy.name,
        "format": "jsonl",
        "schema": "medical-o1",
        "red_team": False,
        "rows": 1,
        "sha256": hashlib.sha256(copy.read_bytes()).hexdigest(),
        "columns": list(O1_ROW),
    }
    (raw / "manifest.json").write_text(json.dumps({"version": 1, "sources": [entry]}), encoding="utf-8")
    assert read_manifest(download_sources(["medical-o1:zh"], raw)) == [entry]
    copy.write_text(
        json.dumps(O1_ROW) + "\n" + json.dumps(O1_ROW) + "\n", encoding="utf-8"
    )  # edited: not trusted
    with pytest.raises(SourceUnavailable):
        download_sources(["medical-o1:zh"], raw)


# ---- hubs: ModelScope, mirrors, every missing source at once -----------------------------------


@pytest.fixture()
def listening_port():
    """A real local TCP listener: the reachability probe of a hub endpoint succeeds against it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def fake_modelscope(monkeypatch, calls: list[dict], payload: dict[str, str]) -> None:
    """The modelscope package's snapshot_download, offline: it writes payload's files into local_dir."""
    import types

    def snapshot_download(repo_id, repo_type=None, local_dir=None, allow_patterns=None, **kw):  # noqa: ANN001
        calls.append({"repo_id": repo_id, "repo_type": repo_type, "allow_patterns": allow_patterns})
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for name, text in payload.items():
            (Path(local_dir) / name).write_text(text, encoding="utf-8")
        return local_dir

    monkeypatch.setitem(sys.modules, "modelscope", types.SimpleNamespace(snapshot_download=snapshot_download))


def test_modelscope_hub_fetches_the_config_file_into_raw(tmp_path, monkeypatch, listening_port):
    calls: list[dict] = []
    fake_modelscope(monkeypatch, calls, {"medical_o1_sft_Chinese.json": json.dumps([O1_ROW] * 2)})
    monkeypatch.setenv("MODELSCOPE_DOMAIN", f"http://127.0.0.1:{listening_port}")
    raw = tmp_path / "raw"
    (entry,) = read_manifest(download_sources(["medical-o1:zh"], raw, hub="modelscope"))
    assert calls == [
        {
            "repo_id": "FreedomIntelligence/medical-o1-reasoning-SFT",
            "repo_type": "dataset",
            "allow_patterns": ["medical_o1_sft_Chinese.json"],
        }
    ]
    assert (entry["file"], entry["rows"], entry["schema"]) == ("medical-o1-zh.json", 2, "medical-o1")
    assert entry["origin"] == "hub:modelscope:FreedomIntelligence/medical-o1-reasoning-SFT/zh"
    assert (raw / "medical-o1-zh.json").is_file()


def test_modelscope_without_the_package_names_the_extra_and_the_file_route(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "modelscope", None)  # import fails as if not installed
    with pytest.raises(SourceUnavailable, match=r"pip install 'medsafe\[modelscope\]'") as err:
        download_sources(["medical-o1"], tmp_path / "raw", hub="modelscope")
    assert "ModelScope dataset FreedomIntelligence" in str(err.value) and "--source" in str(err.value)


def test_every_missing_source_is_named_in_one_message(tmp_path, monkeypatch):
    """The real profiles' sources on a machine without the hub: one error lists them all with where to
    get each; what could be had is kept for the next run."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:1")  # a mirror nobody serves (HF_ENDPOINT)
    raw = tmp_path / "raw"
    with pytest.raises(SourceUnavailable) as err:
        download_sources(["medical-o1", "medsafetybench", "tiny-samples", "no/such.jsonl"], raw)
    msg = str(err.value)
    assert msg.startswith("3 sources are not available here")
    assert "http://127.0.0.1:1 cannot be reached" in msg and "HF_ENDPOINT" in msg
    assert "medical_o1_sft.json" in msg and "medsafetybench.csv" in msg and "'no/such.jsonl'" in msg
    kept = read_manifest(raw / "manifest.json")
    assert kept and all(e["spec"] == "tiny-samples" for e in kept)
