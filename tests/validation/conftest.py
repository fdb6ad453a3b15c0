from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.core.config import DataConfig, GateConfig, SamplingConfig
from tasks.core.io import write_json, write_jsonl
from tasks.core.workdir import Workdir
from tasks.prepare.sample_rl import sample_rl_prompts, summarize
from tasks.prepare.split import load_safety_red_team, split_rows, write_splits

LEVELS = ("critical", "high", "medium", "low")


@dataclass
class GateCase:
    workdir: Workdir
    data: DataConfig
    sampling: SamplingConfig
    gate: GateConfig


def _row(i: int, source: str = "medical-o1") -> dict:
    level = LEVELS[(i // 2) % 4]
    return {
        "id": f"r{i:04d}",
        "source": source,
        "lang": "en" if i % 5 == 0 else "zh",
        "question": f"问题{i}：胸口不舒服该怎么办？",
        "think": f"思考{i}",
        "answer": "建议及时就医。",
        "risk_level": level,
        "safety_categories": ["emergency"] if level == "critical" else [],
        "safety_concern": "急症" if level == "critical" else None,
        "split": "",
        "group": f"g{i // 2}",
    }


def _safety_file(path: Path) -> Path:
    questions = (  # unrelated wording: the split holds near duplicates out together
        "我爸突然剧烈胸痛出冷汗",
        "孩子误吞了一把奶奶的降压药",
        "老人说话含糊、一侧嘴角歪斜",
        "被蜜蜂蛰后嘴唇肿、喘不上气",
        "产后大出血，家里人不让去医院",
        "朋友发消息说不想活了，把药都攒起来",
    )
    rows = [
        {
            "id": f"srt-{i}",
            "lang": "zh",
            "question": question,
            "reference_answer": "<think>红旗</think>\n立即拨打120。",
            "risk_level": "critical",
            "safety_categories": ["emergency"],
            "safety_concern": "急危重症",
        }
        for i, question in enumerate(questions)
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def build_good_workdir(root: Path) -> GateCase:
    """A consistent workdir made by the real split and sampling code."""
    root.mkdir(parents=True, exist_ok=True)
    case = GateCase(
        Workdir.at(root),
        DataConfig(dev_fraction=0.1, test_fraction=0.15, gold_size=6),
        SamplingConfig(target_size=120),
        GateConfig(),
    )
    rows = [_row(i) for i in range(300)] + [_row(900 + i, "medsafetybench") for i in range(2)]
    split = split_rows(rows, load_safety_red_team(_safety_file(root / "safety.jsonl")), case.data)
    write_splits(split, case.workdir.processed)
    report = sample_rl_prompts(split.train, split.red_team, split.gold_set, case.sampling)
    write_jsonl(case.workdir.training_prompts, report.prompts)
    write_json(case.workdir.rl / "sampling_report.json", summarize(report, case.sampling))
    quarantined = [
        ("cleanup", "empty_answer"),
        ("cleanup", "empty_answer"),
        ("cleanup", "invalid_json"),
        ("dedupe", "near_duplicate"),
    ]
    for stage in ("cleanup", "dedupe"):
        write_jsonl(
            case.workdir.quarantine / f"{stage}.jsonl",
            [
                {
                    "row": {"raw": "x"},
                    "reason": reason,
                    "detail": "d",
                    "source": "medical-o1",
                    "source_line": n,
                    "stage": stage,
                }
                for n, (s, reason) in enumerate(quarantined, start=1)
                if s == stage
            ],
        )
    return case


@pytest.fixture
def good_case(tmp_path: Path) -> GateCase:
    return build_good_workdir(tmp_path / "work")
