"""When a post is due: once, or each occurrence of its `repeat` cron, one occurrence at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from publisher.posts import PostSpec

ONCE = ""  # the occurrence of a post without `repeat`
_MAX_SKIP = 100_000  # bound on the catch-up walk after a long downtime


@dataclass(frozen=True)
class Next:
    due: datetime
    occurrence: str
    skipped: int = 0  # occurrences missed beyond max_lateness while the daemon was down


def occurrence_id(due: datetime) -> str:
    return due.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def occurrence_time(occurrence: str) -> datetime:
    return datetime.strptime(occurrence, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def next_occurrence(
    spec: PostSpec, *, after: datetime | None, now: datetime, tz: ZoneInfo, max_lateness: timedelta
) -> Next | None:
    """The repeat's next occurrence strictly after `after` (or from its start), or None past `until`.

    Occurrences that fell more than `max_lateness` ago (the daemon was down) are skipped and
    counted, so a long outage yields one report rather than thousands of expired deliveries.
    """
    trigger = spec.cron_trigger(tz)
    if trigger is None:
        return None
    start = spec.at or now
    previous = after
    if previous is None:
        candidate = trigger.get_next_fire_time(None, start)  # the first at or after the start
    else:
        candidate = trigger.get_next_fire_time(previous, previous + timedelta(seconds=1))
    skipped = 0
    while candidate is not None and candidate + max_lateness < now and skipped < _MAX_SKIP:
        skipped += 1
        candidate = trigger.get_next_fire_time(candidate, candidate + timedelta(seconds=1))
    if candidate is None:
        return None
    candidate = candidate.astimezone(timezone.utc)
    if spec.until is not None and candidate > spec.until:
        return None
    return Next(due=candidate, occurrence=occurrence_id(candidate), skipped=skipped)
