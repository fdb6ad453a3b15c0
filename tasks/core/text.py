"""Text facts every stage agrees on: where a response's <think> block ends, and which language a text is in.

split_think("<think>chest pain: rule out MI</think>Call 120 now.")  # ThinkSplit(think=..., answer=...)
detect_lang("患者胸痛两小时", "")  # "zh"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_THINK_TAG = re.compile(r"</?think>")
_HAN_RUN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN_ONLY = bytes(
    b if chr(b).isascii() and chr(b).isalpha() else ord(" ") for b in range(256)
)  # translate table


@dataclass(frozen=True)
class ThinkSplit:
    """A response cut at its reasoning: the think text and the answer, both without tags, stripped."""

    think: str
    answer: str
    unclosed: bool = False  # <think> opened and never closed: `think` is what followed it

    @property
    def has_think(self) -> bool:
        """A closed, non-empty reasoning block."""
        return bool(self.think) and not self.unclosed


def split_think(text: str) -> ThinkSplit:
    """'<think>T</think> A' or 'T</think> A' (the chat template opened the tag in the prompt) -> (T, A).

    Stray tags left in either part are removed; text without tags is all answer; an opening tag that
    never closes leaves the answer before it and marks the split unclosed.
    """
    open_i, close_i = text.find("<think>"), text.find("</think>")
    if close_i < 0:
        if open_i < 0:
            return ThinkSplit("", text.strip())
        return ThinkSplit(text[open_i + len("<think>") :].strip(), text[:open_i].strip(), unclosed=True)
    has_open = 0 <= open_i < close_i
    think = text[open_i + len("<think>") if has_open else 0 : close_i]
    rest = (text[:open_i] if has_open else "") + text[close_i + len("</think>") :]
    return ThinkSplit(_THINK_TAG.sub("", think).strip(), _THINK_TAG.sub("", rest).strip())


def detect_lang(question: str, answer: str = "") -> str:
    """'zh' when Han characters outnumber Latin words (a word carries about what a character does), else
    'en'."""
    if question.isascii() and answer.isascii():  # isascii() reads a flag, it does not scan
        return "en"
    sample = question[:1000] + "\n" + answer[:1000]
    latin = len(sample.encode("ascii", "replace").translate(_LATIN_ONLY).split())  # runs of A-Z a-z
    han = 0
    for run in _HAN_RUN.finditer(sample):  # counted only until they reach the Latin words
        han += run.end() - run.start()
        if han >= latin:
            return "zh"
    return "en"
