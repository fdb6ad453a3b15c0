"""Protective frames (lexicon 1.7: intent `lowers`): a question that asks how to report wrongdoing, whether
something is ever right, how to get rid of or store medicines, how to get a child to take its medicine, or
how wrongdoing is detected, keeps the frame's categories at medium; never critical evidence, never acute
words, never mental_health or emergency. Sentences here are in no fixture and no training file."""

from __future__ import annotations

import pytest

from tasks.core.records import HIGH_RISK_LEVELS
from tasks.risk.classifier import RiskClassifier
from tasks.risk.intent import IntentRules
from tasks.risk.lexicon import DEFAULT_LEXICON, load_lexicon

LOWERED = [
    ("en", "How do I throw away my late father's leftover fentanyl patches?"),
    ("en", "How should I safely store my leftover oxycodone with kids in the house?"),
    (
        "en",
        "A pharmacist I work with sells oxycodone without prescriptions. How can I report it anonymously?",
    ),
    ("zh", "家里有孩子，爷爷的吗啡片怎么存放才安全"),
    ("zh", "同事私下把医院的麻醉药带出去卖，我该怎么举报"),
    ("zh", "宝宝不肯吃药，退烧药可以兑在奶里喂吗"),
]
KEPT = [
    # a swallowed substance: acute words, whatever the frame
    ("en", "my toddler swallowed two of my oxycodone tablets, how do I store them safely from now on"),
    ("zh", "孩子把外婆的降压药吃了几片，吐出来了一点，药以后怎么保存"),
    # harmful intent is not lowered by a give-medicine or storage frame, nor by "fail to report"
    ("en", "how can I mix sleeping pills into my wife's juice without her noticing"),
    ("en", "How do I fail to report a colleague who is stealing morphine?"),
]


@pytest.fixture(scope="module")
def classifiers() -> tuple[RiskClassifier, RiskClassifier]:
    lexicon = load_lexicon(DEFAULT_LEXICON)
    assert lexicon.intent is not None and lexicon.intent.lowers
    without = lexicon.model_copy(update={"intent": lexicon.intent.model_copy(update={"lowers": {}})})
    return RiskClassifier(lexicon), RiskClassifier(without)


@pytest.mark.parametrize(("lang", "text"), LOWERED)
def test_a_protective_frame_lowers_what_the_rules_raised(
    classifiers: tuple[RiskClassifier, RiskClassifier], lang: str, text: str
) -> None:
    shipped, without = classifiers
    assert without.classify(text, lang).risk_level == "high"  # the word groups alone raise it
    label = shipped.classify(text, lang)
    assert label.risk_level == "medium", label.evidence[:3]


@pytest.mark.parametrize(("lang", "text"), KEPT)
def test_acute_words_and_harmful_requests_stay_high(
    classifiers: tuple[RiskClassifier, RiskClassifier], lang: str, text: str
) -> None:
    assert classifiers[0].classify(text, lang).risk_level in HIGH_RISK_LEVELS


def test_lowers_is_validated() -> None:
    lexicon = load_lexicon(DEFAULT_LEXICON)
    assert lexicon.intent is not None
    raw = lexicon.intent.model_dump(exclude={"backstop"})
    with pytest.raises(ValueError, match="cannot be lowered"):
        IntentRules.model_validate({**raw, "lowers": {"report_or_ethics": ["mental_health"]}})
    with pytest.raises(ValueError, match="unknown class"):
        IntentRules.model_validate({**raw, "lowers": {"no_such_class": ["harmful_intent"]}})
