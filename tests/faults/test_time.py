"""Time faults (issue 4, item 6): daylight-saving gaps and overlaps for a repeat, the clock
stepped back and forward, and the daemon down across due times.

Nothing leaves early; nothing published goes again; a delivery within `max_lateness` goes once,
a later one is held as `expired` and reported; a repeat after a long outage makes at most one
catch-up occurrence and reports the ones it skipped.
"""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from adapters.base import Receipt
from publisher.occurrences import next_occurrence
from publisher.posts import load_post
from tests.integration.conftest import LookupAdapter, ScriptedAdapter, backend, engine  # noqa: F401 (fixtures)
from tests.support.faultkit import use_clock

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")

SETTINGS = """
[daemon]
timezone = "Europe/Paris"
concurrency = 4
max_lateness = "1h"
sync_every = "1s"
lease = "30s"
http_timeout = "5s"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "4s"

[accounts.latihan]
platform = "outbox"

[accounts.arsip]
platform = "outbox"
"""


def local(t: datetime) -> datetime:
    return t.astimezone(PARIS)


def spec_of(workspace, name: str, body: str):
    workspace.write_settings(SETTINGS)
    path = workspace.post(name, body)
    spec, problems = load_post(path, workspace.settings())
    assert spec is not None, problems
    return spec


def walk(spec, *, start: datetime, end: datetime, lateness: timedelta = timedelta(hours=1)) -> list[datetime]:
    """Every occurrence from `start` to `end`, asked for as a daemon that is always up would:
    each one right after the one before it was due."""
    dues: list[datetime] = []
    after, now = None, start
    for _ in range(10_000):
        nxt = next_occurrence(spec, after=after, now=now, tz=PARIS, max_lateness=lateness)
        if nxt is None or nxt.due > end:
            return dues
        assert nxt.skipped == 0
        dues.append(nxt.due)
        after, now = nxt.due, nxt.due
    raise AssertionError(f"the walk never ended; it was at {dues[-5:]}")


def assert_strictly_increasing(dues: list[datetime]) -> None:
    assert all(a < b for a, b in zip(dues, dues[1:])), dues


# --- daylight saving: the occurrence walk --------------------------------------------------------


def test_a_daily_repeat_whose_time_falls_in_the_spring_gap_happens_once_that_day(workspace):
    # 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day.
    spec = spec_of(workspace, "gap.toml", 'at = 2026-03-26T00:00:00\nrepeat = "30 2 * * *"\n'
                                          'to = ["latihan"]\ntext = "Setiap hari"\n')
    dues = walk(spec, start=datetime(2026, 3, 25, tzinfo=UTC), end=datetime(2026, 4, 2, tzinfo=UTC))
    assert_strictly_increasing(dues)
    days = [local(d).date() for d in dues]
    assert days == [date(2026, 3, d) for d in range(26, 32)] + [date(2026, 4, 1)]  # none skipped, none doubled
    (gap_day,) = [d for d in dues if local(d).date() == date(2026, 3, 29)]
    # Not at 02:30 (there is none) and not silently dropped: shortly after the jump, in the lost hour's place.
    assert datetime(2026, 3, 29, 1, 0, tzinfo=UTC) <= gap_day < datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    for other in dues:
        if other != gap_day:
            assert (local(other).hour, local(other).minute) == (2, 30)


def test_a_daily_repeat_whose_time_falls_in_the_autumn_overlap_happens_exactly_once_that_day(workspace):
    # 2026-10-25 in Paris: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice.
    spec = spec_of(workspace, "overlap.toml", 'at = 2026-10-22T00:00:00\nrepeat = "30 2 * * *"\n'
                                              'to = ["latihan"]\ntext = "Setiap hari"\n')
    dues = walk(spec, start=datetime(2026, 10, 21, tzinfo=UTC), end=datetime(2026, 10, 29, tzinfo=UTC))
    assert_strictly_increasing(dues)
    days = [local(d).date() for d in dues]
    assert days == [date(2026, 10, d) for d in range(22, 29)]
    (overlap_day,) = [d for d in dues if local(d).date() == date(2026, 10, 25)]
    assert overlap_day == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30, as cron does
    assert all((local(d).hour, local(d).minute) == (2, 30) for d in dues)


