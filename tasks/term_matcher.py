"""The risk lexicon compiled for one language: find its terms and patterns in a normalized text.

One Aho-Corasick pass finds every term; each pattern is tried only where one of its literal prefixes
(read from its parse tree) begins, which gives exactly what `finditer` gives at a fraction of the cost.
Hits then pass word boundaries (en), exclusions, containment and negation. Negation first asks, from
positions computed once per text, whether any cue can stand in the clause before a hit; only then is
the clause cut and searched as the rules describe.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from re import _constants as sre  # parse trees of the lexicon's own patterns (stable since 3.11)
from re import _parser as sre_parser

import ahocorasick

from tasks.risk_lexicon import SEVERITY_RANK, Lexicon, TermGroup, normalize

_LOOK_BACK = 80  # characters before a hit in which a negation cue is looked for


class TermMatcher:
    """The lexicon compiled for one language: an automaton for terms, regexes for patterns, then word
    boundaries (en), exclusions, containment and negation."""

    def __init__(self, lexicon: Lexicon, lang: str) -> None:
        self.lang, self.rules = lang, lexicon.negation[lang]
        table: dict[str, list[TermGroup]] = {}
        for group in lexicon.groups:
            for term in getattr(group, lang):
                table.setdefault(normalize(term, lang), []).append(group)
        for phrase in lexicon.exclusions.get(lang, []):
            table.setdefault(normalize(phrase, lang), [])
        self.automaton = _automaton({key: (len(key), key, tuple(g), _rank(g)) for key, g in table.items()})
        self.patterns = [
            (self._compile(p), (g,), _rank([g])) for g in lexicon.groups for p in g.patterns.get(lang, [])
        ]
        self.patterns += [(self._compile(p), (), _rank([])) for p in lexicon.exclusion_patterns.get(lang, [])]
        self.pattern_starts, self.scan_everywhere = _prefix_automaton([rx for rx, _, _ in self.patterns])
        self.ignore = [normalize(p, lang) for p in self.rules.ignore]
        bound = "" if lang == "zh" else r"\b"
        modes = {
            mode: [normalize(c, lang) for c in cues]
            for mode, cues in (("all", self.rules.cues), ("clinical", self.rules.clinical_cues))
            if cues
        }
        self.cue = {  # one compiled alternation per negation mode
            mode: re.compile(bound + "(?:" + "|".join(map(re.escape, cues)) + ")" + bound)
            for mode, cues in modes.items()
        }
        self.cue_strings = {mode: _automaton({c: len(c) for c in cues}) for mode, cues in modes.items()}
        ends = "，。；！？,.;!?：:\n" if lang == "zh" else ".;!?:\n"
        self.clause_end = re.compile(f"[{re.escape(ends)}]")

    def _compile(self, pattern: str) -> re.Pattern[str]:
        """en patterns end at a word end (a plural s/es allowed) whatever order their alternatives take;
        the start is checked in hits(), as a leading \\b would stop re from skipping ahead fast."""
        return re.compile(pattern if self.lang == "zh" else rf"(?:{pattern})(?=(?:e?s)?\b)")

    def hits(self, norm: str, groups: frozenset[str] | None = None) -> list[tuple[int, str, TermGroup]]:
        """(start, term, group) found in a normalized text, after boundaries, exclusions, containment
        and negation; only the named groups' hits when `groups` is given (all hits still contain)."""
        found = [
            (end - n + 1, end + 1, rank, key, groups)
            for end, (n, key, groups, rank) in (self.automaton.iter(norm) if self.automaton else ())
        ]
        found += [
            (start, stop, rank, key, groups) for start, stop, key, (groups, rank) in self._pattern_spans(norm)
        ]
        if self.lang == "en":
            found = [
                (h[0], stop, *h[2:])
                for h in found
                if not (h[0] > 0 and norm[h[0] - 1].isalnum()) and (stop := _word_stop(norm, h[1])) >= 0
            ]
        out, scope = [], None
        for start, _, _, key, hit_groups in _drop_contained(found):
            for group in hit_groups:
                if groups is not None and group.name not in groups:
                    continue
                if group.negation != "none":
                    scope = scope or self._scope(norm)
                    if self._cue_nearby(norm, start, group.negation, scope) and self._negated(
                        norm, start, group.negation
                    ):
                        continue
                out.append((start, key, group))
        return out

    def _pattern_spans(self, norm: str) -> Iterator[tuple[int, int, str, tuple[tuple[TermGroup, ...], int]]]:
        """What each pattern's finditer finds, but tried only where one of its literal prefixes starts."""
        starts: dict[int, set[int]] = {}
        if self.pattern_starts is not None:
            for end, (length, indices) in self.pattern_starts.iter(norm):
                for i in indices:
                    starts.setdefault(i, set()).add(end - length + 1)
        for i in sorted(starts.keys() | self.scan_everywhere):
            regex, groups, rank = self.patterns[i]
            if i in self.scan_everywhere:
                matches: Iterable[re.Match[str]] = regex.finditer(norm)
            else:
                matches = _matches_at(regex, norm, sorted(starts[i]))
            for match in matches:
                yield match.start(), match.end(), match.group(0), (groups, rank)

    def _scope(self, norm: str) -> tuple[list[int], dict[str, list[tuple[int, int]]]]:
        """Clause ends and every occurrence (start, end) of each mode's cue strings, once per text."""
        ends = [m.start() for m in self.clause_end.finditer(norm)]
        cues = {
            mode: sorted((end - n + 1, end + 1) for end, n in auto.iter(norm))
            for mode, auto in self.cue_strings.items()
        }
        return ends, cues

    def _cue_nearby(self, norm: str, start: int, mode: str, scope: tuple[list[int], dict]) -> bool:
        """False only when no cue of `mode` can match in the clause before `start` (then _negated is False too)."""
        ends, cues = scope
        if mode not in cues:
            return False
        k = bisect_left(ends, start) - 1
        clause = max(start - _LOOK_BACK, 0, ends[k] + 1 if k >= 0 else 0)
        occurrences = cues[mode]
        for cs, ce in occurrences[bisect_left(occurrences, (clause, -1)) :]:
            if cs >= start:
                break
            if ce <= start and (self.lang == "zh" or (_edge(norm, cs, clause) and _edge(norm, ce, start))):
                return True
        return False

    def _negated(self, norm: str, start: int, mode: str) -> bool:
        cue = self.cue.get(mode)
        span = self.clause_end.split(norm[max(0, start - _LOOK_BACK) : start])[-1]
        if cue is None or not cue.search(span):  # fast path: most terms have no cue nearby
            return False
        for phrase in self.ignore:
            span = span.replace(phrase, " ")
        if self.lang == "zh":
            span = span[-self.rules.window :]
            cut = max((span.rfind(b) + len(b) for b in self.rules.breakers if b in span), default=0)
            return bool(cue.search(span[cut:]))
        tail = "".join(ch if ch.isalnum() or ch == "'" else " " for ch in span).split()[-self.rules.window :]
        cut = max((i + 1 for i, word in enumerate(tail) if word in self.rules.breakers), default=0)
        return bool(cue.search(" ".join(tail[cut:])))


