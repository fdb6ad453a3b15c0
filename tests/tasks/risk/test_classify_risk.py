from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prefect import flow

from tasks.core.io import read_jsonl, write_jsonl
from tasks.core.records import RISK_LEVELS, SAFETY_CATEGORIES
from tasks.core.workdir import ASSETS_DIR, Workdir
from tasks.risk import parallel_label
from tasks.risk.classifier import (
    RiskClassifier,
    classify_rows,
    label_row,
    options_start,
    risk_distribution,
    trim,
)
from tasks.risk.classify_risk import classify_file, classify_risk_task
from tasks.risk.lexicon import DEFAULT_LEXICON, load_lexicon, normalize
from tasks.risk.parallel_label import label_all


def _row(question: str, lang: str = "zh", **extra) -> dict:
    row = {
        "id": "r1",
        "source": "t",
        "lang": lang,
        "question": question,
        "think": "",
        "answer": "",
        "risk_level": "low",
        "safety_categories": [],
        "safety_concern": None,
        "split": "",
    }
    return {**row, **extra}


CASES = [
    # exam vignettes
    ("患者，男，58岁，突发胸骨后压榨性疼痛2小时，伴大汗，最可能的诊断是", "zh", "critical", "emergency"),
    (
        "A 62-year-old man presents with crushing chest pain and "
        "diaphoresis for 1 hour. What is the most likely diagnosis?",
        "en",
        "critical",
        "emergency",
    ),
    ("男，65岁，晨起发现口角歪斜、言语不清，右侧肢体无力3小时，首选的检查是", "zh", "critical", "emergency"),
    (
        "A 4-year-old boy is brought in after ingesting his grandmother's pills. He is lethargic.",
        "en",
        "critical",
        "emergency",
    ),
    (
        "女，25岁。妊娠26周，甲状腺Ⅲ度肿大，T3、T4高于正常。首选的治疗方法是口服丙硫氧嘧啶还是手术？",
        "zh",
        "high",
        "pediatric_pregnancy",
    ),
    (
        "A 30-year-old woman at 8 weeks' gestation asks whether she can continue isotretinoin for acne.",
        "en",
        "high",
        "pediatric_pregnancy",
    ),
    # a diagnosis question about a serious disease is medium since 1.12 (a worry or an exam item, not an
    # emergency); its category stays, and a warning sign of its own (a new breast lump) is still high
    (
        "男，50岁，上腹可扪及肿块。该病人最可能的诊断是：A. 幽门梗阻 B. 胃癌 C. 胰头癌",
        "zh",
        "medium",
        "diagnosis_assertion",
    ),
    (
        "A 67-year-old smoker has weight loss and a spiculated lung mass. Is this lung cancer or lymphoma?",
        "en",
        "medium",
        "diagnosis_assertion",
    ),
    # colloquial questions
    ("我爸突然剧烈胸痛出冷汗，还呼吸困难，该怎么办？", "zh", "critical", "emergency"),
    ("My dad suddenly has slurred speech and his face is drooping", "en", "critical", "emergency"),
    ("血压有点高，150/95，可以自己买降压药吃吗？", "zh", "high", "prescription_drug"),
    ("Can I take amoxicillin without a prescription for my sore throat?", "en", "high", "prescription_drug"),
    ("How much Xanax should I take to calm down before a flight?", "en", "high", "prescription_drug"),
    ("怀孕了能不能吃感冒药？头孢可以吗？", "zh", "high", "pediatric_pregnancy"),
    ("孩子咳嗽，能给他吃点止咳糖浆吗？他才1岁。", "zh", "high", "pediatric_pregnancy"),
    (
        "My wife is 30 weeks pregnant and has a headache, can she take tylenol?",
        "en",
        "high",
        "pediatric_pregnancy",
    ),
    ("我胃疼好几个月了，会不会是胃癌？", "zh", "medium", "diagnosis_assertion"),
    ("Do I have cancer? I found a lump in my breast.", "en", "high", "diagnosis_assertion"),
    ("我不想活了，活着没意思", "zh", "critical", "mental_health"),
    ("I feel hopeless and want to end my life", "en", "critical", "mental_health"),
    ("I've been cutting myself again", "en", "critical", "mental_health"),
]


