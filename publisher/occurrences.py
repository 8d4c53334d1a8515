"""When a post is due: once, or each occurrence of its `repeat` cron, one occurrence at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from publisher.posts import PostSpec

ONCE = ""  # the occurrence of a post without `repeat`
_MAX_SKIP = 100_000  # bound on the catch-up walk after a long downtime
_NAIVE = ZoneInfo("UTC")  # wall-clock times are matched against the cron in a zone without changes
_MARGIN = timedelta(hours=3)  # more than any daylight-saving shift


@dataclass(frozen=True)
class Next:
    due: datetime
    occurrence: str
    skipped: int = 0  # occurrences missed while the daemon was down (too late, or overtaken by a later one)


def occurrence_id(due: datetime) -> str:
    return due.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def occurrence_time(occurrence: str) -> datetime:
    return datetime.strptime(occurrence, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def next_occurrence(
    spec: PostSpec, *, after: datetime | None, now: datetime, tz: ZoneInfo, max_lateness: timedelta
) -> Next | None:
    """The repeat's next occurrence strictly after `after` (or from its start), or None past `until`.

    Occurrences that fell more than `max_lateness` ago (the daemon was down), and those already
    followed by a later one that is due too, are skipped and counted: a long outage yields one
    catch-up occurrence at most and one report, rather than thousands of expired deliveries or a
    burst of late posts.
    """
    if spec.cron_trigger(tz) is None:
        return None
    start = spec.at or now
    times = _fire_times(spec, tz, after if after is not None else start - timedelta(microseconds=1))
    candidate = next(times, None)
    skipped = 0
    while candidate is not None:
        following = next(times, None)
        overdue = candidate + max_lateness < now
        superseded = following is not None and following <= now
        if not (overdue or superseded):
            break
        skipped += 1
        candidate = following
        if skipped >= _MAX_SKIP and candidate is not None and candidate + max_lateness < now:
            # Years of a per-minute repeat: jump to what can still go, the count is then a floor.
            times = _fire_times(spec, tz, now - max_lateness - timedelta(microseconds=1))
            candidate = next(times, None)
    if candidate is None:
        return None
    return Next(due=candidate, occurrence=occurrence_id(candidate), skipped=skipped)


def _fire_times(spec: PostSpec, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The repeat's times strictly after `after`, in UTC, always increasing, up to `until`.

    The cron is matched against wall-clock time in `tz`, and each wall-clock time it names happens
    once: in an autumn overlap, at its first instance (as cron does); in a spring gap, moved on by
    the gap's length (02:30 that does not exist becomes 03:30), or dropped where that lands on or
    before a time already given. (APScheduler's own zone arithmetic repeats overlap times, and can
    even step back or stall there, which would make an occurrence twice.)
    """
    from publisher.posts import _trigger

    walls = _trigger(spec.repeat or "", _NAIVE, None, None)
    last = after.astimezone(timezone.utc)
    # A later wall-clock time can be an earlier instant around a change: start a little before.
    wall = last.astimezone(tz).replace(tzinfo=None) - _MARGIN
    end = spec.until.astimezone(tz).replace(tzinfo=None) + _MARGIN if spec.until is not None else None
    while True:
        fire = walls.get_next_fire_time(None, (wall + timedelta(seconds=1)).replace(tzinfo=_NAIVE))
        if fire is None:
            return
        wall = fire.replace(tzinfo=None)
        if end is not None and wall > end:
            return
        instant = wall.replace(tzinfo=tz).astimezone(timezone.utc)  # fold=0: the first, or the gap moved on
        if instant > last and (spec.until is None or instant <= spec.until):
            last = instant
            yield instant
