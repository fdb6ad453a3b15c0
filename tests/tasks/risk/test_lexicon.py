from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import yaml

from tasks.core.io import read_jsonl
from tasks.core.records import SAFETY_CATEGORIES
from tasks.core.workdir import ASSETS_DIR
from tasks.risk.classifier import RiskClassifier, classify_rows, risk_distribution
from tasks.risk.lexicon import (
    DEFAULT_LEXICON,
    Lexicon,
    literal_prefixes,
    load_lexicon,
    normalize,
    whole_matches,
)
from tasks.risk.term_matcher import TermMatcher, _cue_before

# ---- validation ------------------------------------------------------------------------------


def _broken_lexicon(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(DEFAULT_LEXICON.read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "lexicon.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _group(raw: dict, name: str) -> dict:
    return next(g for g in raw["groups"] if g["name"] == name)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda raw: _group(raw, "antibiotics").update(severity="severe"),
            r"groups\[\d+\] \(name='antibiotics'\)\.severity",
        ),
        (
            lambda raw: _group(raw, "stroke_signs").update(category="neuro"),
            r"name='stroke_signs'.*unknown category 'neuro'",
        ),
        (
            lambda raw: _group(raw, "children")["zh"].append("宝宝"),
            r"group 'children' lists zh term\(s\) \['宝宝'\] more than once",
        ),
        (lambda raw: _group(raw, "distress").update(zh=[], en=[]), r"group 'distress' has no terms"),
        (
            lambda raw: raw["combinations"][0]["requires"].append(["astrology"]),
            r"requires unknown kind\(s\) \['astrology'\]",
        ),
        (lambda raw: raw["concerns"].pop("mental_health"), r"no text for category 'mental_health'"),
        (lambda raw: raw.pop("version"), r"version: Field required"),
        (lambda raw: raw["groups"].append(dict(_group(raw, "distress"))), r"repeated: \['distress'\]"),
        (
            lambda raw: _group(raw, "stroke_signs")["patterns"]["en"].append("(face droop"),
            r"name='stroke_signs'.*en pattern '\(face droop' that does not compile",
        ),
        (
            lambda raw: _group(raw, "red_flags")["patterns"]["zh"].append("剧?"),
            r"group 'red_flags' has a zh pattern '剧\?' that matches empty text",
        ),
        (
            lambda raw: raw["exclusion_patterns"]["en"].append("stroke [volume"),
            r"exclusion_patterns has a en pattern 'stroke \[volume' that does not compile",
        ),
        (lambda raw: _group(raw, "distress").update(patterns={"fr": ["x"]}), r"patterns\.fr"),
    ],
)
def test_invalid_lexicon_names_the_entry(tmp_path: Path, edit, message: str) -> None:
    path = _broken_lexicon(tmp_path, edit)
    with pytest.raises(ValueError, match=message) as err:
        load_lexicon(path)
    assert str(path) in str(err.value)


def test_unreadable_lexicon_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: [unclosed", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read the risk lexicon"):
        RiskClassifier.from_yaml(bad)
    with pytest.raises(ValueError, match="cannot read"):
        RiskClassifier.from_yaml(tmp_path / "missing.yaml")


def test_shipped_lexicon_is_versioned_and_bilingual() -> None:
    lexicon = load_lexicon(DEFAULT_LEXICON)
    assert lexicon.version
    for category in SAFETY_CATEGORIES:
        groups = [g for g in lexicon.groups if g.category == category]
        combos = [c for c in lexicon.combinations if c.category == category]
        assert groups or combos, category
        assert all(g.zh and g.en for g in groups), category


# ---- the matcher -----------------------------------------------------------------------------


def _lexicon(**group) -> Lexicon:
    raw = yaml.safe_load(DEFAULT_LEXICON.read_text(encoding="utf-8"))
    raw["groups"] = [{"name": "g", "kind": "k", "severity": "high", **group}]
    raw["combinations"] = []
    raw.pop("topic_clauses", None)  # names the shipped groups' kinds
    return Lexicon.model_validate(raw)


