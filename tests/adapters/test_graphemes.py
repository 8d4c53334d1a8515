"""Grapheme counting: one per character a reader sees, in the scripts Indonesian teams write."""

from __future__ import annotations

import pytest

from adapters import graphemes

CASES = [
    # (case id, text, expected count)
    ("ascii", "Selamat Hari Guru", 17),
    ("empty", "", 0),
    # ꦱ + suku, then ꦒ + pepet + cecak: two syllables, five code points.
    ("javanese-syllables", "ꦱꦸꦒꦼꦁ", 2),
    # ꦫꦮꦸꦃ: ra, wa + suku + wignyan.
    ("javanese-with-wignyan", "ꦫꦮꦸꦃ", 2),
    ("balinese-syllable", "ᬩᬮᬶ", 2),
    ("emoji", "Selamat 🎉", 9),
    ("emoji-with-skin-tone", "👍🏽", 1),
    ("emoji-zwj-family", "👨\u200d👩\u200d👧\u200d👦", 1),
    ("flag", "🇮🇩", 1),
    ("keycap", "1\ufe0f\u20e3", 1),
    ("decomposed-accent", "Sukabumi cafe\u0301", 13),
    ("crlf-is-one", "a\r\nb", 3),
]


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_count_gives_one_per_visible_character(case: str, text: str, expected: int) -> None:
    assert graphemes.count(text) == expected


def test_graphemes_returns_the_clusters_in_order() -> None:
    assert graphemes.graphemes("ꦱꦸꦒꦼꦁ 🇮🇩") == ["ꦱꦸ", "ꦒꦼꦁ", " ", "🇮🇩"]


def test_count_differs_from_len_where_the_platforms_differ_from_python() -> None:
    text = "Sugeng rawuh ꦱꦸꦒꦼꦁꦫꦮꦸꦃ 👨\u200d👩\u200d👧"
    assert len(text) == 13 + 9 + 1 + 5  # code points: Latin, Javanese, space, family
    assert graphemes.count(text) == 13 + 4 + 1 + 1