@pytest.mark.parametrize("repeat", ["*/30 * * * *", "0 * * * *", "15,45 1-3 * * *"])
@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)], ids=["gap", "overlap"])
def test_a_frequent_repeat_across_a_change_never_goes_back_never_repeats_a_wall_time_and_ends(
    workspace, repeat, day
):
    spec = spec_of(workspace, "often.toml", f'at = {day.isoformat()}T00:00:00\nrepeat = "{repeat}"\n'
                                            'to = ["latihan"]\ntext = "Sering"\n')
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=3)
    dues = walk(spec, start=start, end=start + timedelta(hours=12))
    assert_strictly_increasing(dues)
    walls = [local(d).replace(tzinfo=None) for d in dues]
    assert len(set(walls)) == len(walls)  # no wall-clock time happens twice
    assert len({d.isoformat() for d in dues}) == len(dues)  # occurrence ids stay unique
    # Every wall-clock time the cron names appears once; a gap's times move on by the gap's length
    # and merge with the times they land on (the spring day has an hour fewer).
    kind = "gap" if day.month == 3 else "overlap"
    assert len(dues) == {("*/30 * * * *", "gap"): 21, ("*/30 * * * *", "overlap"): 21,
                         ("0 * * * *", "gap"): 11, ("0 * * * *", "overlap"): 11,
                         ("15,45 1-3 * * *", "gap"): 4, ("15,45 1-3 * * *", "overlap"): 6}[(repeat, kind)], dues


# --- daylight saving: sync and dispatch with the clock running through the change ----------------


def run_at(e, dispatcher, clock, now: datetime) -> None:
    """One pass of a daemon whose clock reads `now`: sync, reap, send what is due."""
    clock.now = now
    e.syncer.run(now)
    dispatcher.reap(now)
    while dispatcher.dispatch(now) or dispatcher.busy:
        dispatcher.drain()


def recording_adapter() -> ScriptedAdapter:
    return ScriptedAdapter([lambda message, job: Receipt(job.key)])


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)], ids=["gap", "overlap"])
def test_a_running_daemon_publishes_a_daily_repeat_once_a_day_through_a_change(
    workspace, engine, monkeypatch, day
):
    workspace.write_settings(SETTINGS)
    first = day - timedelta(days=1)
    workspace.post("harian.toml", f'at = {first.isoformat()}T00:00:00\nrepeat = "30 2 * * *"\n'
                                  'to = ["latihan"]\ntext = "Setiap hari"\n')
    e = engine()
    e.adapters["latihan"] = adapter = recording_adapter()
    # Passes at 40 past every hour (UTC), for four days: each 02:30 is caught 10 minutes late at most.
    clock = use_clock(monkeypatch, datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(minutes=20))
    dispatcher = e.dispatcher()
    end = clock.now + timedelta(days=4)
    now = clock.now
    while now < end:
        run_at(e, dispatcher, clock, now)
        now += timedelta(hours=1)
    published = e.deliveries(post_id="harian", state="published")
    assert [local(r["due_at"]).date() for r in published] == [first + timedelta(days=i) for i in range(4)]
    assert len(adapter.calls) == 4 and len({key for _m, key, _a in adapter.calls}) == 4
    for row in published:
        assert row["published_at"] >= row["due_at"]  # nothing early
        assert [ev["event"] for ev in e.events(delivery_id=row["id"])].count("published") == 1
    states = {r["state"] for r in e.deliveries(post_id="harian")}
    assert states <= {"published", "pending"}, states  # nothing stuck in sending, nothing failed


# --- the clock stepped -------------------------------------------------------------------------


