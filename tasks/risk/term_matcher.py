"""The risk lexicon compiled for one language: find its terms and patterns in a normalized text.

One Aho-Corasick pass finds every term, every literal prefix of a pattern (read from its parse tree) and
every negation cue. Each pattern is then tried only where one of its prefixes begins, which gives
exactly what `finditer` gives at a fraction of the cost. Hits then pass word boundaries (en), exclusions,
containment and negation; a hit with no cue ending in the window before it is not negated, and only for
the others is the clause cut and searched as the rules describe. When only some groups' hits are
wanted (a row's reasoning and answer), the pass uses an automaton cut to what those hits depend on.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from operator import itemgetter

import ahocorasick

from tasks.risk.lexicon import (
    SEVERITY_RANK,
    Lexicon,
    TermGroup,
    anchored_at_start,
    literal_prefixes,
    normalize,
    whole_matches,
)

_LOOK_BACK = 80  # characters before a hit in which a negation cue is looked for
_NOT_IN_WORD = re.compile(r"[^\w']|_")  # what splits en words for negation: not a letter, digit or '

# A hit before containment: (start, end, rank, key, groups, container rank); an exclusion has no groups.
# rank: how strong the hit is when another may contain it; container rank: how strong it is when it
# contains another (0 for groups that contain nothing, see TermGroup.contains).
Hit = tuple[int, int, int, str, tuple[TermGroup, ...], int]


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
        self.patterns = [
            (self._compile(p), (g,), _rank([g]), _container_rank([g]))
            for g in lexicon.groups
            for p in g.patterns.get(lang, [])
        ]
        self.patterns += [
            (self._compile(p), (), _rank([]), _container_rank([]))
            for p in lexicon.exclusion_patterns.get(lang, [])
        ]
        self.group_ranks = {g.name: _rank([g]) for g in lexicon.groups}
        self.keep_inside = frozenset(g.name for g in lexicon.groups if g.keep_inside)
        self.pattern_texts = [whole_matches(rx) for rx, *_ in self.patterns]  # None: too many to list
        # patterns that match only at the text's start ("^(?:draft|write) ..."): tried there alone, so
        # their prefixes (short verbs, found inside every other word) stay out of the automaton
        self.anchored = tuple(i for i, (rx, *_) in enumerate(self.patterns) if anchored_at_start(rx))
        prefixes, self.scan_everywhere = _pattern_prefixes(
            [None if i in self.anchored else rx for i, (rx, *_) in enumerate(self.patterns)]
        )
        # what an anchored pattern's match begins with (None: anything), checked before trying it
        self.anchored_heads = {i: _heads(self.patterns[i][0]) for i in self.anchored}
        self.ignore = [normalize(p, lang) for p in self.rules.ignore]
        # finds any ignored phrase: most clauses hold none, and then need no replacing
        self.ignored = re.compile("|".join(map(re.escape, self.ignore))) if self.ignore else None
        bound = "" if lang == "zh" else r"\b"
        cues = {
            mode: [normalize(c, lang) for c in strings]
            for mode, strings in (("all", self.rules.cues), ("clinical", self.rules.clinical_cues))
            if strings
        }
        self.cue = {  # one compiled alternation per negation mode
            mode: re.compile(bound + "(?:" + "|".join(map(re.escape, strings)) + ")" + bound)
            for mode, strings in cues.items()
        }
        ends = "，。；！？,.;!?：:\n" if lang == "zh" else ".;!?:\n"
        self.clause_end = re.compile(f"[{re.escape(ends)}]")
        # one automaton for terms, pattern prefixes and cues; value: (length, key, groups or None when
        # no term, rank, container rank, indices of the patterns it begins, negation modes it is a cue of)
        self.entries = {}
        for key in {**table, **prefixes, **{cue: None for strings in cues.values() for cue in strings}}:
            groups, modes = table.get(key), tuple(mode for mode, strings in cues.items() if key in strings)
            term = (
                (tuple(groups), _rank(groups), _container_rank(groups))
                if groups is not None
                else (None, 0, 0)
            )
            self.entries[key] = (len(key), key, *term, prefixes.get(key, ()), modes)
        self.automaton = _automaton(self.entries)
        self._cut: dict[frozenset[str], ahocorasick.Automaton | None] = {}  # see _automaton_for
        self._cut_anchored: dict[frozenset[str], tuple[int, ...]] = {}  # the anchored patterns it keeps

    def _compile(self, pattern: str) -> re.Pattern[str]:
        """en patterns end at a word end (a plural s/es allowed) whatever order their alternatives take;
        the start is checked in hits(), as a leading \\b would stop re from skipping ahead fast."""
        return re.compile(pattern if self.lang == "zh" else rf"(?:{pattern})(?=(?:e?s)?\b)")

    def hits(self, norm: str, groups: frozenset[str] | None = None) -> list[tuple[int, str, TermGroup]]:
        """(start, term, group) found in a normalized text, after boundaries, exclusions, containment
        and negation; only the named groups' hits when `groups` is given (all hits still contain)."""
        automaton = self.automaton if groups is None else self._automaton_for(groups)
        terms, starts, cues = self._scan(
            norm, automaton, None if groups is None else self._cut_anchored[groups]
        )
        patterns = self._pattern_spans(norm, starts) if starts or self.scan_everywhere else []
        if patterns and groups is not None and any(g.name in groups for *_, gs, _ in patterns for g in gs):
            # what may contain a match of their patterns is not known in advance: scan with everything
            terms, starts, _ = self._scan(norm, self.automaton)
            patterns = self._pattern_spans(norm, starts)
        found = terms + patterns if patterns else terms
        if self.lang == "en" and found:
            found = _whole_words(norm, found)
        if len(found) > 1:
            kept = _drop_contained(found)  # sorts `found` by start too
            if self.keep_inside and len(kept) < len(found):  # keep-inside hits survive containment
                inside = set(map(id, kept))
                keep = self.keep_inside
                kept = [h for h in found if id(h) in inside or (h[4] and all(g.name in keep for g in h[4]))]
            found = kept
        out = []
        for start, _, _, key, hit_groups, _ in found:
            for group in hit_groups:
                if groups is not None and group.name not in groups:
                    continue
                mode = group.negation
                near = mode != "none" and cues and _cue_before(cues.get(mode), start)
                if not (near and self._negated(norm, start, mode)):
                    out.append((start, key, group))
        return out

    def _automaton_for(self, groups: frozenset[str]) -> ahocorasick.Automaton | None:
        """The automaton cut to what the hits of `groups` depend on: their own terms and patterns, the
        cues, and what may contain one of their terms - ranked as high and, for a term or a pattern with
        few enough matches, holding its text (over a plural s/es too). A long text's scan spends most of
        its time on the other terms (in zh, on the many first characters they add). Built once per set."""
        if groups not in self._cut:
            own = {key for key, e in self.entries.items() if any(g.name in groups for g in e[2] or ())}
            finder = _automaton(dict.fromkeys(own, None))
            low = min((rank for name, rank in self.group_ranks.items() if name in groups), default=99)
            tails = ("s", "es") if self.lang == "en" else ("",)

            def holds_own(text: str) -> bool:
                return finder is not None and any(any(finder.iter(text + tail)) for tail in tails)

            texts = self.pattern_texts
            kept = {
                i
                for i, (_, gs, _, contains) in enumerate(self.patterns)
                if any(g.name in groups for g in gs)
                or (contains >= low and (texts[i] is None or any(map(holds_own, texts[i]))))
            }
            cut = {}
            for key, (n, _, term_groups, rank, contains, patterns, modes) in self.entries.items():
                patterns = tuple(i for i in patterns if i in kept)
                if term_groups is not None and key not in own and not (contains >= low and holds_own(key)):
                    term_groups = None  # cannot contain their hits: at most a prefix or a cue here
                if term_groups is not None or patterns or modes:
                    cut[key] = (n, key, term_groups, rank, contains, patterns, modes)
            self._cut[groups] = _automaton(cut)
            self._cut_anchored[groups] = tuple(i for i in self.anchored if i in kept)
        return self._cut[groups]

    def _scan(
        self, norm: str, automaton: ahocorasick.Automaton | None, anchored: tuple[int, ...] | None = None
    ) -> tuple[list[Hit], dict[int, list[int]], dict[str, list[int]]]:
        """One automaton pass: the term hits, where each pattern's literal prefixes begin, and where
        each negation mode's cues end (en: not where a letter or digit follows one, as \\b rules out).
        Anchored patterns (all of them, or those given) begin at 0 or nowhere."""
        found: list[Hit] = []
        starts: dict[int, list[int]] = {}
        cues: dict[str, list[int]] = {}
        en = self.lang == "en"
        for end, (n, key, groups, rank, contains, patterns, modes) in (
            automaton.iter(norm) if automaton else ()
        ):
            if groups is not None:
                found.append((end - n + 1, end + 1, rank, key, groups, contains))
            if patterns:  # this and cues are rarer than terms
                for i in patterns:
                    starts.setdefault(i, []).append(end - n + 1)
            if modes and not (en and key[-1].isalnum() and norm[end + 1 : end + 2].isalnum()):
                for mode in modes:
                    cues.setdefault(mode, []).append(end + 1)
        for i in self.anchored if anchored is None else anchored:
            heads = self.anchored_heads[i]
            if heads is None or norm.startswith(heads):
                starts[i] = [0]
        return found, starts, cues

    def _pattern_spans(self, norm: str, starts: dict[int, list[int]]) -> list[Hit]:
        """What each pattern's finditer finds where a word may start (en), tried only at its prefixes.

        A match that starts mid-word is dropped later but still ends finditer's scan where it ends, so
        it is looked for too - unless no word start follows it among the pattern's prefixes."""
        spans = []
        for i in sorted(starts.keys() | self.scan_everywhere if self.scan_everywhere else starts):
            regex, groups, rank, contains = self.patterns[i]
            if i in self.scan_everywhere:
                matches: Iterable[re.Match[str]] = regex.finditer(norm)
            else:
                candidates = starts[i]
                candidates.sort()
                if self.lang == "en":
                    while candidates and candidates[-1] > 0 and norm[candidates[-1] - 1].isalnum():
                        candidates.pop()
                matches = _matches_at(regex, norm, candidates)
            spans += [(m.start(), m.end(), rank, m.group(0), groups, contains) for m in matches]
        return spans

    def _negated(self, norm: str, start: int, mode: str) -> bool:
        cue = self.cue.get(mode)
        span = self.clause_end.split(norm[max(0, start - _LOOK_BACK) : start])[-1]
        if cue is None or not cue.search(span):
            return False
        if self.ignored and self.ignored.search(span):
            for phrase in self.ignore:
                span = span.replace(phrase, " ")
        if self.lang == "zh":
            span = span[-self.rules.window :]
            cut = max((span.rfind(b) + len(b) for b in self.rules.breakers if b in span), default=0)
            return bool(cue.search(span[cut:]))
        tail = _NOT_IN_WORD.sub(" ", span).split()[-self.rules.window :]
        cut = max((i + 1 for i, word in enumerate(tail) if word in self.rules.breakers), default=0)
        return bool(cue.search(" ".join(tail[cut:])))


