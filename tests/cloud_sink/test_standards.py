"""The service-standard matcher on its own: Russian and English texts, inflected forms, a
misrecognised word within (and beyond) the fuzzy threshold, forbidden words, time limits."""

from __future__ import annotations

from typing import Any

from cloud_sink.speech.config import RulesFile
from cloud_sink.speech.engines import Word
from cloud_sink.speech.standards import check

RULES: dict[str, Any] = {
    "fuzzy_threshold": 85,
    "rules": [
        {"name": "greeting", "phrases": ["здравствуйте", "добрый день", "good morning"],
         "within_s": 10},
        {"name": "recommend", "phrases": ["порекомендуете нас", "would you recommend us"]},
        {"name": "swearing", "kind": "forbidden", "phrases": ["блин", "damn"],
         "tag": "swore"},
    ],
}  # fmt: skip


def outcome(text: str, words: list[Word] | None = None, offset_s: float = 0.0) -> dict[str, Any]:
    rules = RulesFile.from_dict(RULES)
    return {
        o.rule.name: (o.passed, o.tag, [m.heard for m in o.matches])
        for o in check(rules, text, words or [], offset_s)
    }


def timed(*spoken: tuple[str, float]) -> list[Word]:
    return [Word(word, at, at + 0.4) for word, at in spoken]


def test_russian_inflected_forms_match_their_lemmas() -> None:
    got = outcome("Добрых дней! Вы бы порекомендовали нас друзьям?")
    assert got["greeting"] == (True, None, ["Добрых дней"])
    assert got["recommend"] == (True, None, ["порекомендовали нас"])
    assert got["swearing"] == (True, None, [])


def test_english_inflections_and_a_misrecognised_word_within_the_threshold() -> None:
    got = outcome("good morning sir, would you recomend us to your friends")
    assert got["greeting"][0]
    assert got["recommend"] == (True, None, ["would you recomend us"])
    # a Russian word the recogniser got wrong by one letter still counts ...
    assert outcome("Здраствуйте, чем помочь?")["greeting"] == (True, None, ["Здраствуйте"])
    # ... as does the colloquial form (pymorphy3 knows it); a different word does not
    assert outcome("Здрасте, чем помочь?")["greeting"][0]
    assert outcome("Здоровье, чем помочь?")["greeting"] == (False, "no_greeting", [])


def test_the_threshold_comes_from_the_rules_file() -> None:
    strict = RulesFile.from_dict({**RULES, "fuzzy_threshold": 100})
    [greeting, *_] = check(strict, "Здраствуйте", [])
    assert not greeting.passed


def test_a_forbidden_word_in_any_form_fails_its_rule_with_its_tag() -> None:
    got = outcome("Блина нет, damned terminal")
    assert got["swearing"] == (False, "swore", ["Блина", "damned"])
    assert got["recommend"] == (False, "no_recommend", [])


def test_a_greeting_after_its_time_limit_fails_but_is_kept_with_its_time() -> None:
    late = timed(("чем", 2.0), ("помочь", 2.5), ("добрый", 14.0), ("день", 14.5))
    rules = RulesFile.from_dict(RULES)
    [greeting, *_] = check(rules, "", late, offset_s=3.0)  # the contact starts 3 s in
    assert not greeting.passed
    assert greeting.tag == "no_greeting"
    assert [(m.start_s, m.end_s) for m in greeting.matches] == [(14.0, 14.9)]
    on_time = timed(("добрый", 12.5), ("день", 12.9))  # 9.5 s into the contact
    [greeting, *_] = check(rules, "", on_time, offset_s=3.0)
    assert greeting.passed