def test_english_patterns_match_whole_words_whatever_the_alternative_order() -> None:
    matcher = TermMatcher(_lexicon(patterns={"en": ["face (?:droop|drooping)", "kid"]}), "en")
    assert [t for _, t, _ in matcher.hits(normalize("Her face drooping now", "en"))] == ["face drooping"]
    assert [t for _, t, _ in matcher.hits(normalize("two kids", "en"))] == ["kid"]  # plural allowed
    assert matcher.hits(normalize("kidney and surface droop", "en")) == []


def test_patterns_obey_negation_and_report_their_start() -> None:
    matcher = TermMatcher(_lexicon(zh=["x"], patterns={"zh": ["剧烈.{0,2}腹痛"]}), "zh")
    assert [(s, t) for s, t, _ in matcher.hits("昨起剧烈上腹痛")] == [(2, "剧烈上腹痛")]
    assert matcher.hits("无剧烈上腹痛") == []


@pytest.mark.parametrize(
    ("pattern", "prefixes"),
    [
        ("(?:a|bc)?d", ["ad", "bcd", "d"]),
        ("ab+c", ["ab"]),
        ("[xy]z?w", ["xw", "xzw", "yw", "yzw"]),
        (r"(?<![a-z])\bfoo", ["foo"]),
        ("x{2,3}y", ["x"]),
        ("ab|abc", ["ab"]),  # abc adds nothing: every match it begins also begins with ab
        ("(?:end|ends) my", ["end my", "ends my"]),  # re reads this as end(?:|s): the empty branch too
        (r"\w+x", None),  # no literal start: searched everywhere
        ("(?i)ab", None),
        ("a|", None),  # may match empty
    ],
)
def test_literal_prefixes_begin_every_match(pattern: str, prefixes: list[str] | None) -> None:
    assert literal_prefixes(re.compile(pattern)) == prefixes


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("(?:end|ends) my", {"end my", "ends my"}),
        ("(?<!x)a[bc]?(?=d)", {"a", "ab", "ac"}),  # lookarounds aside
        (r"a\w", None),  # a class: not a list of strings
        ("ab+", None),
        ("(?i)ab", None),
    ],
)
def test_whole_matches_list_what_a_pattern_can_match(pattern: str, matches: set[str] | None) -> None:
    assert whole_matches(re.compile(pattern)) == matches


def test_every_shipped_pattern_is_tried_only_at_its_prefixes() -> None:
    lexicon = load_lexicon(DEFAULT_LEXICON)
    for lang in ("zh", "en"):
        matcher = TermMatcher(lexicon, lang)
        assert matcher.patterns and matcher.scan_everywhere == set(), lang


def _sample_texts() -> list[tuple[str, str]]:
    texts = []
    for lang in ("zh", "en"):
        rows = json.loads((ASSETS_DIR / "samples" / f"medical_o1_{lang}.json").read_text(encoding="utf-8"))
        texts += [(normalize(v, lang), lang) for r in rows for v in r.values() if isinstance(v, str)]
    return texts


def _word_start(text: str, start: int, lang: str) -> bool:
    """Where an en hit may start (a zh one may start anywhere)."""
    return lang == "zh" or start == 0 or not text[start - 1].isalnum()


def test_pattern_spans_equal_finditer_on_samples_and_noise() -> None:
    """Where a hit may start, what the prefixes let through is what finditer finds (en matches that start
    mid-word are dropped later anyway)."""
    lexicon = load_lexicon(DEFAULT_LEXICON)
    matchers = {lang: TermMatcher(lexicon, lang) for lang in ("zh", "en")}
    rng = random.Random(7)
    pieces = {
        "zh": list("吃了一把安眠药血钾6.8剧烈上腹痛嘴角歪无痛性黄疸中风的风险，。"),
        "en": list("took too many pills k+ 7.2 face droops "),
    }
    noise = [
        ("".join(rng.choice(pieces[lang]) for _ in range(rng.randint(0, 60))), lang)
        for lang in ("zh", "en")
        for _ in range(400)
    ]
    for text, lang in _sample_texts() + noise:
        matcher = matchers[lang]
        expected = [
            (m.start(), m.end(), r, m.group(0), g, c)
            for rx, g, r, c in matcher.patterns
            for m in rx.finditer(text)
        ]
        _, starts, _ = matcher._scan(text, matcher.automaton)
        spans = matcher._pattern_spans(text, starts)
        assert [s for s in spans if _word_start(text, s[0], lang)] == [
            s for s in expected if _word_start(text, s[0], lang)
        ], text


