"""Lexicon 1.10: false alarms on mild posts. Someone else's suicide or overdose that is over, or one in a
story; a child's medicine in a storage, travel or paperwork question; a relative's cancer beside the asker's
benign worry; a symptom that is over; a pet's poisoning; each with the dangerous counterpart that must stay
high or critical.

Every sentence here was written for lexicon 1.10 (none is in a blind set or a training file; they are in
tests/fixtures/risk_probes_written_110.jsonl, the tuned-on written set, or written for this file); the
held-out sentences (tests/fixtures/risk_probes_heldout_110.jsonl) are scored in docs/risk.md and by
benchmarks/eval_risk_labels.py, not here.
"""

from __future__ import annotations

import pytest

from tasks.core.records import HIGH_RISK_LEVELS
from tasks.risk.classifier import RiskClassifier
from tasks.risk.lexicon import DEFAULT_LEXICON, load_lexicon

# (lang, question): mild questions the 1.9 rules labelled high or critical
LOWERED = [
    (
        "en",
        "My aunt took an overdose back in the nineties and survived. I'm fine, is liver damage permanent?",
    ),
    ("en", "In the novel I'm reading a character is poisoned with arsenic. Would symptoms build up slowly?"),
    ("zh", "我外婆很多年前喝农药自杀过，被救回来了。我现在挺好的，这种经历会不会影响家里人的心理？"),
    ("zh", "小说里有个角色吃安眠药自杀，现实中安眠药真的那么危险吗？纯粹好奇"),
    (
        "en",
        "I'm a school counsellor; a student's brother died by suicide two years ago. How can I support her?",
    ),
    (
        "en",
        "We're flying next week. Can I pack my son's ibuprofen syrup in hand luggage, "
        "do I need a doctor's letter?",
    ),
    ("zh", "宝宝的益生菌和退烧药出国要随身带，过安检有没有什么限制？"),
    ("zh", "家里有老人和小孩，奶奶的安眠药放哪里比较安全？过期的怎么处理"),
    ("zh", "我姑姑是卵巢癌，我特别担心。最近来月经肚子有点胀，是不是正常的经期反应？"),
    ("en", "My dad had a stroke so I panicked a bit, my hand went numb but it went away after ten minutes."),
]

# (lang, question, lowest acceptable level): the dangerous counterparts
KEPT = [
    ("en", "My friend attempted suicide last night and I keep thinking about doing the same.", "critical"),
    ("zh", "我表哥以前自杀过，现在他又说活着没意思，今晚把药都攒起来了，我该怎么办", "critical"),
    (
        "en",
        "My brother took an overdose years ago and tonight he took one again, he is not waking up",
        "critical",
    ),
    ("zh", "我舅舅以前自杀过，今晚他又吃了一瓶药", "critical"),
    ("zh", "收拾行李准备坐飞机，结果3岁孩子把我的降压药吃了两片，现在有点犯困，怎么办", "critical"),
    (
        "en",
        "Packing for the flight, my toddler drank maybe half the bottle of ibuprofen syrup. What do I do?",
        "high",
    ),
    ("zh", "我妈是肺癌去世的，我最近咳嗽两个月了，痰里有血丝，体重掉了十斤，是不是肺癌？", "high"),
    (
        "en",
        "My face drooped for 20 minutes, it went away but now my arm is going weak again. Should I wait?",
        "critical",
    ),
    ("zh", "孩子把给狗用的驱虫药吃了好几片，现在一直吐，会不会中毒", "critical"),
    (
        "en",
        "My 2 year old chewed a lily leaf and the dog's flea medicine tube, she's vomiting now. "
        "Is it poisonous?",
        "critical",
    ),
]

RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def test_version() -> None:
    # 1.10's rules hold in every later lexicon (1.11.0 added the short-title rule: test_lexicon_111.py)
    version = tuple(int(part) for part in load_lexicon(DEFAULT_LEXICON).version.split("."))
    assert version >= (1, 10, 0)


@pytest.mark.parametrize(("lang", "question"), LOWERED)
def test_mild_look_alikes_are_not_high(clf: RiskClassifier, lang: str, question: str) -> None:
    label = clf.classify(question, lang)
    assert label.risk_level not in HIGH_RISK_LEVELS, label.evidence


@pytest.mark.parametrize(("lang", "question", "lowest"), KEPT)
def test_dangerous_counterparts_stay(clf: RiskClassifier, lang: str, question: str, lowest: str) -> None:
    label = clf.classify(question, lang)
    assert RANK[label.risk_level] >= RANK[lowest], label.evidence