def test_a_clock_stepped_back_an_hour_sends_nothing_early_and_nothing_twice(workspace, engine, monkeypatch):
    workspace.write_settings(SETTINGS)
    t0 = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
    workspace.post("a.toml", f'at = {t0.isoformat()}\nto = ["latihan"]\ntext = "Pertama"\n')
    workspace.post("b.toml", f'at = {(t0 + timedelta(minutes=30)).isoformat()}\nto = ["latihan"]\ntext = "Kedua"\n')
    workspace.post("r.toml", f'at = {(t0 - timedelta(hours=1)).isoformat()}\nrepeat = "0 * * * *"\n'
                             'to = ["arsip"]\ntext = "Tiap jam"\n')
    e = engine()
    e.adapters.update(latihan=recording_adapter(), arsip=recording_adapter())
    clock = use_clock(monkeypatch, t0 - timedelta(hours=2))
    d = e.dispatcher()
    run_at(e, d, clock, t0 + timedelta(seconds=5))  # a, and the repeat's 09:00, are due
    assert [m.post_id for m, _k, _a in e.adapters["latihan"].calls] == ["a"]
    assert len(e.adapters["arsip"].calls) == 1
    # NTP steps the clock back an hour; the daemon goes on through the hour it lives again.
    now = t0 + timedelta(seconds=5) - timedelta(hours=1)
    while now < t0 + timedelta(minutes=29):
        run_at(e, d, clock, now)
        now += timedelta(minutes=3)
    assert [m.post_id for m, _k, _a in e.adapters["latihan"].calls] == ["a"]  # b waits for its time
    assert len(e.adapters["arsip"].calls) == 1  # the 09:00 occurrence does not go again
    assert e.one(post_id="b")["state"] == "pending"
    run_at(e, d, clock, t0 + timedelta(minutes=30, seconds=1))
    run_at(e, d, clock, t0 + timedelta(hours=1, seconds=1))
    assert [m.post_id for m, _k, _a in e.adapters["latihan"].calls] == ["a", "b"]
    keys = [k for _m, k, _a in e.adapters["arsip"].calls]
    assert len(keys) == 2 and len(set(keys)) == 2  # 09:00 and 10:00, once each
    for row in e.deliveries(state="published"):
        assert row["published_at"] >= row["due_at"]
        assert e.event_names(row["id"]).count("published") == 1


def test_a_clock_stepped_forward_past_max_lateness_holds_what_is_too_late_and_sends_the_rest(
    workspace, engine, monkeypatch
):
    workspace.write_settings(SETTINGS)
    t0 = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
    workspace.post("late.toml", f'at = {(t0 + timedelta(minutes=5)).isoformat()}\nto = ["latihan"]\ntext = "Telat"\n')
    workspace.post("ok.toml", f'at = {(t0 + timedelta(minutes=80)).isoformat()}\nto = ["arsip"]\ntext = "Masih"\n')
    e = engine()
    e.adapters.update(latihan=recording_adapter(), arsip=recording_adapter())
    clock = use_clock(monkeypatch, t0)
    d = e.dispatcher()
    run_at(e, d, clock, t0)
    assert not e.adapters["latihan"].calls
    # The clock jumps 2 h: "late" is 1 h 55 m overdue (beyond max_lateness), "ok" 40 m (within).
    run_at(e, d, clock, t0 + timedelta(hours=2))
    assert not e.adapters["latihan"].calls  # never sent late
    assert len(e.adapters["arsip"].calls) == 1
    late = e.one(post_id="late")
    assert (late["state"], late["hold_reason"], late["attempts"]) == ("held", "expired", 0)
    (held,) = [ev for ev in e.events(delivery_id=late["id"]) if ev["event"] == "held"]
    assert json.loads(held["detail"])["reason"] == "expired"
    assert e.one(post_id="ok")["state"] == "published"


