"""`siar calendar`: the coming deliveries per account in the operator's time zone, and as an
iCalendar (RFC 5545) file a team can subscribe to in the calendar it already uses.

A repeating post has one delivery at a time in the database; its later occurrences are projected
from its cron here, with the idempotency key each will get, so a subscribed calendar sees the
same event (UID) before and after the delivery row exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from publisher import output
from publisher.db import Database
from publisher.models import utcnow
from publisher.occurrences import ONCE, next_occurrence
from publisher.posts import PostSpec
from publisher.redact import redact
from publisher.settings import Settings, find_config_dir, load_settings
from publisher.states import State
from publisher.store import D, P, delivery_key

OK, USAGE = 0, 2

UPCOMING = (State.PENDING, State.RETRYING, State.HELD)
PROJECTED = "repeat"  # the state shown for a repeat's occurrence that is not a delivery yet
MAX_PROJECTED = 100  # per post and account: an every-minute repeat must not flood a week's view
DEFAULT_DAYS = 7
DEFAULT_ICS_DAYS = 90  # a subscribed calendar is worth more with the month ahead in it
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class Entry:
    """One post going out on one account, at `at` (UTC)."""

    key: str  # the delivery's idempotency key (also the calendar event's UID)
    delivery_id: int | None  # None: a repeat's later occurrence, not a delivery yet
    post_id: str
    path: str | None  # the post file, relative to the posts folder
    account: str
    platform: str
    state: str
    hold_reason: str | None
    at: datetime  # the due time, or the next attempt's time for a retry
    text: str
    link: str | None
    title: str | None
    media: tuple[str, ...]
    attempts: int = 0

    @property
    def first_line(self) -> str:
        line = next((line.strip() for line in self.text.splitlines() if line.strip()), "")
        if line:
            return line
        return f"(media: {', '.join(self.media)})" if self.media else "(no text)"

    @property
    def status(self) -> str:
        if self.state == State.HELD and self.hold_reason:
            return f"held: {self.hold_reason}"
        if self.state == State.RETRYING:
            return f"retrying (attempt {self.attempts + 1})"
        return self.state


def upcoming(
    conn: Connection, settings: Settings, *, start: datetime, end: datetime, account: str | None = None,
) -> tuple[list[Entry], set[tuple[str, str]]]:
    """Deliveries going out in [start, end), with the repeats' later occurrences projected.

    Returns the entries in time order and the (post, account) pairs whose projection was cut at
    MAX_PROJECTED.
    """
    query = (
        select(D.c.id, D.c.key, D.c.post_id, D.c.account, D.c.platform, D.c.state, D.c.hold_reason, D.c.due_at,
               D.c.ready_at, D.c.occurrence, D.c.message, D.c.attempts, P.c.path, P.c.spec)
        .join(P, P.c.id == D.c.post_id)
        .where(D.c.state.in_([s.value for s in UPCOMING]), D.c.ready_at < end)
        .order_by(D.c.ready_at, D.c.id)
    )
    if account is not None:
        query = query.where(D.c.account == account)
    entries: list[Entry] = []
    latest: dict[tuple[str, str], Any] = {}  # a repeat's newest delivery, to project from
    for row in conn.execute(query).mappings():
        if row["occurrence"] != ONCE:
            pair = (row["post_id"], row["account"])
            if pair not in latest or row["due_at"] > latest[pair]["due_at"]:
                latest[pair] = row
        # A held delivery waits at its due time; a retry at its next attempt.
        when = row["due_at"] if row["state"] == State.HELD else row["ready_at"]
        if start <= when < end:
            entries.append(_entry(row, when))
    capped: set[tuple[str, str]] = set()
    for pair, row in latest.items():
        if _project(row, settings.timezone, start, end, entries):
            capped.add(pair)
    entries.sort(key=lambda e: (e.at, e.account, e.post_id))
    return entries, capped


def _entry(row: Any, when: datetime, *, key: str | None = None, projected: bool = False) -> Entry:
    message = _message(row["message"])
    return Entry(
        key=key or row["key"],
        delivery_id=None if projected else row["id"],
        post_id=row["post_id"],
        path=row["path"],
        account=row["account"],
        platform=row["platform"],
        state=PROJECTED if projected else row["state"],
        hold_reason=None if projected else row["hold_reason"],
        at=when,
        text=message.get("text") or "",
        link=message.get("link"),
        title=message.get("title"),
        media=tuple(item.get("file", "") for item in message.get("media") or ()),
        attempts=0 if projected else int(row["attempts"] or 0),
    )


def _message(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _project(row: Any, tz: ZoneInfo, start: datetime, end: datetime, entries: list[Entry]) -> bool:
    """Add the occurrences after `row`'s up to `end`; True when cut short at MAX_PROJECTED.

    The times come from `next_occurrence`, the function sync uses to make each next delivery,
    so a projected occurrence has the time and key its delivery will have.
    """
    try:
        spec = PostSpec.from_json(row["spec"])
    except (ValueError, KeyError):
        return False  # a spec from an older version that no longer reads: show what exists
    if not spec.repeat:
        return False
    # Straight to the window's start: a repeat overdue for days must not be walked minute by minute.
    after = max(row["due_at"], start - timedelta(microseconds=1))
    shown = 0
    while True:
        # `now` = `after`: nothing counts as overdue or superseded, so this is simply the next time.
        nxt = next_occurrence(spec, after=after, now=after, tz=tz, max_lateness=timedelta(0))
        if nxt is None or nxt.due >= end:
            return False
        if shown == MAX_PROJECTED:
            return True
        key = delivery_key(row["post_id"], row["account"], nxt.occurrence)
        entries.append(_entry(row, nxt.due, key=key, projected=True))
        shown += 1
        after = nxt.due


# --- iCalendar -----------------------------------------------------------------------------------


def escape_text(value: str) -> str:
    """RFC 5545 §3.3.11 TEXT: backslash, semicolon, comma and newline escaped; other controls
    (which TEXT may not hold) dropped."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")
    return _CONTROL.sub("", value)


