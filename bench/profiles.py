"""`--profile`: turn cProfile output into a readable text file under bench/results/profiles/."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from bench.common import RESULTS

T = TypeVar("T")
PROFILES = RESULTS / "profiles"


def summarize(sources: Path | Iterable[Path], name: str, top: int = 45) -> Path | None:
    paths = [sources] if isinstance(sources, Path) else list(sources)
    paths = [p for p in paths if p.exists()]
    if not paths:
        return None
    stats = pstats.Stats(str(paths[0]))
    for extra in paths[1:]:
        stats.add(str(extra))
    PROFILES.mkdir(parents=True, exist_ok=True)
    out = PROFILES / f"{name}.txt"
    buffer = io.StringIO()
    stats.stream = buffer  # type: ignore[attr-defined]
    buffer.write(f"# {name}: cProfile of every thread, merged; sorted by tottime, then cumulative\n")
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    out.write_text(buffer.getvalue())
    return out


def profiled(enabled: bool, name: str, fn: Callable[[], T]) -> T:
    """Run fn (in-process work) under cProfile when enabled; write the summary."""
    if not enabled:
        return fn()
    profile = cProfile.Profile()
    result = profile.runcall(fn)
    PROFILES.mkdir(parents=True, exist_ok=True)
    raw = PROFILES / f"{name}.prof"
    profile.dump_stats(str(raw))
    summarize(raw, name)
    raw.unlink()
    return result


