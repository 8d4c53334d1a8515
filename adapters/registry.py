"""Finds adapter classes through the `siar.adapters` entry-point group (built-ins included)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from adapters.base import BaseAdapter

GROUP = "siar.adapters"


class UnknownPlatform(LookupError):
    def __init__(self, platform: str, known: list[str]) -> None:
        super().__init__(f"unknown platform {platform!r}; known platforms: {', '.join(known)}")
        self.platform = platform
        self.known = known


@cache
def available() -> dict[str, type[BaseAdapter]]:
    """Every registered adapter class by platform name."""
    found: dict[str, type[BaseAdapter]] = {}
    for entry in entry_points(group=GROUP):
        found[entry.name] = entry.load()
    return found


def adapter_class(platform: str) -> type[BaseAdapter]:
    classes = available()
    try:
        return classes[platform]
    except KeyError:
        raise UnknownPlatform(platform, sorted(classes)) from None
