"""Text normalisation for the cleanup stage: NFKC folding, whitespace collapsing, bad bytes.

Pure functions over strings (no Prefect, no I/O). Most texts arrive already clean, so each cleaner first asks
one
compiled regex whether there is anything to do, and does the work only for the texts that need it.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_BLANK_LINES = re.compile(r"\n{3,}")
# Full-width CJK punctuation and the ellipsis: NFKC would rewrite them to ASCII and teach the model
# ASCII commas in Chinese, so they are left as written (full-width letters and digits still fold).
_WIDE = "".join(
    map(
        chr,
        [
            *range(0xFF01, 0xFF10),
            *range(0xFF1A, 0xFF21),
            *range(0xFF3B, 0xFF41),
            *range(0xFF5B, 0xFF66),
            0x2026,
        ],
    )
)
# Printable characters that NFKC leaves as they are, and that nothing before them combines with (test_cleanup
# checks
# each): ASCII, the typography and symbols common in medical text, Greek letters, CJK punctuation and
# ideographs.
_STABLE_WORD = (
    "\x21-\x7e\u00b0\u00b1\u00b7\u00d7\u00f7\u0391-\u03a1\u03a3-\u03a9\u03b1-\u03c9\u2010\u2012-\u2016"
    "\u2018-\u2023\u2027\u2030\u2032\u2190-\u2193\u2212\u2248\u2264\u2265"
    "\u3001\u3002\u3008-\u3011\u3014-\u301f\u3400-\u4dbf\u4e00-\u9fff"
)
_STABLE = f"\t\n {_STABLE_WORD}"
_PLAIN = re.compile(f"[{_STABLE}{re.escape(_WIDE)}]*")  # what fold() leaves as it is
_UNSTABLE = re.compile(
    f"[^{_STABLE}{re.escape(_WIDE)}]*"
)  # the rest: a negated class scans slowly, so only where _PLAIN stops


def _tidy(word: str, lines: bool) -> re.Pattern[str]:
    """Text whose whitespace is already collapsed: words of `word` characters, one space between each two on a
    line, and (lines) one or two newlines between lines. Nested loops, not a loop over an alternation: that is
    slower."""
    line = f"{word}++(?: {word}++)*+"
    return re.compile(f"(?:{line}(?:\n\n?+{line})*+)?+" if lines else f"(?:{line})?+")


# \S is str.split's notion of a word character: one scan tells that the split-and-join would change nothing.
_TIDY_INLINE, _TIDY_BLOCK = _tidy(r"\S", lines=False), _tidy(r"\S", lines=True)
# The same with plain words only: text that clean_block returns as it is, told in one scan - most texts arrive
# like
# this, and testing a character class is twice as fast as testing \S.
_CLEAN_BLOCK = _tidy(f"[{_STABLE_WORD}{re.escape(_WIDE)}]", lines=True)


def fold(text: str) -> str:
    """NFKC (except full-width CJK punctuation, see _WIDE), then control and invisible characters out.

    Only stretches of characters outside _STABLE and _WIDE can change, and there are few (a ℃ in a paragraph):
    each
    is folded on its own, with the stable character before it (a combining accent joins its letter). NFKC
    cannot
    reach past a stable character (nothing combines with what comes before it), and the text is cut at _WIDE
    anyway.
    """
    out: list[str] = []
    pos = 0
    while (first := _PLAIN.match(text, pos).end()) < len(text):
        start = first - 1 if first and text[first - 1] not in _WIDE else first
        end = _UNSTABLE.match(text, first).end()
        out += [text[pos:start], _CONTROL.sub("", unicodedata.normalize("NFKC", text[start:end]))]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def clean_inline(text: str) -> str:
    """fold(), then all whitespace (newlines too) collapsed to single spaces."""
    if _CLEAN_BLOCK.fullmatch(
        text
    ):  # only line breaks to join (replace() returns text itself when there are none)
        return text.replace("\n\n", " ").replace("\n", " ")
    out = fold(text)
    if not _TIDY_INLINE.fullmatch(out):
        out = " ".join(out.split())
    return text if out == text else out  # the same object when unchanged: no second copy in memory


def clean_block(text: str) -> str:
    """fold(), then newlines kept (at most one blank line) and other whitespace collapsed."""
    if _CLEAN_BLOCK.fullmatch(text):
        return text
    out = fold(text)
    if not _TIDY_BLOCK.fullmatch(out):
        if "\r" in out:
            out = out.replace("\r\n", "\n").replace("\r", "\n")
        out = "\n".join(" ".join(line.split()) for line in out.split("\n"))
        out = (_BLANK_LINES.sub("\n\n", out) if "\n\n\n" in out else out).strip()
    return text if out == text else out


def undecodable(text: str) -> bool:
    """Whether text holds bytes that were not UTF-8 (kept as lone surrogates by surrogateescape).

    ASCII text cannot (isascii() reads a flag, it does not scan); otherwise encoding finds them twice as fast
    as a regex.
    """
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False
