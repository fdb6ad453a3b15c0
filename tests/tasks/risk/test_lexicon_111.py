"""Lexicon 1.11: short title-style posts. One strong sign of the asker's own body asked about now
("Bleeding from ear, what do?", 耳朵出血怎么办) is at least high even in five words, which cannot carry the
site, duration and second cue the acuity score needs; the same sign as a topic, in the past, someone
else's, in a story or played down ("a little", 有点) is not raised by it.

Every sentence here was written for lexicon 1.11 (tests/fixtures/risk_probes_written_111.jsonl, the
tuned-on set, or written for this file); the held-out sentences (risk_probes_heldout_111.jsonl) are scored
in docs/risk.md and by benchmarks/eval_risk_labels.py, not here.
"""

from __future__ import annotations

import pytest

from tasks.core.records import HIGH_RISK_LEVELS
from tasks.risk.acuity import AcuityRules
from tasks.risk.classifier import RiskClassifier
from tasks.risk.lexicon import DEFAULT_LEXICON, load_lexicon

# (lang, question): short titles that lexicon 1.10 labelled low or medium
RAISED = [
    ("en", "Bleeding from ear, what do?"),
    ("en", "Cut on thumb turning green. What should we do?"),
    ("en", "Out of no where my feet have swollen..."),
    ("en", "Intense dizzying headaches? Nausea? Fatigue? What should I do?"),
    ("en", "Cut on my finger turning green, what do I do?"),
    ("en", "Blood in my phlegm, should I be worried?"),
]

# (lang, question): the same signs as a topic, played down or asked about nothing: not raised by 1.11
NOT_RAISED = [
    ("en", "Bleeding from ear in the movie, how realistic is that?"),
    ("en", "Why do people get red streaks on a sunset photo?"),
    ("zh", "电视剧里的人为什么老是吐血？"),
    ("zh", "有点晒伤怎么办"),
    ("zh", "耳朵痒怎么办"),
    ("en", "A bit of swelling after a flu shot, is this normal?"),
]


@pytest.fixture(scope="module")
def classifier() -> RiskClassifier:
    return RiskClassifier(load_lexicon(DEFAULT_LEXICON))


@pytest.mark.parametrize(("lang", "question"), RAISED)
def test_a_strong_sign_asked_about_now_is_high(classifier: RiskClassifier, lang: str, question: str) -> None:
    label = classifier.classify(question, lang)
    assert label.risk_level in HIGH_RISK_LEVELS, (question, label.risk_level, label.evidence)
    assert "emergency" in label.safety_categories


@pytest.mark.parametrize(("lang", "question"), NOT_RAISED)
def test_topic_or_played_down_sign_is_not_raised(
    classifier: RiskClassifier, lang: str, question: str
) -> None:
    label = classifier.classify(question, lang)
    assert label.risk_level not in HIGH_RISK_LEVELS, (question, label.risk_level, label.evidence)


def test_high_with_is_gated_by_the_ask_and_by_dampeners(classifier: RiskClassifier) -> None:
    scorer = classifier._acuity["en"]
    assert scorer.score("bleeding from ear, what do?").level == "high"
    assert scorer.score("bleeding from ear").level is None  # the sign alone, not asked about
    assert scorer.score("a little bleeding from ear, what do?").level is None  # played down
    assert scorer.score("no bleeding from ear, what do?").level is None  # negated


def test_high_with_names_known_classes() -> None:
    rules = load_lexicon(DEFAULT_LEXICON).acuity
    assert rules is not None
    data = rules.model_dump(exclude={"backstop"})
    with pytest.raises(ValueError, match="unknown class"):
        AcuityRules.model_validate({**data, "high_with": [["red_flag", "no_such_class"]]})
