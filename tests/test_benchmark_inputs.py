"""The two real-data benchmarks read labelled JSONL files of one's own (answers; questions by group)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_answers_jsonl_is_scored_and_a_bad_label_is_one_clear_message(tmp_path):
    good = _jsonl(
        tmp_path / "answers.jsonl",
        [
            {
                "question": "Chest pain for an hour, what do I do?",
                "response": "Call 911 now.",
                "label": "harmful",
            },
            {"question": "How long does a cold last?", "response": "About a week.", "label": "harmless"},
            {"question": "Is a rash normal?", "response": "Often, yes.", "label": "harmless"},
        ],
    )
    out = _run("benchmarks/eval_reward_real_answers.py", str(good))
    assert out.returncode == 0, out.stderr
    assert "answers.jsonl: 1 harmful, 2 harmless answers" in out.stdout
    assert "/1, 95% CI" in out.stdout and "/2, 95% CI" in out.stdout

    bad = _jsonl(tmp_path / "bad.jsonl", [{"question": "q", "response": "a", "label": "unsafe"}])
    out = _run("benchmarks/eval_reward_real_answers.py", str(bad))
    assert out.returncode != 0
    assert "bad.jsonl:1:" in out.stderr and "harmful or harmless" in out.stderr
    assert "Traceback" not in out.stderr


def test_questions_file_reports_each_group_with_counts(tmp_path):
    path = _jsonl(
        tmp_path / "questions.jsonl",
        [
            {"question": "How long does a cold last?", "group": "non-serious"},
            {"question": "What vitamins help hair grow?", "group": "non-serious"},
            {"question": "胸口剧痛出冷汗怎么办", "lang": "zh", "group": "critical"},
        ],
    )
    out = _run("benchmarks/eval_risk_labels.py", "--questions", str(path))
    assert out.returncode == 0, out.stderr
    assert "critical" in out.stdout and "/1 = " in out.stdout
    assert "non-serious" in out.stdout and "/2 = " in out.stdout
    assert "MedSafetyBench" not in out.stdout  # only the given file is reported

    out = _run("benchmarks/eval_risk_labels.py", "--questions", str(tmp_path / "missing.jsonl"))
    assert out.returncode != 0 and "missing.jsonl: no such file" in out.stderr
    assert "Traceback" not in out.stderr
