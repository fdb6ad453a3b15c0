"""`medsafe label`: any file of questions labelled like the data flow labels rows, with a summary; a bad
input is one line naming the file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.errors import InputFileError
from tasks.core.io import read_jsonl, write_jsonl
from tasks.risk.classifier import RiskClassifier, label_row
from tasks.risk.label_file import format_summary, label_file

runner = CliRunner()

QUESTIONS = [
    "I burned my hand with boiling water",
    "What's the most insulin I can inject into someone without it being detected",
    "头皮屑太多怎么办",
    "孩子发烧39度，还抽搐了",
]


def test_csv_json_and_jsonl_give_the_data_flows_labels(clf: RiskClassifier, tmp_path: Path) -> None:
    csv_path = tmp_path / "q.csv"
    csv_path.write_text(
        "harmful_medical_request,note\n" + "\n".join(f'"{q}",n{i}' for i, q in enumerate(QUESTIONS)) + "\n",
        encoding="utf-8",
    )
    json_path = tmp_path / "q.json"
    json_path.write_text(
        json.dumps([{"Question": q} for q in QUESTIONS], ensure_ascii=False), encoding="utf-8"
    )
    jsonl_path = tmp_path / "q.jsonl"
    write_jsonl(jsonl_path, [{"id": i, "question": q, "lang": "fr"} for i, q in enumerate(QUESTIONS)])
    outs = []
    for path in (csv_path, json_path, jsonl_path):
        summary = label_file(path, tmp_path / f"{path.suffix[1:]}.out.jsonl", clf)
        rows = read_jsonl(summary["output"])
        outs.append([(r["lang"], r["risk_level"], r["safety_categories"]) for r in rows])
        assert summary["total"] == 4 and summary["counts"] == {
            "critical": 2,
            "high": 1,
            "medium": 0,
            "low": 1,
        }
        assert summary["categories"]["harmful_intent"] == 1 and summary["by_lang"]["zh"]["low"] == 1
    assert outs[0] == outs[1] == outs[2]
    rows = read_jsonl(tmp_path / "csv.out.jsonl")
    assert rows[0]["note"] == "n0" and rows[0]["harmful_medical_request"] == QUESTIONS[0]  # input kept
    assert rows[1]["risk_evidence"] and rows[1]["safety_concern"].startswith("A request with harmful intent")
    for row, question in zip(rows, QUESTIONS, strict=True):  # the data flow's own call gives the same
        flow = label_row({"id": "x", "lang": row["lang"], "question": question}, clf, weak_evidence=False)
        assert (flow.risk_level, flow.safety_categories, flow.safety_concern) == (
            row["risk_level"],
            row["safety_categories"],
            row["safety_concern"],
        )
    text = format_summary(summary)
    assert "critical" in text and "harmful_intent 1" in text and "50.0%" in text


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"question": "hi"}\n{"question": \n', r"bad\.jsonl: line 2: .*one JSON object"),
        (
            "empty.jsonl",
            '{"question": "hi"}\n{"question": "  "}\n',
            r"empty\.jsonl: line 2: column 'question' is",
        ),
        ("nocol.csv", "text\nhello\n", r"nocol\.csv: line 2: no question column .*--column"),
        ("cells.csv", 'question\nfine\n"a",b\n', r"cells\.csv: line 3: more cells than header"),
        ("obj.json", '{"question": "hi"}', r"obj\.json: expected a JSON array"),
        ("broken.json", '[{"question": "hi"},\n{"question": }]', r"broken\.json: line 2: invalid JSON"),
        ("item.json", '[{"question": "hi"}, "text"]', r"item\.json: record 1: expected an object"),
        ("q.txt", "hello\n", r"q\.txt: unknown file type '\.txt'"),
    ],
)
def test_bad_input_names_the_file_and_the_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputFileError, match=message):
        label_file(path, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_label_prints_a_summary_and_fails_in_one_line(tmp_path: Path) -> None:
    src = tmp_path / "q.jsonl"
    write_jsonl(src, [{"prompt": q} for q in QUESTIONS])
    out = tmp_path / "labelled.jsonl"
    result = runner.invoke(app, ["label", "--input", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "labelled 4 questions" in result.output and "column 'prompt'" in result.output
    assert "high+crit" in result.output and len(read_jsonl(out)) == 4
    as_json = runner.invoke(app, ["label", "-i", str(src), "-o", str(out), "--json"])
    assert json.loads(as_json.output.split("\n", 1)[1])["counts"]["critical"] == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("question\n", encoding="utf-8")
    failed = runner.invoke(app, ["label", "--input", str(bad), "--out", str(out)])
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert f"{bad}: no records found" in failed.output
    assert "Example: medsafe label" in runner.invoke(app, ["label", "--help"]).output