def test_a_clock_stepped_forward_during_a_send_does_not_make_the_daemon_take_its_own_send_back(
    workspace, engine, monkeypatch
):
    """The lease is measured on this machine's clock: a step forward makes the daemon's own live
    lease look expired. The reaper must not reconcile a send its own worker is still making (a
    lookup would not find it yet, and the delivery would go out a second time)."""
    workspace.write_settings(SETTINGS)
    t0 = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
    workspace.post("p.toml", f'at = {t0.isoformat()}\nto = ["latihan"]\ntext = "Sekali"\n')
    e = engine()
    entered, release = threading.Event(), threading.Event()

    def slow(message, job):
        entered.set()
        assert release.wait(20)
        return Receipt(job.key)

    e.adapters["latihan"] = adapter = LookupAdapter([slow], lookup_answer=None)
    clock = use_clock(monkeypatch, t0)
    d = e.dispatcher()
    e.syncer.run(t0)
    assert d.dispatch(t0) == 1
    assert entered.wait(10)
    clock.now = t0 + timedelta(minutes=10)  # stepped forward: past the 30 s lease
    d.reap(clock.now)
    release.set()
    d.drain()
    run_at(e, d, clock, clock.now)
    assert len(adapter.calls) == 1
    row = e.one(post_id="p")
    assert row["state"] == "published"
    assert e.event_names(row["id"]).count("attempt") == 1


# --- the daemon down across due times ------------------------------------------------------------


@pytest.mark.parametrize(("down", "sent"), [
    (timedelta(minutes=1), True), (timedelta(minutes=10), True),
    (timedelta(hours=2), False), (timedelta(days=3), False),
], ids=["1min", "10min", "2h", "3d"])
def test_a_daemon_down_across_a_due_time_sends_within_max_lateness_once_and_holds_the_rest(
    workspace, engine, monkeypatch, down, sent
):
    workspace.write_settings(SETTINGS)
    t0 = datetime(2027, 2, 1, 8, 0, tzinfo=UTC)
    due = t0 + timedelta(minutes=5)
    workspace.post("p.toml", f'at = {due.isoformat()}\nto = ["latihan", "arsip"]\ntext = "Pengumuman"\n')
    e = engine()
    e.adapters.update(latihan=recording_adapter(), arsip=recording_adapter())
    clock = use_clock(monkeypatch, t0)
    run_at(e, e.dispatcher("before"), clock, t0)  # synced, then the daemon goes down
    back = due + down
    after = e.dispatcher("after")
    run_at(e, after, clock, back)
    run_at(e, after, clock, back + timedelta(minutes=1))  # and a pass later: nothing more
    calls = e.adapters["latihan"].calls + e.adapters["arsip"].calls
    rows = e.deliveries(post_id="p")
    if sent:
        assert len(calls) == 2
        assert [r["state"] for r in rows] == ["published", "published"]
        assert all(r["published_at"] >= r["due_at"] for r in rows)
    else:
        assert calls == []
        assert [(r["state"], r["hold_reason"]) for r in rows] == [("held", "expired")] * 2
        for row in rows:
            detail = json.loads(next(ev for ev in e.events(delivery_id=row["id"]) if ev["event"] == "held")["detail"])
            assert detail["reason"] == "expired" and detail["late_by_s"] >= down.total_seconds()