@pytest.mark.parametrize(("text", "lang", "level", "category"), CASES)
def test_categories_and_levels(clf: RiskClassifier, text: str, lang: str, level: str, category: str) -> None:
    label = clf.classify(text, lang)
    assert label.risk_level == level, label
    assert category in label.safety_categories, label
    assert label.safety_concern and label.evidence


@pytest.mark.parametrize(
    ("text", "lang", "level"),
    [
        ("今天天气怎么样", "zh", "low"),
        ("What's a good recipe for banana bread?", "en", "low"),
        ("我好想死你了", "zh", "low"),  # idiom "miss you to death", not a crisis signal
        ("最近有点咳嗽，怎么缓解？", "zh", "medium"),
        ("A 55-year-old man with type 2 diabetes asks about the mechanism of metformin.", "en", "medium"),
        ("My kidney stone hurts", "en", "low"),  # "kid" must not match inside "kidney"
    ],
)
def test_low_and_medium_risk(clf: RiskClassifier, text: str, lang: str, level: str) -> None:
    label = clf.classify(text, lang)
    assert label.risk_level == level, label
    assert label.safety_categories == []


def test_label_shape_and_language_of_concern(clf: RiskClassifier) -> None:
    label = clf.classify("两岁孩子持续高烧40度，退烧药不管用，还抽搐了怎么办？", "zh")
    assert label.risk_level == "critical"
    assert label.safety_categories == [c for c in SAFETY_CATEGORIES if c in label.safety_categories]
    assert {"emergency", "pediatric_pregnancy"} <= set(label.safety_categories)
    assert "抽搐" in label.safety_concern and "需立即就医" in label.safety_concern
    for item in label.evidence:
        assert item["severity"] in RISK_LEVELS and item["term"]
        assert ("category" in item) != ("kind" in item)
    en = clf.classify("I'm pregnant, can I take ibuprofen?", "en")
    assert en.safety_concern.startswith("Medication safety") and "ibuprofen" in en.safety_concern
    assert clf.classify("hello there", "en").safety_concern is None


def test_unknown_language_is_refused(clf: RiskClassifier) -> None:
    with pytest.raises(ValueError, match="unknown lang 'fr'"):
        clf.classify("douleur thoracique", "fr")


def test_answer_adds_only_weak_evidence(clf: RiskClassifier) -> None:
    row = _row(
        "最近睡不好怎么办？",
        think="考虑焦虑，排除器质性疾病",
        answer="如出现胸痛、想死的念头请立即就医；可在医生指导下用唑吡坦",
    )
    [out] = classify_rows([row], clf)
    assert out["risk_level"] == "medium"  # the answer's drug and emergency advice add no category
    assert out["safety_categories"] == []
    [plain] = classify_rows([_row("最近睡不好怎么办？")], clf)
    assert plain["risk_level"] == "low"


def test_question_decides_categories(clf: RiskClassifier) -> None:
    [out] = classify_rows([_row("我爸突然胸痛出冷汗怎么办", answer="立即拨打120")], clf)
    assert out["risk_level"] == "critical" and out["safety_categories"] == ["emergency"]
    assert out["safety_concern"].startswith("急危重症信号")


def test_labelled_rows_keep_curated_labels(clf: RiskClassifier) -> None:
    curated = _row(
        "能不能吃安定？",
        risk_level="medium",
        safety_categories=["prescription_drug"],
        safety_concern="管制药品滥用风险",
        labelled=True,
        source="red_team_safety",
    )
    unlabelled = _row("能不能吃安定？")
    kept, fresh = classify_rows([curated, unlabelled], clf)
    assert (kept["risk_level"], kept["safety_concern"]) == ("medium", "管制药品滥用风险")
    assert fresh["risk_level"] == "high" and fresh["safety_categories"] == ["prescription_drug"]
    assert curated["risk_level"] == "medium" and unlabelled["risk_level"] == "low"  # inputs untouched


def test_row_with_bad_lang_names_the_row(clf: RiskClassifier) -> None:
    with pytest.raises(ValueError, match="row r9: lang 'de'"):
        classify_rows([_row("Brustschmerzen", lang="de", id="r9")], clf)


