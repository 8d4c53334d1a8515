"""`siar report --month YYYY-MM`: what a month's deliveries came to, per account and platform —
published where (with permalinks), failed and why, on time or late — as a table, JSON, or one
self-contained HTML page (inline CSS and SVG, no script, nothing fetched) to hand a supervisor.

A delivery belongs to the month its due time falls in, in the operator's time zone.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from publisher import output
from publisher.db import Database
from publisher.durations import format_duration, parse_duration
from publisher.models import utcnow
from publisher.redact import redact
from publisher.settings import Settings, find_config_dir, load_settings
from publisher.states import HoldReason, State
from publisher.store import D, P

OK = 0

ON_TIME = timedelta(minutes=5)
# Held on purpose by a rule: not a miss of the service, so left out of the on-time rate.
RULE_HOLDS = (HoldReason.APPROVAL, HoldReason.BLACKOUT, HoldReason.DUPLICATE)
WAITING = (State.PENDING, State.RETRYING, State.CLAIMED, State.SENDING)
NEEDS_PERSON = (State.UNKNOWN, State.PAUSED, State.HELD)
LINK_SCHEMES = ("http", "https", "file")  # file: the outbox's receipts
_MONTH = re.compile(r"(\d{4})-(\d{2})")


# --- the numbers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One delivery of the month, as the report shows it."""

    id: int
    post_id: str
    path: str | None
    account: str
    platform: str
    state: str
    hold_reason: str | None
    due_at: datetime
    published_at: datetime | None
    url: str | None
    platform_id: str | None
    last_error: str | None
    http_status: int | None
    attempts: int
    text: str  # the first line

    @property
    def delay(self) -> timedelta | None:
        return self.published_at - self.due_at if self.published_at is not None else None


@dataclass
class Tally:
    """Counts for one account, one platform, or everything."""

    due: int = 0  # every delivery of the month
    published: int = 0
    on_time: int = 0
    late: int = 0
    failed: int = 0
    needs_person: int = 0  # unknown, paused, held (expired, approval, blackout, duplicate)
    cancelled: int = 0
    waiting: int = 0  # not due yet, or on its way
    missed: int = 0  # due, not published, not held by a rule: counts against the on-time rate
    excluded: int = 0  # cancelled, held by a rule, or not due yet

    def add(self, item: Item, *, now: datetime, within: timedelta) -> None:
        self.due += 1
        state = State(item.state)
        if state is State.PUBLISHED:
            self.published += 1
            delay = item.delay
            if delay is not None and delay <= within:
                self.on_time += 1
            else:
                self.late += 1
            return
        if state is State.FAILED:
            self.failed += 1
        elif state in NEEDS_PERSON:
            self.needs_person += 1
        elif state is State.CANCELLED:
            self.cancelled += 1
        else:
            self.waiting += 1
        by_rule = state is State.HELD and item.hold_reason in [r.value for r in RULE_HOLDS]
        if state is State.CANCELLED or by_rule or (state in WAITING and item.due_at > now):
            self.excluded += 1
        else:
            self.missed += 1

    @property
    def counted(self) -> int:
        """The deliveries the on-time rate is taken over."""
        return self.published + self.missed

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.counted if self.counted else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "due": self.due, "published": self.published, "on_time": self.on_time, "late": self.late,
            "failed": self.failed, "needs_person": self.needs_person, "cancelled": self.cancelled,
            "waiting": self.waiting, "counted": self.counted, "on_time_rate": self.on_time_rate,
        }


