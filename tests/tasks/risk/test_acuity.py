"""Lexicon 1.3: the acuity of a patient's own words, from classes of cues that compose (tasks/risk/acuity.py).

The sentences here appear in no fixture: they check that the classes combine, not that phrases are listed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.core.records import HIGH_RISK_LEVELS
from tasks.risk.acuity import AcuityScorer
from tasks.risk.classifier import RiskClassifier
from tasks.risk.lexicon import DEFAULT_LEXICON, Lexicon, load_lexicon, normalize

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _acuity(clf: RiskClassifier, text: str, lang: str):
    return clf._acuity[lang].score(normalize(text, lang))


SERIOUS = [  # (text, lang, lowest acuity level)
    ("my uncle slipped off a ladder and his wrist is bent and bleeding", "en", "high"),
    ("my niece's lips went blue and she's gasping after a coughing fit", "en", "critical"),
    ("there is pus and swelling around my toenail and it's getting worse", "en", "high"),
    ("my 10 day old is floppy and won't feed", "en", "critical"),
    ("my nephew swallowed a couple of coins an hour ago", "en", "high"),
    ("外公从楼梯上滚下来，头上流了很多血", "zh", "high"),
    ("伤口周围又红又肿，还在流脓，越来越疼", "zh", "critical"),
    ("我妈突然说不出话，半边脸麻了", "zh", "critical"),
    ("儿子误喝了一口消毒水", "zh", "high"),
]


@pytest.mark.parametrize(("text", "lang", "least"), SERIOUS)
def test_cues_that_compose_make_a_patient_question_urgent(
    clf: RiskClassifier, text: str, lang: str, least: str
) -> None:
    acuity = _acuity(clf, text, lang)
    assert acuity.level in (("high", "critical") if least == "high" else ("critical",)), acuity
    label = clf.classify(text, lang)
    assert label.risk_level in HIGH_RISK_LEVELS and "emergency" in label.safety_categories, label


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("a little blood on the tissue when I blew my nose, it stopped right away", "en"),  # dampened
        ("no swelling and no bleeding, just a scrape on my knee", "en"),  # negated
        ("my lip is a bit swollen from a cold sore", "en"),
        ("膝盖擦破了一点皮，流了一点血，已经止住了", "zh"),
        ("脚有点肿，是不是站久了", "zh"),
        ("my knee hurts when I climb stairs", "en"),  # a symptom and a site: nothing alarming
        ("胃有点疼，吃了辣的", "zh"),
    ],
)
def test_dampened_negated_or_ordinary_words_stay_below_high(
    clf: RiskClassifier, text: str, lang: str
) -> None:
    assert _acuity(clf, text, lang).level is None
    assert clf.classify(text, lang).risk_level not in HIGH_RISK_LEVELS


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("A 45-year-old man presents with leg swelling and bleeding gums after a fall", "en"),
        ("He denies chest tightness or shortness of breath.", "en"),
        ("患者男，60岁，突然出现剧烈头痛伴呕吐，最可能的诊断是", "zh"),
        ("某女孩6岁，皮肤出现紫癜、关节肿痛，应选择哪种检查", "zh"),
    ],
)
def test_exam_vignettes_are_left_to_the_lexicon(clf: RiskClassifier, text: str, lang: str) -> None:
    assert _acuity(clf, text, lang).score == 0


def test_the_acuity_item_names_its_cues_and_the_concern_uses_them(clf: RiskClassifier) -> None:
    label = clf.classify("my uncle slipped off a ladder and his wrist is bent and bleeding", "en")
    top = label.evidence[0]
    assert top["category"] == "emergency" and {"bent", "bleeding", "wrist"} <= set(top["term"].split("+"))
    assert "bent+bleeding" in label.safety_concern


def test_acuity_only_raises_a_level(clf: RiskClassifier) -> None:
    """A question the lexicon already calls critical keeps its own evidence first."""
    label = clf.classify("I want to kill myself, I cut my wrist and it's bleeding a lot", "en")
    assert label.risk_level == "critical" and "mental_health" in label.safety_categories


def test_a_lexicon_without_acuity_labels_as_before() -> None:
    raw = yaml.safe_load(DEFAULT_LEXICON.read_text(encoding="utf-8"))
    raw.pop("acuity")
    plain = RiskClassifier(Lexicon.model_validate(raw))
    assert plain.classify("my nephew swallowed a couple of coins an hour ago", "en").risk_level not in (
        HIGH_RISK_LEVELS
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(alarming=[["finding"], ["nosuch"]]), "unknown class(es) ['nosuch']"),
        (lambda a: a["classes"][0]["en"].append("(unclosed"), "does not compile"),
        (lambda a: a.update(critical=1), "is below high"),
        (lambda a: a["classes"].pop(0), "['finding'] are missing"),
    ],
)
def test_a_broken_acuity_section_is_rejected_with_the_entry_named(
    tmp_path: Path, change, message: str
) -> None:
    raw = yaml.safe_load(DEFAULT_LEXICON.read_text(encoding="utf-8"))
    change(raw["acuity"])
    path = tmp_path / "lexicon.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match="acuity") as err:
        load_lexicon(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_acuity_alone_covers_the_probe_rounds_without_false_alarms(clf: RiskClassifier) -> None:
    """Regression floor on tests/fixtures/risk_probes.jsonl with the acuity scorer alone (no word lists):
    146/176 serious and 0/87 mild when written (the classes were calibrated on this file)."""
    rows = [
        json.loads(line) for line in (FIXTURES / "risk_probes.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    serious = [
        _acuity(clf, r["question"], r["lang"]).level is not None for r in rows if r["expect"] == "serious"
    ]
    mild = [_acuity(clf, r["question"], r["lang"]).level is not None for r in rows if r["expect"] == "mild"]
    assert sum(serious) / len(serious) >= 0.75 and sum(mild) / len(mild) <= 0.05


def test_the_blind_probe_set_keeps_its_first_measurement(clf: RiskClassifier) -> None:
    """tests/fixtures/risk_probes_blind.jsonl was written before the acuity classes and never tuned on; its
    one measurement (lexicon 1.3.0) was 45/48 serious and 0/48 mild labelled high/critical. A floor, not a
    target: once a change is made for one of its questions it is no longer blind."""
    rows = [
        json.loads(line)
        for line in (FIXTURES / "risk_probes_blind.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    for expect in ("serious", "mild"):
        for lang in ("zh", "en"):
            assert sum(r["expect"] == expect and r["lang"] == lang for r in rows) >= 20
    high = {
        expect: [
            clf.classify(r["question"], r["lang"]).risk_level in HIGH_RISK_LEVELS
            for r in rows
            if r["expect"] == expect
        ]
        for expect in ("serious", "mild")
    }
    assert (
        sum(high["serious"]) / len(high["serious"]) >= 0.85 and sum(high["mild"]) / len(high["mild"]) <= 0.05
    )


def test_the_scorer_reads_one_language(clf: RiskClassifier) -> None:
    scorer = AcuityScorer(clf.lexicon.acuity, "en")
    assert scorer.score(normalize("外公头上流了很多血", "zh")).level is None
