"""The tag rules: examples, idempotence, and the opt-in rules through the real `beet`."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from beetsplug.unmarked.normalize import Rules, ascii_quotes, collapse_whitespace, feat_rule, unicode_nfc

from .libenv import LibraryEnv

ALL_ON = Rules(fields=("title", "artist"), quotes=True, titlecase=True, titlecase_fields=("title", "artist"))


@pytest.mark.parametrize(("text", "expected"), [
    ("  Hello \t  World\u00a0 ", "Hello World"),
    ("one\ntwo", "one two"),
    ("", ""),
])
@pytest.mark.fast
def test_whitespace(text: str, expected: str) -> None:
    assert collapse_whitespace(text) == expected


@pytest.mark.fast
def test_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "Björk Sigur Rós")
    assert decomposed != "Björk Sigur Rós"
    assert unicode_nfc(decomposed) == "Björk Sigur Rós"


@pytest.mark.parametrize(("text", "expected"), [
    ("Song ft. Someone", "Song feat. Someone"),
    ("Song Ft Someone", "Song feat. Someone"),
    ("Song FEAT Someone", "Song feat. Someone"),
    ("Song featuring Someone", "Song feat. Someone"),
    ("Song (Featuring Someone)", "Song (feat. Someone)"),
    ("Song [ft. Someone]", "Song [feat. Someone]"),
    ("Song feat. Someone", "Song feat. Someone"),
    # not feat tokens: parts of words, or the artist separators beets leaves alone
    ("Feather Light", "Feather Light"),
    ("Left Foot", "Left Foot"),
    ("Simon & Garfunkel", "Simon & Garfunkel"),
    ("Songs with Friends", "Songs with Friends"),
    ("Raft Song", "Raft Song"),
])
@pytest.mark.fast
def test_feat_matches_where_beets_would(text: str, expected: str) -> None:
    assert feat_rule("feat.")(text) == expected


@pytest.mark.fast
def test_feat_output_form_is_configurable() -> None:
    assert feat_rule("ft.")("A featuring B") == "A ft. B"


@pytest.mark.fast
def test_quotes() -> None:
    assert ascii_quotes("\u201cDon\u2019t\u201d \u2018x\u2019 5\u2032 6\u2033") == "\"Don't\" 'x' 5' 6\""


@pytest.mark.fast
def test_titlecase_follows_the_titlecase_plugin() -> None:
    assert ALL_ON.text("title", "the sound of the city") == "The Sound of the City"
    assert ALL_ON.text("artist", "drive the band") == "Drive The Band", "`the_artist`: The in artist fields"
    assert ALL_ON.text("title", "song ft. guest") == "Song feat. Guest", "feat keeps its configured case"


@pytest.mark.fast
def test_multi_valued_fields_and_what_changed() -> None:
    rules = Rules(fields=("genres", "title", "year"))
    model = {"genres": [" Rock ", "Jazz  Fusion"], "title": "Fine", "year": 1999}
    assert rules.apply(model, set(model)) == {"genres": [[" Rock ", "Jazz  Fusion"], ["Rock", "Jazz Fusion"]]}
    assert model["genres"] == ["Rock", "Jazz Fusion"]


pieces = st.sampled_from([*list("abcAB éé\t\xa0'’“()[]"), "ft. ", "Feat ", "featuring ", "the "])


@pytest.mark.fast
@given(text=st.lists(pieces, max_size=30).map("".join))
@example(text="a'B")  # the titlecase library alone gives A'B, then A'b
@example(text="(Feat the a")  # after the feat rule, titlecase capitalizes "the"
def test_every_rule_set_is_idempotent(text: str) -> None:
    """A re-run (after a crash, say) changes nothing more."""
    for rules in (Rules(fields=("title",)), ALL_ON):
        once = rules.text("title", text)
        assert rules.text("title", once) == once


def test_opt_in_rules_through_beet(env: LibraryEnv) -> None:
    env.configure(unmarked={"quotes": True, "titlecase": True})
    item = env.add_track("q.ogg", {"title": "the \u201cbest\u201d song ft. someone", "artist": "X"})
    env.beet("normalize-unmarked")
    assert env.item(item.id).title == 'The "Best" Song feat. Someone'