@dataclass
class Report:
    month: str
    tz: ZoneInfo
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    generated: datetime
    within: timedelta
    items: list[Item]
    totals: Tally = field(default_factory=Tally)
    by_account: dict[tuple[str, str], Tally] = field(default_factory=dict)
    by_platform: dict[str, Tally] = field(default_factory=dict)

    @property
    def published(self) -> list[Item]:
        return [i for i in self.items if i.state == State.PUBLISHED]

    @property
    def failed(self) -> list[Item]:
        return [i for i in self.items if i.state == State.FAILED]

    @property
    def needs_person(self) -> list[Item]:
        return [i for i in self.items if i.state in [s.value for s in NEEDS_PERSON]]

    def to_dict(self) -> dict[str, Any]:
        def item(i: Item) -> dict[str, Any]:
            delay = i.delay
            return {
                "delivery": i.id, "post_id": i.post_id, "file": i.path, "account": i.account,
                "platform": i.platform, "state": i.state, "hold_reason": i.hold_reason,
                "due_at": i.due_at, "due_local": i.due_at.astimezone(self.tz),
                "published_at": i.published_at,
                "published_local": i.published_at.astimezone(self.tz) if i.published_at else None,
                "delay_s": round(delay.total_seconds(), 1) if delay is not None else None,
                "on_time": delay <= self.within if delay is not None else None,
                "url": i.url, "platform_id": i.platform_id, "last_error": i.last_error,
                "http_status": i.http_status, "attempts": i.attempts, "text": i.text,
            }

        return {
            "month": self.month, "timezone": self.tz.key, "from": self.start, "until": self.end,
            "generated_at": self.generated, "on_time_within_s": self.within.total_seconds(),
            "totals": self.totals.to_dict(),
            "by_account": [{"account": a, "platform": p, **t.to_dict()} for (a, p), t in self.by_account.items()],
            "by_platform": [{"platform": p, **t.to_dict()} for p, t in self.by_platform.items()],
            "published": [item(i) for i in self.published],
            "failed": [item(i) for i in self.failed],
            "needs_person": [item(i) for i in self.needs_person],
        }


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The month `YYYY-MM` in the operator's zone, as a UTC [start, end)."""
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=tz)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def build(conn: Connection, settings: Settings, month: str, *, now: datetime, within: timedelta = ON_TIME) -> Report:
    tz = settings.timezone
    start, end = month_bounds(month, tz)
    query = (
        select(D.c.id, D.c.post_id, D.c.account, D.c.platform, D.c.state, D.c.hold_reason, D.c.due_at,
               D.c.published_at, D.c.url, D.c.platform_id, D.c.last_error, D.c.http_status, D.c.attempts,
               D.c.message, P.c.path)
        .join(P, P.c.id == D.c.post_id)
        .where(D.c.due_at >= start, D.c.due_at < end)
        .order_by(D.c.due_at, D.c.account, D.c.id)
    )
    items = [_item(row) for row in conn.execute(query).mappings()]
    report = Report(month=month, tz=tz, start=start, end=end, generated=now, within=within, items=items)
    for item in items:
        report.totals.add(item, now=now, within=within)
        report.by_account.setdefault((item.account, item.platform), Tally()).add(item, now=now, within=within)
        report.by_platform.setdefault(item.platform, Tally()).add(item, now=now, within=within)
    report.by_account = dict(sorted(report.by_account.items()))
    report.by_platform = dict(sorted(report.by_platform.items()))
    return report


def _item(row: Any) -> Item:
    try:
        message = json.loads(row["message"])
    except ValueError:
        message = {}
    text = str(message.get("text") or "") if isinstance(message, dict) else ""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first and isinstance(message, dict) and message.get("media"):
        first = "(media: " + ", ".join(str(m.get("file", "")) for m in message["media"]) + ")"
    return Item(
        id=int(row["id"]), post_id=row["post_id"], path=row["path"], account=row["account"],
        platform=row["platform"], state=row["state"], hold_reason=row["hold_reason"], due_at=row["due_at"],
        published_at=row["published_at"], url=row["url"], platform_id=row["platform_id"],
        last_error=row["last_error"], http_status=row["http_status"], attempts=int(row["attempts"] or 0),
        text=first,
    )


# --- plain text ----------------------------------------------------------------------------------


def _rate(tally: Tally) -> str:
    rate = tally.on_time_rate
    return "-" if rate is None else f"{rate:.0%}"


