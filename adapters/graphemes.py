"""Grapheme clusters: what a reader sees as one character, the unit Mastodon and Bluesky count.

`len()` counts code points, so a Javanese syllable (a letter plus its vowel signs), a flag or an
emoji family would each count as several characters where the platforms count one. Unicode's
extended grapheme clusters (UAX #29) are what both platforms' own counters use; the `regex`
package implements them as `\\X`, kept up to date with new Unicode versions.
"""

from __future__ import annotations

import regex

_CLUSTER = regex.compile(r"\X")


def graphemes(text: str) -> list[str]:
    """The grapheme clusters of `text`, in order."""
    return _CLUSTER.findall(text)


def count(text: str) -> int:
    """How many grapheme clusters `text` holds (what a person would call its characters)."""
    return sum(1 for _ in _CLUSTER.finditer(text))