def _cue_before(ends: list[int] | None, start: int) -> bool:
    """Whether a cue ends (ascending `ends`) in the window before `start`; if not, none is in its clause."""
    k = bisect_right(ends, start) if ends else 0
    return k > 0 and ends[k - 1] > start - _LOOK_BACK


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


def _container_rank(groups: Iterable[TermGroup]) -> int:
    """The rank a hit has as a container: that of its groups that contain (0: none does); 99 for an
    exclusion."""
    groups = list(groups)
    return _rank(g for g in groups if g.contains) if any(g.contains for g in groups) or not groups else 0


def _whole_words(norm: str, found: list[Hit]) -> list[Hit]:
    """The en hits that start at a word start, each extended over a plural s/es to its word end."""
    size = len(norm)
    return [
        (start, stop, rank, key, groups, contains)
        for start, end, rank, key, groups, contains in found
        if not (start > 0 and norm[start - 1].isalnum())
        and (stop := end if end == size or not norm[end].isalnum() else _word_stop(norm, end)) >= 0
    ]


def _word_stop(norm: str, stop: int) -> int:
    """End of the word after a match (allowing a plural s/es), or -1 when the match ends mid-word."""
    for suffix in ("", "s", "es"):
        after = stop + len(suffix)
        if norm.startswith(suffix, stop) and (after >= len(norm) or not norm[after].isalnum()):
            return after
    return -1


