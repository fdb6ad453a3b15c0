"""Cue patterns shared by the acuity scorer and the intent rules: validating them and compiling a class."""

from __future__ import annotations

import re
from collections.abc import Iterable


def check_cues(kind: str, owners: Iterable[tuple[str, dict[str, list[str]]]]) -> None:
    """Raise ValueError naming the section, owner, language and cue of the first pattern that does not
    compile or that matches empty text (it would fire everywhere)."""
    for owner, by_lang in owners:
        for lang, items in by_lang.items():
            for item in items:
                try:
                    compiled = re.compile(item)
                except re.error as exc:
                    raise ValueError(f"{kind} {owner} {lang} cue {item!r} does not compile: {exc}") from None
                if compiled.match(""):
                    raise ValueError(f"{kind} {owner} {lang} cue {item!r} matches empty text")


def alternation(items: list[str], lang: str) -> re.Pattern[str] | None:
    """One pattern for a list of cues, longest first; en cues are whole words (\\b first: most positions
    fail at once), zh has no word boundaries."""
    if not items:
        return None
    body = "|".join(f"(?:{item})" for item in sorted(items, key=len, reverse=True))
    return re.compile(rf"\b(?:{body})(?![a-z])" if lang == "en" else body)