def _edge(norm: str, i: int, window_edge: int) -> bool:
    """Could \\b hold at i when the searched span has an edge at window_edge? (Word chars as re sees them.)"""
    if i == window_edge or i == 0 or i == len(norm):
        return True
    before, after = norm[i - 1], norm[i]
    return (before.isalnum() or before == "_") != (after.isalnum() or after == "_")


def _automaton(table: dict[str, object]) -> ahocorasick.Automaton | None:
    if not table:
        return None
    automaton = ahocorasick.Automaton()
    for key, value in table.items():
        automaton.add_word(key, value)
    automaton.make_automaton()
    return automaton


def _rank(groups: Iterable[TermGroup]) -> int:
    """The strongest severity among a term's groups; 99 for an exclusion, which outranks every term."""
    return max((SEVERITY_RANK[g.severity] for g in groups), default=99)


def _word_stop(norm: str, stop: int) -> int:
    """End of the word after a match (allowing a plural s/es), or -1 when the match ends mid-word."""
    for suffix in ("", "s", "es"):
        after = stop + len(suffix)
        if norm.startswith(suffix, stop) and (after >= len(norm) or not norm[after].isalnum()):
            return after
    return -1


def _drop_contained(hits: list[tuple]) -> list[tuple]:
    """Drop a (start, end, rank, ...) hit inside a longer one that is an exclusion or at least as
    severe: "抑郁" inside "抗抑郁" is the drug, "中毒" inside "慢性铅中毒" is no emergency."""
    hits.sort(key=lambda h: (h[0], -h[1]))
    kept, reach = [], -1  # reach: furthest end so far; a hit ending beyond it has no container
    for i, h in enumerate(hits):
        if h[1] > reach or not any(
            c[1] >= h[1] and c[1] - c[0] > h[1] - h[0] and c[2] >= h[2] for c in hits[:i]
        ):
            kept.append(h)
        reach = max(reach, h[1])
    return kept