def test_negation_precheck_never_hides_a_cue() -> None:
    """A hit with no cue ending in the window before it (positions from the scan) is not negated: the
    precheck may say yes too often, never no where _negated would find a cue (the window edge can cut
    "techno" to "no", which reads as a cue at the span's start)."""
    lexicon = load_lexicon(DEFAULT_LEXICON)
    matchers = {lang: TermMatcher(lexicon, lang) for lang in ("zh", "en")}
    # the 80-character window starts inside "techno" when k == 0: "no" then opens the span as a word
    edges = [
        ("tech" + "no " + "a" * (25 + k) + " " + "b" * 25 + " " + "c" * 24 + " chest pain; no fever", "en")
        for k in range(-3, 4)
    ]
    edges += [("无" * k + "患者无发热，否认胸痛，未见抽搐，没有头痛", "zh") for k in range(12)]
    edges += [("no_fever nofever no-fever (no) fever; denies.pain without", "en")]
    cases = [(normalize(t, lang), lang, 1) for t, lang in edges] + [
        (t, lang, 3) for t, lang in _sample_texts()
    ]
    checked = 0
    for text, lang, step in cases:
        matcher = matchers[lang]
        _, _, cues = matcher._scan(text, matcher.automaton)
        for start in range(0, len(text) + 1, step):
            for mode in ("all", "clinical"):
                if _word_start(text, start, lang) and not _cue_before(cues.get(mode), start):
                    checked += 1
                    assert not matcher._negated(text, start, mode), (text, start, mode)
    assert checked > 10_000
    cut = normalize(edges[3][0], "en")
    assert matchers["en"]._negated(cut, cut.index("chest"), "all")  # the edge case above is exercised


def test_hits_of_some_groups_are_all_hits_of_those_groups() -> None:
    """hits(text, groups) scans with an automaton cut to what those groups' hits depend on; the result
    must be the full hits of those groups, whatever contains what (terms, patterns, exclusions)."""
    lexicon = load_lexicon(DEFAULT_LEXICON)
    names = [g.name for g in lexicon.groups]
    rng = random.Random(3)
    sets = [frozenset([n]) for n in names] + [
        frozenset(rng.sample(names, k)) for k in (2, 4, 8) for _ in range(5)
    ]
    for lang in ("zh", "en"):
        matcher = TermMatcher(lexicon, lang)
        pieces = list(matcher.entries) + [
            t for texts in matcher.pattern_texts if texts for t in sorted(texts)[:10]
        ]
        filler = list("，。 的了a,.;\n") if lang == "zh" else [" ", ", ", ". ", " the ", "s ", "es "]
        glued = [
            "".join(rng.choice(pieces) + rng.choice(filler) for _ in range(rng.randint(1, 8)))
            for _ in range(300)
        ]
        texts = [t for t, text_lang in _sample_texts() if text_lang == lang] + [
            normalize(t, lang) for t in glued
        ]
        for text in texts:
            full = matcher.hits(text)
            for groups in rng.sample(sets, 4):
                assert matcher.hits(text, groups) == [h for h in full if h[2].name in groups], (text, groups)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("患者无胸痛，偶有咳嗽", "zh"),
        ("患者无发热、胸痛、呼吸困难，偶有咳嗽", "zh"),
        ("患者不伴胸痛", "zh"),
        ("He denies chest pain or shortness of breath.", "en"),
        ("No fever, no chest pain, no seizures.", "en"),
        ("Patient denies suicidal ideation. Presents with insomnia.", "en"),
        ("否认自杀念头，近期睡眠差", "zh"),
    ],
)
def test_negated_terms_do_not_count(clf: RiskClassifier, text: str, lang: str) -> None:
    label = clf.classify(text, lang)
    assert label.risk_level in ("medium", "low"), label
    assert label.safety_categories == []


@pytest.mark.parametrize(
    ("text", "lang", "category"),
    [
        ("患者无明显诱因出现胸痛3小时", "zh", "emergency"),  # a stock phrase, not a negation of the pain
        ("患者四肢无力，胸痛2小时", "zh", "emergency"),
        ("无发热，胸痛2小时", "zh", "emergency"),  # the clause ends before the term
        ("The patient denied chest pain but reports new slurred speech.", "en", "emergency"),
        ("没有人在乎我，我想死", "zh", "mental_health"),  # a crisis is negated only by a clinical denial
        ("I don't want to live anymore", "en", "mental_health"),
    ],
)
def test_negation_scope_is_narrow(clf: RiskClassifier, text: str, lang: str, category: str) -> None:
    assert category in clf.classify(text, lang).safety_categories


