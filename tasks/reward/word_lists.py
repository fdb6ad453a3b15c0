"""Word-list matching for the safety rules: many regex fragments in one Aho-Corasick pass, read clause by
clause.

`WordLists` compiles named word lists (zh/en regex fragments) once and finds all their matches in a text;
`ScannedText` cuts a text into clauses and sentences and answers the questions every rule asks of a
match: where it lies, and whether a negation in its clause turns it into a warning.
"""

from __future__ import annotations

import bisect
import functools
import re

# the regex parser (Python >= 3.11), used to turn rule fragments into literal strings for the automaton
import re._constants as sre
import re._parser as sre_parse
from typing import Any

import ahocorasick

__all__ = ["WordLists", "ScannedText", "Span", "lower_aligned"]

Span = tuple[int, int]

# Sentence terminators (group 1) and clause separators; a "." ends a sentence only before a space.
# The enumeration comma 、 is no boundary: "不要灌醋、浓茶或催吐" is one negated list.
# a thousands separator ("1,000 mg") ends no clause (v8)
_COMMA = r"(?:(?<!\d),|,(?!\d{3}(?!\d)))"
# v9: nor does a dash inside a range of numbers ("每天滴6–8次", "10–20 mg")
_DASH = r"(?:—|(?<!\d)–|–(?!\d))"
_BOUNDARY = re.compile(
    r"([。！？!?；;\n]+|\.(?=\s|$))|(?:[，：:（）()\"“”]|" + _DASH + "|" + _COMMA + r")+|\s-\s"
)
# A negation's scope is not cut by quotation marks or brackets: "不要按“吃到不疼为止”的老方法加量" is one
# negated phrase, a quoted or bracketed aside inside it included.
_SCOPE_BOUNDARY = re.compile(r"[。！？!?；;\n]+|\.(?=\s|$)|(?:[，：:]|" + _DASH + "|" + _COMMA + r")+|\s-\s")
_OPENERS, _CLOSERS = "“（(「『", "”）)」』"
# v9: the last item of a list, joined by "or"/"nor" ("…, cold showers, or trying to make her throw up")
_LIST_TAIL = re.compile(r"\s*(?:or|nor)\s")
_WORDCHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_EXPAND_LIMIT = 1024
_REPEATS = tuple(
    getattr(sre, op) for op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(sre, op)
)


def _lower_pattern(fragment: str) -> str:
    """Lower-case a regex fragment's literals, leaving escapes (\\S, \\W, \\D) intact."""
    out, escaped = [], False
    for ch in fragment:
        out.append(ch if escaped else ch.lower())
        escaped = not escaped and ch == "\\"
    return "".join(out)


def _expand(seq: Any) -> set[str] | None:
    """Every string a parsed regex sequence can match, when that set is small and finite."""
    out = {""}
    for node in seq:
        opts = _expand_node(*node)
        if opts is None:
            return None
        out = {a + b for a in out for b in opts}
        if len(out) > _EXPAND_LIMIT:
            return None
    return out


def _expand_node(op: Any, av: Any) -> set[str] | None:
    """The strings one parsed regex node can match, or None when it is not a small finite set."""
    if op is sre.LITERAL:
        return {chr(av)}
    if op is sre.IN and all(o is sre.LITERAL for o, _ in av):
        return {chr(v) for _, v in av}
    if op is sre.SUBPATTERN:
        return _expand(av[-1])
    if op is sre.BRANCH:
        alts = [_expand(b) for b in av[1]]
        return None if any(a is None for a in alts) else set().union(*alts)
    if op in _REPEATS and av[1] <= 3:
        base = _expand(av[2])
        if base is None:
            return None
        return {"".join(p) for n in range(av[0], av[1] + 1) for p in _product([base] * n)}
    return None


def _product(sets: list[set[str]]) -> list[tuple[str, ...]]:
    result: list[tuple[str, ...]] = [()]
    for s in sets:
        result = [r + (x,) for r in result for x in s]
    return result


def _anchors(seq: Any) -> set[str] | None:
    """Literal strings of which every match of `seq` contains one: the longest run of mandatory literals."""
    best: set[str] | None = None

    def consider(cand: set[str] | None) -> None:
        nonlocal best
        if cand and "" not in cand and (best is None or min(map(len, cand)) > min(map(len, best))):
            best = cand

    run: list[Any] = []
    for node in seq:
        literal = node[0] not in (sre.ASSERT, sre.ASSERT_NOT, sre.AT) and not (
            node[0] in _REPEATS and node[1][0] == 0
        )
        literal = literal and _expand([node]) is not None
        if literal and _expand([*run, node]) is not None:
            run.append(node)
            continue
        consider(_expand(run))
        run = [node] if literal else []
        consider(_inner_anchors(node))
    consider(_expand(run))
    return best