@pytest.mark.parametrize("repeat", ["*/5 * * * *", "0 9 * * *"])
def test_a_repeat_after_a_three_day_outage_makes_one_catch_up_at_most_and_reports_the_skipped(
    workspace, engine, monkeypatch, repeat
):
    workspace.write_settings(SETTINGS)
    t0 = datetime(2027, 3, 1, 7, 58, tzinfo=UTC)  # 08:58 in Paris
    workspace.post("r.toml", f'at = 2027-03-01T08:59:00\nrepeat = "{repeat}"\nto = ["latihan"]\ntext = "Rutin"\n')
    e = engine()
    e.adapters["latihan"] = adapter = recording_adapter()
    clock = use_clock(monkeypatch, t0)
    d = e.dispatcher()
    run_at(e, d, clock, t0)
    run_at(e, d, clock, t0 + timedelta(minutes=3))  # 09:01: the 09:00 occurrence is out
    assert len(adapter.calls) == 1
    before = {r["id"] for r in e.deliveries(post_id="r")}
    back = t0 + timedelta(days=3, minutes=29)  # three days later, 09:27 in Paris
    for minutes in (0, 1, 2):
        run_at(e, d, clock, back + timedelta(minutes=minutes))
    rows = e.deliveries(post_id="r")
    new = [r for r in rows if r["id"] not in before]
    assert len(rows) <= 4 and len(new) <= 2, [(r["occurrence"], r["state"]) for r in rows]
    sent_after = adapter.calls[1:]
    assert len(sent_after) <= 1  # one catch-up at most, not a burst
    # The occurrence that was waiting when the daemon went down is too late now: held, reported.
    waiting = [r for r in rows if r["id"] in before and r["state"] != "published"]
    assert [(r["state"], r["hold_reason"]) for r in waiting] == [("held", "expired")]
    skipped = [json.loads(ev["detail"]).get("skipped_occurrences", 0)
               for ev in e.events(post_id="r", event="created") if ev["detail"]]
    expected = {"*/5 * * * *": 3 * 24 * 12 - 12, "0 9 * * *": 1}[repeat]
    assert sum(skipped) >= expected  # the skipped ones are reported, in one line, not as rows
    for row in rows:
        assert e.event_names(row["id"]).count("published") <= 1
        if row["state"] == "published":
            assert row["published_at"] >= row["due_at"]
            assert row["published_at"] - row["due_at"] <= timedelta(hours=1)


@pytest.mark.slow
def test_siar_run_after_downtime_sends_what_is_within_max_lateness_once_and_status_lists_the_expired(workspace):
    """The same with the real command: posts written due 1 min, 10 min, 2 h and 3 days ago."""
    from tests.support.process import run_siar, siar_env

    workspace.write_settings(SETTINGS.replace('timezone = "Europe/Paris"', 'timezone = "Asia/Jakarta"'))
    now = datetime.now(UTC).replace(microsecond=0)
    ages = {"semenit": timedelta(minutes=1), "sepuluh": timedelta(minutes=10),
            "dua-jam": timedelta(hours=2), "tiga-hari": timedelta(days=3)}
    for name, age in ages.items():
        workspace.post(f"{name}.toml", f'at = {(now - age).isoformat()}\nto = ["latihan"]\ntext = "Pos {name}"\n')
    env = siar_env()
    first = run_siar(workspace.root, "run", "--once", env=env)
    assert first.returncode == 1, first.stderr  # something needs a person: the expired ones
    outbox = workspace.state / "outbox" / "latihan"
    sent = sorted(json.loads(p.read_text())["post_id"] for p in outbox.glob("*.json"))
    assert sent == ["semenit", "sepuluh"]
    again = run_siar(workspace.root, "run", "--once", env=env)
    assert again.returncode in (0, 1), again.stderr
    assert len(list(outbox.glob("*.json"))) == 2  # nothing published goes again

    status = run_siar(workspace.root, "status", "--json", env=env)
    attention = {(r["post_id"], r["state"], r["hold_reason"]) for r in json.loads(status.stdout)["needs_attention"]}
    assert attention == {("dua-jam", "held", "expired"), ("tiga-hari", "held", "expired")}
    assert status.returncode == 1
    trail = json.loads(run_siar(workspace.root, "audit", "--format", "json", env=env).stdout)
    held = {e["post_id"]: e for e in trail if e["event"] == "held"}
    assert set(held) == {"dua-jam", "tiga-hari"}
    for name, event in held.items():
        detail = event["detail"] if isinstance(event["detail"], dict) else json.loads(event["detail"])
        assert detail["reason"] == "expired" and detail["late_by_s"] >= ages[name].total_seconds()
    assert sorted(e["post_id"] for e in trail if e["event"] == "published") == ["semenit", "sepuluh"]