def render_text(report: Report) -> str:
    totals = report.totals
    lines = [
        f"Siar report for {report.month} ({report.tz.key}): {totals.due} deliveries due, {totals.published} "
        f"published, {totals.on_time} on time (within {format_duration(report.within)}), {totals.late} late, "
        f"{totals.failed} failed, {totals.needs_person} waiting for a person; on-time rate {_rate(totals)}",
        "",
        "Per account",
        output.table([{"account": a, "platform": p, **t.to_dict(), "rate": _rate(t)}
                      for (a, p), t in report.by_account.items()],
                     ["account", "platform", "due", "published", "on_time", "late", "failed", "needs_person",
                      "cancelled", "waiting", "rate"]),
        "",
        "Per platform",
        output.table([{"platform": p, **t.to_dict(), "rate": _rate(t)} for p, t in report.by_platform.items()],
                     ["platform", "due", "published", "on_time", "late", "failed", "needs_person", "rate"]),
    ]
    if report.failed:
        lines += ["", "Failed", output.table(
            [{"due": output.local(i.due_at, report.tz), "account": i.account, "post": i.post_id,
              "reason": i.last_error} for i in report.failed], ["due", "account", "post", "reason"])]
    return "\n".join(lines)


# --- HTML ----------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Everything that came from a post, a platform or the database passes through here."""
    return html.escape("" if value is None else str(value), quote=True)


