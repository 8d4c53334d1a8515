"""Finds adapter classes through the `siar.adapters` entry-point group (built-ins included).

Names are listed without importing anything; a class is imported only when an account uses it,
so one broken third-party adapter cannot take the others down.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from adapters.base import BaseAdapter

GROUP = "siar.adapters"


class UnknownPlatform(LookupError):
    def __init__(self, platform: str, known: list[str]) -> None:
        super().__init__(f"unknown platform {platform!r}; known platforms: {', '.join(known)}")
        self.platform = platform
        self.known = known


@cache
def _entries() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=GROUP)}


def known() -> list[str]:
    return sorted(_entries())


@cache
def adapter_class(platform: str) -> type[BaseAdapter]:
    entry = _entries().get(platform)
    if entry is None:
        raise UnknownPlatform(platform, known())
    cls = entry.load()
    if getattr(cls, "platform", None) != platform:
        raise TypeError(f"adapter {entry.value} declares platform {cls.platform!r}, registered as {platform!r}")
    return cls