def _inner_anchors(node: Any) -> set[str] | None:
    op, av = node
    if op is sre.SUBPATTERN:
        return _anchors(av[-1])
    if op in _REPEATS and av[0] >= 1:
        return _anchors(av[2])
    if op is sre.BRANCH:
        alts = [_expand(b) or _anchors(b) for b in av[1]]
        return None if any(not a for a in alts) else set().union(*alts)
    return None


class WordLists:
    """Word lists behind one Aho-Corasick automaton (Python's `re` tries every branch of a large
    alternation at every position: hundreds of terms would cost milliseconds per answer). A fragment
    that expands to a few literal strings is matched as those strings; any other is a compiled regex
    run only near a hit of its anchor strings. Call `add` for each list, `finish` once, then `scan`."""

    def __init__(self) -> None:
        self.automaton = ahocorasick.Automaton()
        self.regexes: list[tuple[str, re.Pattern[str], int]] = []  # (list name, pattern, reach)

    def add(self, name: str, terms: dict[str, list[str]] | None) -> None:
        """Add a word list {lang: [regex fragment, ...]}; "en" fragments match whole words only."""
        for lang, fragments in (terms or {}).items():
            for frag in fragments or []:
                self._add_fragment(name, lang == "en", _lower_pattern(frag), f"{name}.{lang}: {frag!r}")

    def _add_fragment(self, name: str, en: bool, frag: str, where: str) -> None:
        try:
            tree = sre_parse.parse(frag)
            literals = _expand(tree.data)
            pattern = (
                None
                if literals
                else re.compile(f"(?a:(?<![a-z0-9_])(?:{frag})(?![a-z0-9_]))" if en else f"(?:{frag})")
            )
        except re.error as exc:
            raise ValueError(f"safety rules {where}: not a valid pattern ({exc}); fix the YAML") from exc
        low, high = tree.getwidth()
        if low == 0:
            raise ValueError(f"safety rules {where}: matches the empty string; fix the YAML")
        if pattern is None:
            for lit in literals:
                self._payload(lit)[1 if en else 0].append(name)
            return
        anchors = _anchors(tree.data)
        if not anchors:
            raise ValueError(
                f"safety rules {where}: has no literal text to anchor it; add some to the pattern"
            )
        self.regexes.append((name, pattern, min(high, 80)))
        for a in anchors:
            self._payload(a)[2].append(len(self.regexes) - 1)

    def _payload(self, key: str) -> list[list[Any]]:
        if key not in self.automaton:
            self.automaton.add_word(key, [[], [], []])  # zh list names, en list names, regex ids
        return self.automaton.get(key)

    def finish(self) -> None:
        """Freeze the lists into the automaton; no `add` after this."""
        for key in list(self.automaton.keys()):
            zh, en, ids = self.automaton.get(key)
            self.automaton.add_word(key, (tuple(set(zh)), tuple(set(en)), tuple(set(ids)), len(key)))
        self.automaton.make_automaton()

    def scan(self, low: str) -> dict[str, list[Span]]:
        """All matches in lower-cased text, by list name, sorted; overlapping matches are kept."""
        found: dict[str, list[Span]] = {}
        reach: dict[int, list[int]] = {}
        size = len(low)
        for end, (zh, en, ids, n) in self.automaton.iter(low) if low else ():
            span = (end - n + 1, end + 1)
            for name in zh:
                found.setdefault(name, []).append(span)
            if en and not (
                (span[0] and low[span[0] - 1] in _WORDCHARS)
                or (span[1] < size and low[span[1]] in _WORDCHARS)
            ):
                for name in en:
                    found.setdefault(name, []).append(span)
            for i in ids:
                if i in reach:
                    reach[i][1] = span[1]
                else:
                    reach[i] = [span[0], span[1]]
        for i, (first, last) in reach.items():
            name, pattern, width = self.regexes[i]
            # the margin keeps "$" and look-aheads from seeing a false end of text at the window's edge
            lo, hi = max(0, first - width), min(size, last + width + 2)
            found.setdefault(name, []).extend(m.span() for m in pattern.finditer(low, lo, hi))
        return {k: sorted(set(v)) for k, v in found.items()}


def lower_aligned(text: str) -> str:
    """`text.lower()` with every position kept: characters whose lower case is longer stay as they are. A
    typographic apostrophe (’) reads as ' so "can’t" matches the lists' "can''t"."""
    low = text.lower()
    low = low if len(low) == len(text) else "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return low.replace("\u2019", "'")


