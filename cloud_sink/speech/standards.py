"""Service-standard checks on a transcript: required phrases (anywhere, or within a time of the
contact's start) and forbidden ones, morphology-aware and tolerant of recognition errors.

Rules:
- Words are normalised before comparing: lower case, ``ё`` as ``е``, punctuation dropped; a
  Cyrillic word becomes its pymorphy3 lemma (``покупку`` -> ``покупка``), a Latin one loses a
  regular English ending (``recommended`` -> ``recommend``, ``thanks`` -> ``thank``).
- A phrase of n words is compared with every run of n-1, n and n+1 heard words (a recogniser
  splits and merges words) by rapidfuzz's ratio, of the lemmas and of the words as said (a
  misheard word may have no lemma of its own), the better of the two; a run scoring at
  least ``fuzzy_threshold`` is a match, kept with its start and end in the clip, the words
  heard and the score. Overlapping matches of one rule keep the best.
- A required rule passes when one match starts within ``within_s`` of the contact's start
  (``offset_s``: where in the clip the contact starts), or anywhere without a limit; a
  forbidden rule passes when nothing matches. Every failing rule gives its tag.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from rapidfuzz import fuzz

from cloud_sink.speech.config import Rule, RulesFile
from cloud_sink.speech.engines import Word

TOKEN: Final = re.compile(r"[\w'-]+", re.UNICODE)
_CYRILLIC: Final = re.compile(r"[а-я]")
_ENGLISH_ENDINGS: Final = ("ing", "ed", "es", "s")
_morph_lock = threading.Lock()
_morph: Any = None


def _analyzer() -> Any:
    global _morph  # noqa: PLW0603 - one dictionary (tens of MB) per process, loaded on first use
    with _morph_lock:
        if _morph is None:
            import pymorphy3

            _morph = pymorphy3.MorphAnalyzer(lang="ru")
        return _morph


def plain(word: str) -> str:
    return word.lower().replace("ё", "е").strip("'-")


@lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    """The normalised form of one word (module rules)."""
    w = plain(word)
    if not w:
        return w
    if _CYRILLIC.search(w):
        return str(_analyzer().parse(w)[0].normal_form).replace("ё", "е")
    for ending in _ENGLISH_ENDINGS:
        if w.endswith(ending) and len(w) - len(ending) >= 3 and not w.endswith("ss"):
            w = w[: -len(ending)]
            break
    if w.endswith("e") and len(w) > 3:  # welcome/welcomed, hope/hoping
        w = w[:-1]
    return w


def tokens(text: str) -> list[str]:
    return [lemma(t) for t in TOKEN.findall(text) if lemma(t)]


@dataclass(frozen=True, slots=True)
class Match:
    rule: str
    phrase: str
    heard: str
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True, slots=True)
class Outcome:
    rule: Rule
    passed: bool
    matches: tuple[Match, ...]

    @property
    def tag(self) -> str | None:
        return None if self.passed else self.rule.fail_tag


def words_of(text: str, words: Sequence[Word]) -> list[Word]:
    """The timed words, or (an engine without timings) the text's words at time 0."""
    if words:
        return list(words)
    return [Word(t, 0.0, 0.0) for t in TOKEN.findall(text)]


def find(rule: Rule, heard: Sequence[Word], threshold: float) -> list[Match]:
    """Every match of ``rule``'s phrases among ``heard`` (overlaps: the best one)."""
    norm = [lemma(w.text) for w in heard]
    raw = [plain(w.text) for w in heard]
    found: list[tuple[float, int, int, Match]] = []  # (-score, first word, end word, match)
    for phrase in rule.phrases:
        target = " ".join(tokens(phrase))
        said = " ".join(plain(t) for t in TOKEN.findall(phrase))
        if not target:
            continue
        n = len(target.split())
        for size in sorted({max(1, n - 1), n, n + 1}):
            for i in range(len(heard) - size + 1):
                run = [t for t in norm[i : i + size] if t]
                if not run:
                    continue
                score = max(
                    fuzz.ratio(target, " ".join(run)), fuzz.ratio(said, " ".join(raw[i : i + size]))
                )
                if score >= threshold:
                    match = Match(
                        rule.name,
                        phrase,
                        " ".join(w.text for w in heard[i : i + size]),
                        heard[i].start_s,
                        heard[i + size - 1].end_s,
                        round(score, 1),
                    )
                    found.append((-score, i, i + size, match))  # fmt: skip
    best: list[tuple[int, int, Match]] = []
    for _, first, end, match in sorted(found, key=lambda f: (f[0], f[1], f[2] - f[1])):
        if all(end <= b_first or first >= b_end for b_first, b_end, _ in best):
            best.append((first, end, match))
    return [m for _, _, m in sorted(best, key=lambda b: b[0])]


def check(
    rules: RulesFile, text: str, words: Sequence[Word], offset_s: float = 0.0
) -> list[Outcome]:
    """Each rule's outcome on one transcript (module rules)."""
    heard = words_of(text, words)
    outcomes: list[Outcome] = []
    for rule in rules.rules:
        matches = find(rule, heard, rules.fuzzy_threshold)
        if rule.kind == "forbidden":
            passed = not matches
        elif rule.within_s is None:
            passed = bool(matches)
        else:
            limit = offset_s + rule.within_s
            passed = any(m.start_s <= limit for m in matches)
        outcomes.append(Outcome(rule, passed, tuple(matches)))
    return outcomes