def _when(moment: datetime | None, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%a %d %b %H:%M") if moment is not None else "–"


def _delay(delta: timedelta | None) -> str:
    if delta is None:
        return "–"
    seconds = int(delta.total_seconds())
    if abs(seconds) < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def permalink(url: str | None) -> str:
    """A link where the URL is one a reader may follow; plain text otherwise (never `javascript:`)."""
    if not url:
        return "–"
    if urlsplit(url).scheme.lower() in LINK_SCHEMES:
        return f'<a href="{esc(url)}">{esc(url)}</a>'
    return esc(url)


_HOLDS = {
    HoldReason.EXPIRED.value: "expired: too late to send (past max_lateness); `siar retry` sends it anyway",
    HoldReason.DUPLICATE.value: "duplicate: the same text, media and accounts as a recent post",
    HoldReason.APPROVAL.value: "approval: waiting for someone to approve it",
    HoldReason.BLACKOUT.value: "blackout: due inside a blackout window",
}

_COLOURS = {
    "on time": "#2e7d32",
    "late": "#ef9f00",
    "failed": "#c62828",
    "needs a person": "#7b1fa2",
    "not due yet": "#90a4ae",
    "cancelled": "#cfd8dc",
}


def _segments(tally: Tally) -> list[tuple[str, int]]:
    return [("on time", tally.on_time), ("late", tally.late), ("failed", tally.failed),
            ("needs a person", tally.needs_person), ("not due yet", tally.waiting), ("cancelled", tally.cancelled)]


def chart(rows: Sequence[tuple[str, Tally]], *, title: str) -> str:
    """Stacked horizontal bars, one per row, as inline SVG: readable printed, no script, no fonts."""
    label_w, bar_w, row_h, top = 190, 520, 30, 44
    width = label_w + bar_w + 150  # room for the count after the longest bar
    height = top + row_h * max(len(rows), 1) + 10
    biggest = max((t.due for _, t in rows), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>',
    ]
    x = label_w
    for name, colour in _COLOURS.items():  # the legend
        parts.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 16}" y="18" class="legend">{esc(name)}</text>')
        x += 16 + 7 * len(name) + 18
    for index, (name, tally) in enumerate(rows):
        y = top + index * row_h
        parts.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end" class="label">{esc(name)}</text>')
        x = float(label_w)
        for segment, count in _segments(tally):
            if count:
                w = bar_w * count / biggest
                parts.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 10}" '
                             f'fill="{_COLOURS[segment]}"><title>{esc(name)}: {count} {esc(segment)}</title></rect>')
                x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 17}" class="count">{tally.due} · {esc(_rate(tally))} on time</text>')
    if not rows:
        parts.append(f'<text x="{label_w}" y="{top + 17}" class="label">no deliveries this month</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: #1c2328;
       margin: 0; background: #f4f6f8; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e3e8ec; }
.meta { color: #56636d; margin: 0 0 20px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { flex: 1 1 140px; border: 1px solid #e3e8ec; border-radius: 8px; padding: 12px 14px; }
.card b { display: block; font-size: 26px; }
.card span { color: #56636d; font-size: 13px; }
.card.good b { color: #2e7d32; } .card.bad b { color: #c62828; } .card.warn b { color: #7b1fa2; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e3e8ec; vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.link, td.reason { word-break: break-all; }
td.t { white-space: nowrap; }
td.reason { color: #8e1c1c; }
.late { color: #a86b00; } .ontime { color: #2e7d32; }
svg { max-width: 100%; height: auto; }
svg .legend { font: 12px sans-serif; fill: #37474f; } svg .label { font: 13px sans-serif; fill: #1c2328; }
svg .count { font: 12px sans-serif; fill: #56636d; }
.note { color: #56636d; font-size: 13px; }
@media print { body { background: #fff; } main { padding: 0; } }
"""


def render_html(report: Report) -> str:
    tz = report.tz
    totals = report.totals
    month_name = report.start.astimezone(tz).strftime("%B %Y")
    offset = report.start.astimezone(tz).strftime("%z")
    zone = f"{tz.key} (UTC{offset[:3]}:{offset[3:]})"
    within = format_duration(report.within)
    cards = [
        ("", totals.due, "deliveries due"),
        ("good", totals.published, "published"),
        ("good", _rate(totals), f"on time (within {within})"),
        ("bad", totals.failed, "failed"),
        ("warn", totals.needs_person, "waiting for a person"),
    ]
    body = [
        f"<h1>Publishing report · {esc(month_name)}</h1>",
        f'<p class="meta">Times in {esc(zone)}. Generated {esc(_when(report.generated, tz))}. '
        f"A delivery is one post on one account; it counts in the month its due time falls in.</p>",
        '<div class="cards">' + "".join(
            f'<div class="card {cls}"><b>{esc(value)}</b><span>{esc(label)}</span></div>' for cls, value, label in cards
        ) + "</div>",
        "<h2>Deliveries per account</h2>",
        chart([(account, tally) for (account, _p), tally in report.by_account.items()],
              title=f"Deliveries per account, {month_name}"),
        "<h2>Per account and platform</h2>",
        _tally_table([(esc(a), esc(p), t) for (a, p), t in report.by_account.items()], with_account=True),
        "<h2>Per platform</h2>",
        _tally_table([("", esc(p), t) for p, t in report.by_platform.items()], with_account=False),
        f"<h2>Published ({len(report.published)})</h2>",
        _items_table(report.published, tz, report.within, kind="published"),
        f"<h2>Failed ({len(report.failed)})</h2>",
        _items_table(report.failed, tz, report.within, kind="failed"),
        f"<h2>Waiting for a person ({len(report.needs_person)})</h2>",
        _items_table(report.needs_person, tz, report.within, kind="person"),
        f'<p class="note">On time: published within {esc(within)} of the due time. The on-time rate is taken over '
        "every delivery whose time has come, except those cancelled or held on purpose (approval, blackout, "
        "duplicate): a failure, an expired hold or an unresolved send counts against it. Failures need "
        "<code>siar retry</code>; unknown sends need <code>siar resolve</code>.</p>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        # No script, no fetch: the page stays what it is, whatever a post or a platform put in it.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>Siar report {esc(report.month)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _tally_table(rows: Iterable[tuple[str, str, Tally]], *, with_account: bool) -> str:
    head = (["Account"] if with_account else []) + ["Platform"]
    numbers = ["Due", "Published", "On time", "Late", "Failed", "Waiting for a person", "Cancelled",
               "Not due yet", "On-time rate"]
    out = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
           + "".join(f'<th class="n">{h}</th>' for h in numbers) + "</tr></thead><tbody>"]
    for account, platform, t in rows:
        cells = ([account] if with_account else []) + [platform]
        values = [t.due, t.published, t.on_time, t.late, t.failed, t.needs_person, t.cancelled, t.waiting, _rate(t)]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells)
                   + "".join(f'<td class="n">{esc(v)}</td>' for v in values) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _items_table(items: Sequence[Item], tz: ZoneInfo, within: timedelta, *, kind: str) -> str:
    if not items:
        return '<p class="note">None.</p>'
    if kind == "published":
        head = ["Due", "Published", "Delay", "Account", "Post", "Text", "Permalink"]
    elif kind == "failed":
        head = ["Due", "Account", "Post", "Text", "Attempts", "Why"]
    else:
        head = ["Due", "Account", "Post", "Text", "State", "Why"]
    out = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for i in items:
        account = f"{esc(i.account)} <span class=\"note\">{esc(i.platform)}</span>"
        if kind == "published":
            delay = i.delay
            cls = "ontime" if delay is not None and delay <= within else "late"
            cells = [esc(_when(i.due_at, tz)), esc(_when(i.published_at, tz)), f'<span class="{cls}">{esc(_delay(delay))}</span>',
                     account, esc(i.post_id), esc(i.text), permalink(i.url)]
            classes = ["t", "t", "t", "", "", "", "link"]
        elif kind == "failed":
            reason = i.last_error or "(no reason recorded)"
            if i.http_status:
                reason = f"HTTP {i.http_status}: {reason}" if not reason.startswith("HTTP") else reason
            cells = [esc(_when(i.due_at, tz)), account, esc(i.post_id), esc(i.text), esc(i.attempts), esc(reason)]
            classes = ["t", "", "", "", "n", "reason"]
        else:
            why = _HOLDS.get(i.hold_reason or "", i.hold_reason) if i.state == State.HELD else (i.last_error or "")
            cells = [esc(_when(i.due_at, tz)), account, esc(i.post_id), esc(i.text), esc(i.state), esc(why)]
            classes = ["t", "", "", "", "", "reason"]
        out.append("<tr>" + "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>"
                                    for c, v in zip(classes, cells)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


# --- the command ---------------------------------------------------------------------------------

HELP = "a month's report: published where, failed and why, on-time rate, per account and platform"


def _month(value: str) -> str:
    match = _MONTH.fullmatch(value.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise argparse.ArgumentTypeError(f"expected a month like 2026-11, got {value!r}")
    return value.strip()


def _within(value: str) -> timedelta:
    try:
        delta = parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if delta <= timedelta(0):
        raise argparse.ArgumentTypeError("must be longer than zero")
    return delta


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common_parent: argparse.ArgumentParser) -> None:
    """Add `siar report [--month YYYY-MM] [--html FILE] [--json] [--on-time DURATION]`."""
    parser = subparsers.add_parser("report", parents=[common_parent], help=HELP, description=HELP + ".")
    parser.add_argument("--month", type=_month, metavar="YYYY-MM",
                        help="the month, in the operator's time zone (default: this month so far)")
    parser.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--on-time", type=_within, default=ON_TIME, metavar="DURATION",
                        help=f"how soon after its due time a post counts as on time (default: {format_duration(ON_TIME)})")
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace, *, now: datetime | None = None,
               stdout: IO[str] | None = None) -> int:
    out = stdout or sys.stdout
    settings = load_settings(find_config_dir(getattr(args, "config", None)))
    now = now or utcnow()
    month = args.month or now.astimezone(settings.timezone).strftime("%Y-%m")
    db = Database(settings.database)
    try:
        db.migrate()
        with db.read() as conn:
            report = build(conn, settings, month, now=now, within=args.on_time)
    finally:
        db.dispose()
    if args.html:
        # Secrets are masked here as in every other output: an error text may quote a request.
        _write_atomically(Path(args.html), redact(render_html(report)))
    if args.json:
        print(redact(output.to_json(report.to_dict())), file=out)
    else:
        print(redact(render_text(report)), file=out)
        if args.html:
            print(f"\nwrote {args.html}", file=out)
    return OK