def fold(line: str) -> bytes:
    """RFC 5545 §3.1: lines of at most 75 octets, continued after CRLF and one space, never
    splitting a UTF-8 character."""
    data = line.encode("utf-8")
    pieces: list[bytes] = []
    start, limit = 0, 75
    while len(data) - start > limit:
        end = start + limit
        while data[end] & 0xC0 == 0x80:  # a continuation byte: cut before its character
            end -= 1
        pieces.append(data[start:end])
        start, limit = end, 74  # the leading space counts
    pieces.append(data[start:])
    return b"\r\n ".join(pieces) + b"\r\n"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def ics(entries: Iterable[Entry], *, tz: ZoneInfo, now: datetime, domain: str) -> bytes:
    """The iCalendar document: one VEVENT per entry, times in UTC."""
    try:
        version = metadata.version("siar")
    except metadata.PackageNotFoundError:
        version = "dev"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:-//Siar//siar {version}//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "NAME:Siar: upcoming posts",  # RFC 7986
        "X-WR-CALNAME:Siar: upcoming posts",  # the same, for clients that predate RFC 7986
        f"X-WR-TIMEZONE:{tz.key}",
        "REFRESH-INTERVAL;VALUE=DURATION:PT15M",
        "X-PUBLISHED-TTL:PT15M",
    ]
    for entry in entries:
        lines += _event(entry, tz=tz, now=now, domain=domain)
    lines.append("END:VCALENDAR")
    return b"".join(fold(line) for line in lines)


def _event(entry: Entry, *, tz: ZoneInfo, now: datetime, domain: str) -> list[str]:
    local = entry.at.astimezone(tz)
    description = [
        f"{entry.account} ({entry.platform}), {local.strftime('%a %Y-%m-%d %H:%M')} {tz.key}",
        f"State: {entry.status}" + (" (a later occurrence of a repeating post)" if entry.state == PROJECTED else ""),
        f"Post: {entry.post_id}" + (f" (file {entry.path} in the posts folder)" if entry.path else ""),
    ]
    if entry.delivery_id is not None:
        description.append(f"Delivery: {entry.delivery_id}")
    if entry.title:
        description.append(f"Title: {entry.title}")
    description += ["", entry.text.strip() or "(no text)"]
    if entry.link:
        description += ["", f"Link: {entry.link}"]
    if entry.media:
        description.append(f"Media: {', '.join(entry.media)}")
    event = [
        "BEGIN:VEVENT",
        f"UID:{entry.key}@{domain}",
        f"DTSTAMP:{_stamp(now)}",
        f"DTSTART:{_stamp(entry.at)}",
        f"SUMMARY:{escape_text(f'{entry.account}: {entry.first_line}')}",
        f"DESCRIPTION:{escape_text(chr(10).join(description))}",
        f"CATEGORIES:{escape_text(entry.platform)},{escape_text(entry.account)}",
        # Held is not going out unless a person acts: tentative, not confirmed.
        f"STATUS:{'TENTATIVE' if entry.state == State.HELD else 'CONFIRMED'}",
        "TRANSP:TRANSPARENT",  # a scheduled post does not make the team busy
    ]
    if entry.link and urlsplit(entry.link).scheme in ("http", "https") and not _CONTROL.search(entry.link):
        event.append(f"URL:{entry.link}")
    event.append("END:VEVENT")
    return event