def test_plurals_case_and_hyphens_match_in_english(clf: RiskClassifier) -> None:
    assert "emergency" in clf.classify("He had two SEIZURES today", "en").safety_categories
    assert "mental_health" in clf.classify("thoughts of self harm", "en").safety_categories
    assert "mental_health" in clf.classify("thoughts of self-harm", "en").safety_categories


def test_normalize_folds_width_case_and_english_hyphens() -> None:
    assert normalize("Tonic-Clonic ＳＥＩＺＵＲＥ", "en") == "tonic clonic seizure"
    assert normalize("强直－阵挛", "zh") == "强直-阵挛"


# ---- shipped terms: recall fixes, zh and en ---------------------------------------------------

RECALL = [
    ("男，60岁，嘴角歪向一侧半小时，说话含糊", "zh", "critical", "emergency"),
    ("我爸刚才嘴角歪了，口水往下流", "zh", "critical", "emergency"),
    ("今日出现全身强直-阵挛性发作", "zh", "critical", "emergency"),
    ("患者今晨强直阵挛发作2次", "zh", "critical", "emergency"),
    ("孩子发烧，突然两眼上翻、口吐白沫", "zh", "critical", "emergency"),
    ("老人被蛇咬了小腿，伤口肿了", "zh", "critical", "emergency"),
    ("患者呼吸深大，呼气有烂苹果味，血糖28mmol/L", "zh", "critical", "emergency"),
    ("糖尿病酮症酸中毒首要的处理是什么", "zh", "critical", "emergency"),  # not lost to the 酸中毒 exclusion
    ("心电图示T波高尖，QRS增宽", "zh", "critical", "emergency"),
    ("慢性肾衰竭，血钾7.2mmol/L，首先应给予", "zh", "critical", "emergency"),
    ("工地工人考虑热射病，如何降温", "zh", "critical", "emergency"),
    ("癫痫患者自行停药1周", "zh", "high", "prescription_drug"),
    ("降压药吃了一年，上个月自己停了", "zh", "high", "prescription_drug"),
    ("抗抑郁药我擅自停药了", "zh", "high", "prescription_drug"),
    ("老人无痛性进行性黄疸，最可能的诊断是", "zh", "high", "diagnosis_assertion"),
    ("无痛性全程肉眼血尿，首先考虑", "zh", "high", "diagnosis_assertion"),
    ("她刚才吞了一把安眠药", "zh", "critical", "emergency"),
    ("吃多少片安眠药会死", "zh", "critical", "mental_health"),
    ("My daughter says she wants to die", "en", "critical", "mental_health"),
    ("He wanted to die after the divorce", "en", "critical", "mental_health"),
    ("My brother tried to kill himself last night", "en", "critical", "mental_health"),
    ("She doesn't want to live anymore", "en", "critical", "mental_health"),
    ("How many of these pills would it take to never wake up?", "en", "critical", "mental_health"),
    ("My mom's face started drooping an hour ago", "en", "critical", "emergency"),
    ("He has facial drooping on the left", "en", "critical", "emergency"),
    ("My son swallowed a handful of pills", "en", "critical", "emergency"),
    ("She took a bottle of pills after the fight", "en", "critical", "emergency"),
    ("He has taken too many of his pills", "en", "critical", "emergency"),
    ("My toddler swallowed several of grandma's tablets", "en", "critical", "emergency"),
    ("The kid drank some bleach from under the sink", "en", "critical", "emergency"),
    ("A man collapsed with heat stroke after a marathon", "en", "critical", "emergency"),  # not an exclusion
    ("I was bitten by a snake on a hike", "en", "critical", "emergency"),
    ("ECG shows peaked T waves; potassium 7.1 mEq/L", "en", "critical", "emergency"),
    ("Can I take my roommate's Adderall to study?", "en", "high", "prescription_drug"),
    ("Is it safe to take Ritalin without a prescription?", "en", "high", "prescription_drug"),
    ("How much methylphenidate should I take before an exam?", "en", "high", "prescription_drug"),
    ("I stopped taking my antidepressants last week", "en", "high", "prescription_drug"),
    (
        "A smoker has painless hematuria. What is the most likely diagnosis?",
        "en",
        "high",
        "diagnosis_assertion",
    ),
]


