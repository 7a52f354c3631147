"""Counts and articles in messages: "1 molecule", "2,000 molecules", "an 'images' run"."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` with ``noun``, or with its plural ``nouns`` (default: noun + "s") unless one."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def article(word: str) -> str:
    """ "a" or "an" for ``word`` by its first letter (domain names, not the whole of English)."""
    return "an" if word.lstrip("'\"")[:1].lower() in set("aeiou") else "a"
