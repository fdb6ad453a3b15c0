"""Mask structured personal identifiers before text leaves the machine (a remote teacher or judge).

What is masked, zh and en: e-mail addresses, URLs, phone numbers (Chinese mobiles and landlines,
international and North-American forms), Chinese resident ID numbers (18 characters, checksum verified),
medical record / insurance / patient numbers named as such, dates of birth named as such, and names where
the text introduces them ("my name is …", "我叫…", "患者王某"). Doses, lab values, ages and plain dates are
left alone: the judge needs them. Each kind has its own placeholder, so a masked answer still reads.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

_DATE = (
    r"(?:\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}日?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
    r"|[A-Za-z]{3,9}\.? \d{1,2},? \d{4})"
)
_NUMBER_LABEL = (
    r"(?:medical record (?:number|no\.?)|MRN|patient (?:id|number|no\.?)|hospital (?:number|no\.?)"
    r"|insurance (?:id|number|no\.?)|member (?:id|number)|policy (?:number|no\.?)|NHS number"
    r"|病历号|病案号|住院号|门诊号|就诊卡号|医保卡?号|社保卡?号|医疗保险号|保险单号)"
)

_NAME_END = r"[，,。.；;：:\s！!？?（(]|今年|是|的|在|从|来自|女|男|$"

# Order matters: longer, more specific patterns first, so a URL's digits are not read as a phone.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("URL", re.compile(r"\b(?:https?://|www\.)[^\s<>\"'，。、；）)]+", re.I)),
    (
        "RECORD_NUMBER",
        re.compile(
            rf"(?P<label>{_NUMBER_LABEL}\s*(?:[:：#]|is|为|是)?\s*)[A-Za-z]{{0,3}}[-\s]?\d[\d-]{{3,}}", re.I
        ),
    ),
    (
        "DATE_OF_BIRTH",
        re.compile(
            rf"(?P<label>(?:date of birth|DOB|born on|出生日期|出生于|生日)\s*(?:[:：]|is|为|是)?\s*){_DATE}",
            re.I,
        ),
    ),
    ("CN_ID", re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")),
    ("PHONE", re.compile(r"(?<![\d.])(?:\+?86[-\s]?)?1[3-9]\d[-\s]?\d{4}[-\s]?\d{4}(?![\d.])")),
    ("PHONE", re.compile(r"(?<![\d.])0\d{2,3}[-\s]\d{7,8}(?![\d.])")),
    (
        "PHONE",
        re.compile(
            r"(?<![\w.])\+\d{1,3}[-\s]?(?:\(\d{1,4}\)[-\s]?)?\d{2,4}[-\s]\d{3,4}[-\s]?\d{3,4}(?![\d.])"
        ),
    ),
    ("PHONE", re.compile(r"(?<![\d.])\(?\d{3}\)?[-\s.]\d{3}[-\s.]\d{4}(?![\d.])")),
    (
        "NAME",
        re.compile(
            r"(?P<label>(?i:my name is|I am called|I'm called|name:)\s+)[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2}"
        ),
    ),
    ("NAME", re.compile(r"(?P<label>\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+)[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?")),
    (
        "NAME",
        re.compile(
            rf"(?P<label>(?:我叫|我的名字是|本人姓名|姓名)[:：]?\s*)[\u4e00-\u9fff]{{2,3}}?(?={_NAME_END})"
        ),
    ),
]


@dataclass
class Redaction:
    text: str
    counts: Counter[str] = field(default_factory=Counter)


def _valid_cn_id(value: str) -> bool:
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17].upper()


def redact(text: str) -> Redaction:
    """The text with each identifier replaced by `[KIND]`, and how many of each were masked."""
    counts: Counter[str] = Counter()
    for kind, pattern in _PATTERNS:

        def replace(match: re.Match[str], kind: str = kind) -> str:
            if kind == "CN_ID" and not _valid_cn_id(match.group(0)):
                return match.group(0)
            counts[kind] += 1
            label = match.groupdict().get("label") or ""  # keep "MRN: " or "我叫", mask the value
            return f"{label}[{kind}]"

        text = pattern.sub(replace, text)
    return Redaction(text, counts)


def redact_text(text: str) -> str:
    return redact(text).text


def is_local(base_url: str) -> bool:
    """A judge on this machine (loopback): nothing leaves it."""
    host = (urlsplit(base_url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def should_redact(setting: bool | None, base_url: str) -> bool:
    """teacher.redact / eval.judge.redact: explicit, or by default on for every endpoint off this machine."""
    return (not is_local(base_url)) if setting is None else setting