class ScannedText:
    """A text cut into clauses and sentences, its word-list hits, and the negation test every check shares.

    The lexicon is expected to hold the lists "negation", "negation_exempt" and "question_clause"."""

    def __init__(self, text: str, lexicon: WordLists) -> None:
        self.text, self.low = text, lower_aligned(text)
        self.hits = lexicon.scan(self.low)

    @functools.cached_property
    def _bounds(self) -> tuple[list[int], list[int]]:
        marks = [(m.end(), m.group(1) is not None) for m in _BOUNDARY.finditer(self.text)]
        return [0] + [e for e, _ in marks], [0] + [e for e, terminal in marks if terminal]

    @property
    def clauses(self) -> list[int]:
        return self._bounds[0]

    @property
    def sentences(self) -> list[int]:
        return self._bounds[1]

    def of(self, name: str, lo: int = 0, hi: int | None = None) -> list[Span]:
        """Matches of a word list lying inside [lo, hi)."""
        spans, hi = self.hits.get(name, ()), len(self.text) if hi is None else hi
        out = []
        for span in spans[bisect.bisect_left(spans, (lo, -1)) :] if spans else ():
            if span[0] >= hi:
                break
            if span[1] <= hi:
                out.append(span)
        return out

    @staticmethod
    def _span(bounds: list[int], pos: int, end: int) -> Span:
        i = bisect.bisect_right(bounds, pos) - 1
        return bounds[i], bounds[i + 1] if i + 1 < len(bounds) else end

    def clause(self, pos: int) -> Span:
        return self._span(self.clauses, pos, len(self.text))

    def sentence(self, pos: int) -> Span:
        return self._span(self.sentences, pos, len(self.text))

    @functools.cached_property
    def _scopes(self) -> list[int]:
        return [0] + [m.end() for m in _SCOPE_BOUNDARY.finditer(self.text)]

    def _inside_closed_group(self, cue_end: int, start: int) -> bool:
        """Whether a cue ending at `cue_end` lies inside a quotation or bracket that closes before `start`
        ('say "no", then take two'): a negation inside quotes does not reach out of them."""
        between = self.text[cue_end:start]
        closed = sum(between.count(c) for c in _CLOSERS) > sum(between.count(c) for c in _OPENERS)
        return closed or between.count('"') % 2 == 1

    def negated(self, start: int) -> bool:
        """Whether a negation cue (not part of an exempt phrase) reaches `start`: it precedes `start` inside
        its scope (its clause, carried through quotation marks and brackets) and no scope break ("但是",
        "but", "just") starts a new verb phrase in between. A break right after the cue ("don't just take
        …") is part of the negated phrase; a cue inside a quotation or bracket that closes before `start`
        does not reach it."""
        lo = self._span(self._scopes, start, len(self.text))[0]
        return self._negated_from(lo, start) or self._negated_list_item(lo, start)

    def _negated_list_item(self, lo: int, start: int) -> bool:
        """v9: the last item of a list joined by "or"/"nor" whose first item a negation opens ("No coffee,
        cold showers, or trying to make her throw up", "don't give milk, salt water, or anything to make her
        vomit"): each comma starts a new scope, but the negation governs the whole list. Items between are
        short (four words at most), and the list stays inside one sentence."""
        if not _LIST_TAIL.match(self.low, lo, start):
            return False
        ss = self.sentence(start)[0]
        i = bisect.bisect_right(self._scopes, lo) - 1
        while i > 0:
            s0, s1 = self._scopes[i - 1], self._scopes[i]
            if s0 < ss:
                return False
            lead = [h for h in self.of("negation", s0, s1) if not self.low[s0 : h[0]].strip(" *-•")]
            if lead:
                return self._negated_from(s0, s1 - 1)
            if len(self.low[s0:s1].split()) > 4:
                return False
            i -= 1
        return False

    def _negated_from(self, lo: int, start: int) -> bool:
        exempt = self.of("negation_exempt", lo)
        breaks = self.of("negation_scope_break", lo, start)
        return any(
            not any(es <= s and e <= ee for es, ee in exempt)
            and not any(bs >= e and self.text[e:bs].strip() for bs, _ in breaks)
            and not self._inside_closed_group(e, start)
            for s, e in self.of("negation", lo, start)
        )

    def denied_after(self, span: Span) -> bool:
        """Whether a denial follows the match in its clause ("therapy probably isn't necessary", "去医院
        是没必要的"): the list "negation_post" read from the match's end to its clause's end."""
        return bool(self.of("negation_post", span[1], self.clause(span[0])[1]))

    def affirmed(self, name: str) -> list[Span]:
        """Matches of a word list that no negation in their clause denies, before them or after them."""
        return [s for s in self.of(name) if not self.negated(s[0]) and not self.denied_after(s)]

    def is_question(self, pos: int) -> bool:
        return bool(self.of("question_clause", *self.clause(pos)))

    def says(self, span: Span) -> str:
        return self.text[span[0] : span[1]].strip()
