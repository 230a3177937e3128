"""Tagging: turn a closed contact into tags by the configured rules.

A rule holds when ALL of its given conditions hold:

- ``modes`` (empty = any mode) contains the contact's mode;
- ``if_any`` (when non-empty): at least one of these event kinds happened in the contact;
- ``if_none`` (when non-empty): none of these event kinds happened in the contact;
- ``ended_by`` (when non-empty): the contact ended in one of these ways (an open contact, with
  no ``ended_by`` yet, never matches such a rule).

Event kinds are those of :meth:`edge.events.Contact.kinds`: the press kind (``green``,
``seller_short`` …), ``question:N`` for question N, ``receipt``, ``arrival``, ``departure``.
Tags come out in rule order; a tag given by several rules appears once.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.config import TagRule
from edge.events import Contact


def rule_holds(rule: TagRule, contact: Contact, kinds: set[str]) -> bool:
    """Whether ``rule`` holds for ``contact``, whose event kinds are ``kinds``."""
    if rule.modes and contact.mode not in rule.modes:
        return False
    if rule.if_any and kinds.isdisjoint(rule.if_any):
        return False
    if rule.if_none and not kinds.isdisjoint(rule.if_none):
        return False
    return not rule.ended_by or contact.ended_by in rule.ended_by


def apply_rules(contact: Contact, rules: Sequence[TagRule]) -> list[str]:
    """The tags of ``contact``: one per holding rule, in rule order, without duplicates."""
    kinds = contact.kinds()
    tags: list[str] = []
    for rule in rules:
        if rule.tag not in tags and rule_holds(rule, contact, kinds):
            tags.append(rule.tag)
    return tags