def test_risk_distribution_counts_and_shares() -> None:
    rows = [
        {"risk_level": "critical", "safety_categories": ["emergency"]},
        {"risk_level": "low", "safety_categories": []},
        {"risk_level": "low", "safety_categories": []},
        {"risk_level": "high", "safety_categories": ["prescription_drug", "pediatric_pregnancy"]},
    ]
    dist = risk_distribution(rows)
    assert dist["total"] == 4
    assert dist["counts"] == {"critical": 1, "high": 1, "medium": 0, "low": 2}
    assert dist["shares"]["low"] == 0.5 and sum(dist["shares"].values()) == pytest.approx(1.0)
    assert dist["categories"]["emergency"] == 1 and dist["categories"]["mental_health"] == 0
    assert risk_distribution([])["shares"]["low"] == 0.0


def test_classify_file_writes_rows_and_summary(clf: RiskClassifier, tmp_path: Path) -> None:
    src, out = tmp_path / "clean.jsonl", tmp_path / "out" / "classified.jsonl"
    write_jsonl(
        src,
        [
            _row("我爸突然胸痛出冷汗怎么办", id="a"),
            _row("今天天气怎么样", id="b"),
            _row("能吃安定吗", id="c", risk_level="high", labelled=True),
        ],
    )
    summary = classify_file(src, out, clf)
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert summary["counts"] == {"critical": 1, "high": 1, "medium": 0, "low": 1}
    assert summary["curated"] == 1 and "胸痛" in summary["top_evidence"]
    assert summary["lexicon_version"] == load_lexicon(DEFAULT_LEXICON).version
    json.dumps(summary)  # JSON-able for Prefect's result store


# ---- the file pipeline: the context shortcut and worker processes ---------------------------------


def _sample_rows() -> list[dict]:
    rows = []
    for lang in ("zh", "en"):
        source = json.loads((ASSETS_DIR / "samples" / f"medical_o1_{lang}.json").read_text(encoding="utf-8"))
        for i, r in enumerate(source):
            texts = {k: str(r.get(v) or "") for k, v in (("think", "Complex_CoT"), ("answer", "Response"))}
            rows.append(_row(str(r.get("Question") or ""), lang=lang, id=f"{lang}{i}", **texts))
    return rows


CONTEXT_DECIDES = [  # the question leaves the concern (or the level) to the reasoning and answer
    _row("这个病怎么治疗？", answer="可以用阿莫西林或者头孢，也可以用左氧氟沙星"),  # no templated evidence
    _row("阿莫西林和头孢有什么区别？", answer="左氧氟沙星也是抗生素，胸痛要就医"),  # two drug terms of three
    _row(
        "What is the difference between amoxicillin and metformin?",
        lang="en",
        answer="Ibuprofen and lisinopril too.",
    ),
    _row("最近睡不好怎么办？", think="考虑焦虑", answer="可在医生指导下用唑吡坦"),  # nothing: the level too
    _row("能吃阿莫西林吗？", answer="头孢和左氧氟沙星也可以"),  # settled by the question's category
]


def test_context_shortcut_changes_no_label(clf: RiskClassifier) -> None:
    concern = trim(label_row(CONTEXT_DECIDES[1], clf, weak_evidence=False)).safety_concern
    assert concern == "涉及处方药物（阿莫西林、头孢、左氧氟沙星）"  # the answer's drug completes the list
    for row in _sample_rows() + CONTEXT_DECIDES:
        full, fast = trim(label_row(row, clf)), trim(label_row(row, clf, weak_evidence=False))
        assert fast == full, row["question"]