# ---- literal prefixes of a pattern ---------------------------------------------------------------


def _matches_at(regex: re.Pattern[str], text: str, starts: list[int]) -> Iterator[re.Match[str]]:
    """finditer's non-overlapping matches when every match must begin at one of `starts` (ascending)."""
    reach = 0
    for start in starts:
        if start >= reach and (match := regex.match(text, start)):
            reach = match.end()
            yield match


def _prefix_automaton(patterns: list[re.Pattern[str]]) -> tuple[ahocorasick.Automaton | None, set[int]]:
    """An automaton of the patterns' literal prefixes (value: length, pattern indices), and the
    patterns without such prefixes, which must be searched at every position."""
    table: dict[str, list[int]] = {}
    everywhere = set()
    for i, regex in enumerate(patterns):
        prefixes = literal_prefixes(regex)
        if prefixes is None:
            everywhere.add(i)
        for prefix in prefixes or ():
            table.setdefault(prefix, []).append(i)
    return _automaton({p: (len(p), tuple(indices)) for p, indices in table.items()}), everywhere


_PREFIX_CAP = 256  # more alternatives than this and the prefixes stop growing (shorter ones still hold)


def literal_prefixes(regex: re.Pattern[str]) -> list[str] | None:
    """Strings one of which begins every match of `regex`, from its parse tree; None when there are none
    (the pattern may start with a class like \\w, or ignore case)."""
    if regex.flags & re.IGNORECASE:
        return None
    strings, _ = _seq_prefixes(list(sre_parser.parse(regex.pattern, regex.flags)))
    if "" in strings:
        return None
    # a string that extends another adds nothing: every match it begins also begins with the shorter one
    return sorted(s for s in strings if not any(s != t and s.startswith(t) for t in strings))


def _seq_prefixes(items: list) -> tuple[set[str], bool]:
    """(prefixes, complete) of a parsed sequence; complete: they are the sequence's whole matches."""
    if not items:
        return {""}, True
    (op, av), rest = items[0], items[1:]
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):  # zero width
        return _seq_prefixes(rest)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[0] == 0:
        once = _seq_prefixes(list(av[2]) + rest) if av[1] == 1 else (_seq_prefixes(list(av[2]))[0], False)
        skip = _seq_prefixes(rest)
        return once[0] | skip[0], once[1] and skip[1]
    head, whole = _item_prefixes(op, av)
    if not whole or "" in head:
        return head, False
    tail, tail_whole = _seq_prefixes(rest)
    if len(head) * len(tail) > _PREFIX_CAP:
        return head, False
    return {a + b for a in head for b in tail}, tail_whole


def _item_prefixes(op: object, av: object) -> tuple[set[str], bool]:
    if op is sre.LITERAL:
        return {chr(av)}, True
    if op is sre.IN and all(k in (sre.LITERAL, sre.RANGE) for k, _ in av):
        chars = "".join(
            chr(v) if k is sre.LITERAL else "".join(map(chr, range(v[0], v[1] + 1))) for k, v in av
        )
        return (set(chars), True) if len(chars) <= 32 else ({""}, False)
    if op is sre.SUBPATTERN and not av[1] & re.IGNORECASE:
        return _seq_prefixes(list(av[3]))
    if op is sre.ATOMIC_GROUP:
        return _seq_prefixes(list(av))
    if op is sre.BRANCH:
        found = [_seq_prefixes(list(branch)) for branch in av[1]]
        return set().union(*(f[0] for f in found)), all(f[1] for f in found)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):  # at least once
        body, whole = _seq_prefixes(list(av[2]))
        return body, whole and av[0] == av[1] == 1
    return {""}, False