def _drop_contained(hits: list[Hit]) -> list[Hit]:
    """Drop a hit inside a longer one that is an exclusion or at least as severe: "抑郁" inside "抗抑郁"
    is the drug, "中毒" inside "慢性铅中毒" is no emergency."""
    hits.sort(key=itemgetter(1), reverse=True)  # two stable sorts: by start, the longest first
    hits.sort(key=itemgetter(0))
    kept, reach = [], -1  # reach: furthest end so far; a hit ending beyond it has no container
    for i, hit in enumerate(hits):
        if hit[1] > reach:
            reach = hit[1]
        elif _contained(hit, hits[:i]):
            continue
        kept.append(hit)
    return kept


def _contained(hit: Hit, before: list[Hit]) -> bool:
    """Whether a hit that starts no later is longer, ends no sooner and, as a container, ranks at least as
    high."""
    start, end, rank = hit[0], hit[1], hit[2]
    return any(other[1] >= end and other[1] - other[0] > end - start and other[5] >= rank for other in before)


# ---- patterns tried only where one of their literal prefixes begins ----------------------------------


def _matches_at(regex: re.Pattern[str], text: str, starts: list[int]) -> list[re.Match[str]]:
    """finditer's non-overlapping matches when every match must begin at one of `starts` (ascending)."""
    matches, reach = [], 0
    for start in starts:
        if start >= reach and (match := regex.match(text, start)):
            reach = match.end()
            matches.append(match)
    return matches


def _heads(regex: re.Pattern[str]) -> tuple[str, ...] | None:
    prefixes = literal_prefixes(regex)
    return tuple(prefixes) if prefixes else None


def _pattern_prefixes(
    patterns: list[re.Pattern[str] | None],
) -> tuple[dict[str, tuple[int, ...]], set[int]]:
    """The patterns' literal prefixes (each with the indices of the patterns it begins), and the
    patterns without such prefixes, which must be searched at every position."""
    table: dict[str, list[int]] = {}
    everywhere = set()
    for i, regex in enumerate(patterns):
        if regex is None:  # tried elsewhere (anchored at the start)
            continue
        prefixes = literal_prefixes(regex)
        if prefixes is None:
            everywhere.add(i)
        for prefix in prefixes or ():
            table.setdefault(prefix, []).append(i)
    return {p: tuple(indices) for p, indices in table.items()}, everywhere