@pytest.mark.parametrize(("text", "lang", "level", "category"), RECALL)
def test_recall_fixes(clf: RiskClassifier, text: str, lang: str, level: str, category: str) -> None:
    label = clf.classify(text, lang)
    assert label.risk_level == level, label
    assert category in label.safety_categories, label


@pytest.mark.parametrize(
    ("text", "lang", "level"),
    [
        ("饮酒后出现剧烈上腹痛，向腰背部放射", "zh", "high"),
        ("腹部剧烈疼痛2小时", "zh", "high"),
        ("高钾血症的心电图表现", "zh", "high"),
        ("血压72/40mmHg，心率130次/分", "zh", "high"),
        ("Sudden severe epigastric pain radiating to the back", "en", "high"),
        ("Painless jaundice and weight loss in a 70-year-old", "en", "high"),
        ("Her BP is 78/40 and she is confused", "en", "high"),
    ],
)
def test_red_flags_without_a_category(clf: RiskClassifier, text: str, lang: str, level: str) -> None:
    label = clf.classify(text, lang)
    assert label.risk_level == level, label
    assert label.safety_categories == [], label


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("What happens to stroke volume when end-diastolic volume increases?", "en"),
        ("Stroke work rises with afterload", "en"),
        ("I practise brush strokes in art class", "en"),
        ("Does aspirin reduce the risk of stroke?", "en"),
        ("I ate a box of cookies", "en"),
        ("I have trouble swallowing pills", "en"),
        ("Am I going to die from a cold?", "en"),
        ("I cut myself while cooking", "en"),
        ("Cancer treatment took my life savings", "en"),
        ("I had too much to drink last night, can I take ibuprofen?", "en"),
        ("Painless, no jaundice, no weight loss", "en"),
        ("尿频尿急，无痛无血尿", "zh"),
        ("阿司匹林能预防脑卒中吗", "zh"),
        ("血尿酸升高，血尿素氮正常", "zh"),
        ("剧烈运动后膝盖疼", "zh"),
        ("夜间饮酒后右足第一跖趾关节剧烈疼痛", "zh"),
        ("月经自己停了，是不是绝经了", "zh"),
        ("饭后嘴里有苦味", "zh"),
    ],
)
def test_look_alikes_stay_below_high(clf: RiskClassifier, text: str, lang: str) -> None:
    label = clf.classify(text, lang)
    assert label.risk_level in ("medium", "low"), label
    assert label.safety_categories == [], label


# ---- shipped terms on real data (skipped without ../shared/data) -------------------------------


def test_medical_o1_sample_has_a_plausible_spread(clf: RiskClassifier, shared_data: Path) -> None:
    source = json.loads((shared_data / "medical_o1_zh_sample.json").read_text(encoding="utf-8"))
    keys = {"question": "Question", "think": "Complex_CoT", "answer": "Response"}
    rows = [{"id": str(i), "lang": "zh", **{k: r[v] for k, v in keys.items()}} for i, r in enumerate(source)]
    dist = risk_distribution(classify_rows(rows, clf))
    print(json.dumps(dist, ensure_ascii=False))
    assert dist["total"] == len(source) == 400
    assert max(dist["shares"].values()) < 0.9  # not everything in one level
    assert dist["counts"]["critical"] > 0 and dist["counts"]["low"] > 0
    assert 0.1 < dist["shares"]["critical"] + dist["shares"]["high"] < 0.6
    assert dist["categories"]["emergency"] > 0


def test_red_team_seed_questions_are_high_risk(clf: RiskClassifier, shared_data: Path) -> None:
    seeds = read_jsonl(shared_data / "safety_red_team_seed.jsonl")
    labels = [clf.classify(s["input"], "zh") for s in seeds]
    assert all(label.risk_level in ("critical", "high", "medium") for label in labels)
    assert sum(label.risk_level in ("critical", "high") for label in labels) >= 0.7 * len(labels)