def default_domain(settings: Settings) -> str:
    """The right-hand side of each UID: the team's media host when set, else this host's name."""
    if settings.media_url:
        host = urlsplit(settings.media_url).hostname
        if host:
            return host
    return socket.gethostname() or "siar.invalid"


def _write_atomically(path: Path, data: bytes) -> None:
    """A web server serving the file to subscribers never hands out half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


# --- the command ---------------------------------------------------------------------------------

HELP = "the coming deliveries per account; --ics writes an iCalendar file to subscribe to"


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, got {value!r}") from None
    if not 1 <= days <= 3660:
        raise argparse.ArgumentTypeError(f"expected 1 to 3660 days, got {days}")
    return days


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common_parent: argparse.ArgumentParser) -> None:
    """Add `siar calendar [--days N] [--account NAME] [--json] [--ics FILE] [--domain D]`."""
    parser = subparsers.add_parser("calendar", parents=[common_parent], help=HELP, description=HELP + ".")
    parser.add_argument("--days", type=_days, metavar="N",
                        help=f"how far ahead (default: {DEFAULT_DAYS}; with --ics {DEFAULT_ICS_DAYS})")
    parser.add_argument("--account", metavar="NAME", help="only this account")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true")
    mode.add_argument("--ics", metavar="FILE", help="write an iCalendar file instead ('-' for standard output)")
    parser.add_argument("--domain", metavar="DOMAIN",
                        help="right-hand side of each event's UID (default: the media_url host, else this host)")
    parser.set_defaults(handler=run_calendar)


def run_calendar(args: argparse.Namespace, *, now: datetime | None = None,
                 stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    settings = load_settings(find_config_dir(getattr(args, "config", None)))
    now = (now or utcnow()).replace(microsecond=0)
    days = args.days or (DEFAULT_ICS_DAYS if args.ics else DEFAULT_DAYS)
    end = now + timedelta(days=days)
    if args.account is not None and args.account not in settings.accounts:
        known = ", ".join(sorted(settings.accounts)) or "none"
        print(f"siar calendar: error: unknown account {args.account!r} (known: {known})", file=err)
        return USAGE
    db = Database(settings.database)
    try:
        db.migrate()
        with db.read() as conn:
            entries, capped = upcoming(conn, settings, start=now, end=end, account=args.account)
    finally:
        db.dispose()
    tz = settings.timezone

    if args.ics:
        document = ics(entries, tz=tz, now=now, domain=args.domain or default_domain(settings))
        if args.ics == "-":
            # CRLF must reach the reader as written: bytes, past any newline translation.
            out.flush()
            if out is sys.stdout:
                sys.stdout.buffer.write(document)
                sys.stdout.buffer.flush()
            else:
                out.write(document.decode("utf-8"))
            return OK
        _write_atomically(Path(args.ics), document)
        print(f"wrote {len(entries)} events to {args.ics}: the next {days} days", file=out)
        return OK
    if args.json:
        print(redact(output.to_json({
            "timezone": tz.key,
            "from": now,
            "until": end,
            "deliveries": [{**asdict(e), "local": e.at.astimezone(tz), "status": e.status, "media": list(e.media)}
                           for e in entries],
        })), file=out)
        return OK
    print(redact(render_table(entries, settings, start=now, end=end, account=args.account, capped=capped)), file=out)
    return OK


def render_table(entries: Sequence[Entry], settings: Settings, *, start: datetime, end: datetime,
                 account: str | None = None, capped: set[tuple[str, str]] | None = None) -> str:
    """Per account (every configured one, so an empty week shows too), in time order."""
    tz = settings.timezone
    offset = start.astimezone(tz).strftime("%z")
    lines = [f"Deliveries from {_when(start, tz)} to {_when(end, tz)} ({tz.key}, UTC{offset[:3]}:{offset[3:]})"]
    names = [account] if account else sorted(set(settings.accounts) | {e.account for e in entries})
    for name in names:
        mine = [e for e in entries if e.account == name]
        platform = settings.accounts[name].platform if name in settings.accounts else mine[0].platform
        lines += ["", f"{name} ({platform})"]
        lines.append(output.table(
            [{"when": _when(e.at, tz), "post": e.post_id, "state": e.status, "text": e.first_line} for e in mine],
            ["when", "post", "state", "text"], empty="  (nothing due)",
        ))
        for post_id, who in sorted(capped or ()):
            if who == name:
                lines.append(f"  (post {post_id} repeats often: its first {MAX_PROJECTED} occurrences are shown)")
    return "\n".join(lines)


def _when(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%a %Y-%m-%d %H:%M")