def test_worker_processes_label_like_this_process(
    clf: RiskClassifier, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rows = _sample_rows() * 2 + [_row("能吃安定吗", id="c", risk_level="high", labelled=True)]
    monkeypatch.setattr(parallel_label, "CHUNK_ROWS", 40)  # several chunks: some to the worker, some here
    alone = label_all(rows, clf, workers=0)
    assert label_all(rows, clf, workers=1, min_rows=1) == alone
    assert "worker failed" not in caplog.text  # the worker labelled its chunks; nothing fell back
    assert alone[-1] is None and all(label is not None for label in alone[:-1])


def test_workers_read_their_chunks_from_the_source_file(
    clf: RiskClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "cleaned.jsonl"
    write_jsonl(source, _sample_rows() * 2)
    rows = read_jsonl(source)
    monkeypatch.setattr(parallel_label, "CHUNK_ROWS", 40)
    alone = label_all(rows, clf, workers=0)
    assert label_all(rows, clf, workers=1, min_rows=1, source=source) == alone
    assert "worker failed" not in caplog.text


def test_a_bad_row_fails_the_parallel_labelling_with_its_own_error(
    clf: RiskClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _sample_rows() * 2
    rows[len(rows) // 2] = _row("胸痛", lang="fr", id="bad")
    monkeypatch.setattr(parallel_label, "CHUNK_ROWS", 40)
    with pytest.raises(ValueError, match="row bad: lang 'fr'"):
        label_all(rows, clf, workers=1, min_rows=1)


def test_a_failing_worker_costs_time_not_labels(
    clf: RiskClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "cleaned.jsonl"
    rows = _sample_rows() * 2
    write_jsonl(source, rows[:-1])  # the worker finds one record fewer than it was told, and gives up
    monkeypatch.setattr(parallel_label, "CHUNK_ROWS", 40)
    assert label_all(rows, clf, workers=1, min_rows=1, source=source) == label_all(rows, clf, workers=0)
    assert "worker failed" in caplog.text and "changed meanwhile" in caplog.text


# ---- exam answer options --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("可见于 A. 慢性贫血 B. 失血性休克 C. 呼吸衰竭", 4),
        ("最可能的诊断是\nA.幽门梗阻\nB、胃癌\nC)胰头癌", 8),
        ("which is true? (a) x (b) y (c) z", 15),
        ("vitamin a. and vitamin b. levels", 32),  # no c: not an option list
        ("e.g. a case of x; see b. below", 30),
    ],
)
def test_options_start(text: str, start: int) -> None:
    norm = normalize(text, "en" if text.isascii() else "zh")
    assert options_start(norm) == start


def test_emergency_named_only_in_options_is_not_an_emergency(clf: RiskClassifier) -> None:
    text = "静脉血氧含量高于正常可见于 A. 慢性贫血 B. 失血性休克 C. 呼吸衰竭 D. 氰化钠中毒"
    label = clf.classify(text, "zh")
    assert label.risk_level == "medium" and label.safety_categories == [], label
    assert {"term": "中毒", "kind": "emergency_sign", "severity": "medium"} in label.evidence
    en = clf.classify("Which causes this? A. anemia B. cyanide poisoning C. heart failure", "en")
    assert en.risk_level == "medium" and en.safety_categories == [], en


def test_options_still_combine_with_the_stem_and_the_stem_wins(clf: RiskClassifier) -> None:
    stem = clf.classify("突发胸痛2小时，诊断是 A. 心绞痛 B. 胸痛综合征 C. 气胸", "zh")
    assert stem.risk_level == "critical" and stem.safety_categories == ["emergency"], stem
    preg = clf.classify("孕妇，甲亢，首选 A. 丙硫氧嘧啶 B. 手术 C. 放射碘", "zh")
    assert preg.risk_level == "high" and preg.safety_categories == ["pediatric_pregnancy"], preg


# ---- speed and the Prefect task -------------------------------------------------------------


def test_speed_sanity(clf: RiskClassifier) -> None:
    texts = [(t, lang) for t, lang, _, _ in CASES] + [("今天天气怎么样", "zh"), ("hello there", "en")]
    batch = (texts * (50_000 // len(texts) + 1))[:50_000]
    wall, cpu = time.perf_counter(), time.process_time()
    labels = [clf.classify(t, lang) for t, lang in batch]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"classified {len(labels)} short texts: {wall:.2f}s wall, {cpu:.2f}s CPU")
    assert len(labels) == 50_000


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_task_wrapper_writes_and_caches(tmp_path: Path) -> None:
    src = tmp_path / "clean.jsonl"
    write_jsonl(src, [_row("我爸突然胸痛出冷汗怎么办", id="a"), _row("今天天气怎么样", id="b")])

    @flow
    def run(path: Path, workdir: Workdir) -> tuple[str, dict]:
        state = classify_risk_task(path, workdir, return_state=True)
        return state.name, state.result()

    first_state, first = run(src, Workdir.at(tmp_path / "wd"))
    second_state, second = run(src, Workdir.at(tmp_path / "wd"))
    assert (first_state, second_state) == ("Completed", "Cached")  # same inputs: served from the cache
    assert first == second and first["counts"]["critical"] == 1
    assert [r["risk_level"] for r in read_jsonl(first["output"])] == ["critical", "low"]
