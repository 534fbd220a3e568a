"""The tag rules: small pure functions over text, chosen by config.

Each rule maps a string to a string and is idempotent, so normalizing twice
changes nothing the second time (a re-run after a crash rewrites the same
values). ``Rules.apply`` runs the enabled rules over the configured fields of
an item or album and reports what changed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from beets import plugins

Rule = Callable[[str], str]
SETTLE_ROUNDS = 5

_QUOTES = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
})


def collapse_whitespace(text: str) -> str:
    """Trim, and turn every run of whitespace (tabs, NBSP, newlines) into one space."""
    return " ".join(text.split())


def unicode_nfc(text: str) -> str:
    """Composed Unicode: 'Björk' typed on a Mac (NFD) equals the one typed elsewhere."""
    return unicodedata.normalize("NFC", text)


def ascii_quotes(text: str) -> str:
    """Typographic quotes and primes to ASCII ' and "."""
    return text.translate(_QUOTES)


def feat_rule(output: str) -> Rule:
    """Spell every feat token (ft, ft., feat, featuring) as ``output``.

    Matches exactly where beets' own ``plugins.feat_tokens`` does for titles
    (the explicit words, not "&" or "with", which are often part of a name).
    """
    pattern = re.compile(plugins.feat_tokens(for_artist=False), re.IGNORECASE)

    def spell(match: re.Match[str]) -> str:
        opener = match.group(0)[0]
        return opener + output if opener in "([" else output

    def rule(text: str) -> str:
        return pattern.sub(spell, text)

    return rule


def titlecase_rule(artist_field: bool) -> Rule:
    """Title case with the conventions of beets' ``titlecase`` plugin defaults.

    Small words stay lower case except first and last; in artist fields a
    lower-case "the" becomes "The" (the plugin's ``the_artist``).
    """
    from titlecase import titlecase

    the = re.compile(r"\bthe\b")

    def rule(text: str) -> str:
        cased = titlecase(text, small_first_last=True)
        return the.sub("The", cased) if artist_field else cased

    return rule


@dataclass(frozen=True)
class Rules:
    """Which rules run, over which fields."""

    fields: tuple[str, ...]
    whitespace: bool = True
    nfc: bool = True
    feat: bool = True
    feat_format: str = "feat."
    quotes: bool = False
    titlecase: bool = False
    titlecase_fields: tuple[str, ...] = ("title", "album")

    @classmethod
    def from_config(cls, config: Any) -> Rules:
        """Build from the plugin's confuse view (``self.config``)."""
        return cls(
            fields=tuple(config["fields"].as_str_seq()),
            whitespace=config["whitespace"].get(bool),
            nfc=config["unicode_nfc"].get(bool),
            feat=config["feat"].get(bool),
            feat_format=config["feat_format"].as_str(),
            quotes=config["quotes"].get(bool),
            titlecase=config["titlecase"].get(bool),
            titlecase_fields=tuple(config["titlecase_fields"].as_str_seq()),
        )

    @cached_property
    def _feat(self) -> Rule:
        return feat_rule(self.feat_format)

    def chain(self, field: str) -> list[Rule]:
        """The rules for one field, in order: titlecase before feat, so the
        feat token keeps its configured case."""
        chain: list[Rule] = []
        if self.nfc:
            chain.append(unicode_nfc)
        if self.whitespace:
            chain.append(collapse_whitespace)
        if self.quotes:
            chain.append(ascii_quotes)
        if self.titlecase and field in self.titlecase_fields:
            chain.append(titlecase_rule("artist" in field))
        if self.feat:
            chain.append(self._feat)
        return chain

    @cached_property
    def _chains(self) -> dict[str, list[Rule]]:
        return {field: self.chain(field) for field in self.fields}

    def text(self, field: str, value: str) -> str:
        """Run the chain until the text stops changing. A re-run must change nothing,
        and the titlecase library alone is not idempotent ("a'B" -> "A'B" ->
        "A'b"), nor is it after the feat rule ("(feat. the" -> "(feat. The")."""
        if not value:
            return value  # every rule leaves the empty text as it is
        chain = self._chains.get(field) or self.chain(field)
        for _ in range(SETTLE_ROUNDS):
            before = value
            for rule in chain:
                value = rule(value)
            if value == before:
                break
        return value

    def value(self, field: str, value: Any) -> Any:
        """Normalize a string, or each string of a multi-valued field."""
        if isinstance(value, str):
            return self.text(field, value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [self.text(field, v) for v in value]
        return value

    def apply(self, model: Any, present: set[str]) -> dict[str, list[Any]]:
        """Normalize ``model``'s fields in place; return {field: [old, new]}.

        ``present`` is the set of fields the model really has (for an item,
        without the album fallback beets adds on read).
        """
        changes: dict[str, list[Any]] = {}
        for field in self.fields:
            if field not in present:
                continue
            old = model[field]
            new = self.value(field, old)
            if new != old:
                model[field] = new
                changes[field] = [old, new]
        return changes
