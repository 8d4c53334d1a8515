"""`siar calendar`: the coming week per account in the operator's time zone, and an iCalendar file
that parses back (strictly, and with `icalendar` where installed) with the right times in UTC and
in the operator's zone. Deliveries come from real post files through the real sync."""

from __future__ import annotations

import argparse
import io
import json
import re
from datetime import date, datetime, time, timedelta, timezone
from time import monotonic, sleep
from zoneinfo import ZoneInfo

import pytest

from publisher import calendar
from publisher.occurrences import occurrence_id
from publisher.store import delivery_key
from tests.conftest import BASE_SETTINGS

LONG_FIRST_LINE = "Hari Guru Nasional: terima kasih, Bapak & Ibu guru; kalian pahlawan tanpa tanda jasa \\o/ 🎉🎉"
BESOK_TEXT = LONG_FIRST_LINE + "\nBaris kedua.\n"


def settings_for(zone: str) -> str:
    return BASE_SETTINGS.replace('"Asia/Jakarta"', f'"{zone}"') + '\n[accounts.kosong]\nplatform = "outbox"\n'


def sync(built) -> None:
    """One sync pass that ran. On PostgreSQL the sync lock is per database, and another test run
    on the same server may hold it for a moment: then the pass is skipped, as it is by design."""
    deadline = monotonic() + 30
    while built.syncer.run().skipped:
        assert monotonic() < deadline, "the PostgreSQL sync lock stayed taken"
        sleep(0.05)


@pytest.fixture
def same_database(backend, monkeypatch) -> None:
    """The command under test reads the database the engine fixture writes."""
    if backend is not None:
        monkeypatch.setenv("SIAR_DATABASE", backend)


def local_day(zone: ZoneInfo, days_ahead: int) -> date:
    return (datetime.now(timezone.utc).astimezone(zone) + timedelta(days=days_ahead)).date()


@pytest.fixture(params=["Asia/Jakarta", "Asia/Jayapura"])
def planned(request, workspace, engine, same_database):
    """A week with: a post tomorrow 08:00 local on two accounts, one the day after on one, a held
    duplicate, a daily repeat, one beyond the week, and one published already."""
    zone = ZoneInfo(request.param)
    workspace.write_settings(settings_for(request.param))
    tomorrow, after = local_day(zone, 1), local_day(zone, 2)
    workspace.post("besok.toml", f'at = {tomorrow}T08:00:00\nto = ["latihan", "arsip"]\n'
                                 f"text = '''\n{BESOK_TEXT}'''\nlink = \"https://example.go.id/guru?a=1&b=2\"\n")
    workspace.post("salinan.toml", f'at = {tomorrow}T09:00:00\nto = ["latihan", "arsip"]\n'
                                   f"text = '''\n{BESOK_TEXT}'''\n")
    workspace.post("lusa.toml", f'at = {after}T19:30:00\nto = ["arsip"]\ntext = "Malam; koma, dan \\\\ garis"\n')
    workspace.post("harian.toml", 'repeat = "0 6 * * *"\nto = ["latihan"]\ntext = "Selamat pagi"\n')
    workspace.post("jauh.toml", f'at = {local_day(zone, 30)}T08:00:00\nto = ["latihan"]\ntext = "Bulan depan"\n')
    workspace.post("sudah.toml", 'to = ["arsip"]\ntext = "Sudah terbit"\n')
    built = engine()
    sync(built)
    dispatcher = built.dispatcher()
    built.run_until_idle(dispatcher)
    assert built.one(post_id="sudah")["state"] == "published"
    assert {r["state"] for r in built.deliveries(post_id="salinan")} == {"held"}
    return built, zone, tomorrow, after


def run(workspace, *argv: str, now: datetime | None = None) -> tuple[int, str, str]:
    """`siar calendar …` through a parser built from the module's `register`, in-process."""
    parser = argparse.ArgumentParser(prog="siar")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config")
    calendar.register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["calendar", *argv, "--config", str(workspace.root)])
    out, err = io.StringIO(), io.StringIO()
    code = calendar.run_calendar(args, now=now, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def section(text: str, account: str) -> str:
    """The lines of one account's block in the printed calendar."""
    return text.split(f"\n\n{account} (", 1)[1].split("\n\n", 1)[0]


def test_the_coming_week_is_printed_per_account_in_the_operators_time_zone(planned, workspace):
    _built, zone, tomorrow, after = planned

    code, out, _ = run(workspace)

    assert code == 0
    offset = datetime.now(zone).strftime("%z")
    assert out.startswith("Deliveries from ") and f"({zone.key}, UTC{offset[:3]}:{offset[3:]})" in out
    latihan, arsip, kosong = section(out, "latihan"), section(out, "arsip"), section(out, "kosong")
    day = tomorrow.strftime("%a %Y-%m-%d")
    assert re.search(rf"{day} 08:00 +besok +pending +Hari Guru Nasional: terima kasih", latihan)
    assert re.search(rf"{day} 09:00 +salinan +held: duplicate +Hari Guru", latihan)
    assert re.search(rf"{after.strftime('%a %Y-%m-%d')} 19:30 +lusa +pending +Malam; koma, dan \\ garis", arsip)
    # The daily repeat: the delivery that exists and the occurrences after it, each at 06:00 local.
    mornings = re.findall(r"(\w{3} \d{4}-\d{2}-\d{2}) 06:00 +harian +(pending|repeat) +Selamat pagi", latihan)
    assert len(mornings) == 7 and mornings[0][1] == "pending" and {s for _, s in mornings[1:]} == {"repeat"}
    assert "jauh" not in out and "sudah" not in out  # beyond the week; published already
    assert kosong.strip().endswith("(nothing due)")
    times = [line.split()[:3] for line in latihan.splitlines()[2:]]
    assert times == sorted(times, key=lambda t: t[1] + t[2])  # in time order


def test_the_calendar_as_json_gives_each_delivery_in_utc_and_in_the_operators_zone(planned, workspace):
    _built, zone, tomorrow, _after = planned

    code, out, _ = run(workspace, "--json", "--account", "arsip", "--days", "3")

    assert code == 0
    data = json.loads(out)
    assert data["timezone"] == zone.key
    besok = next(d for d in data["deliveries"] if d["post_id"] == "besok")
    expected = datetime.combine(tomorrow, time(8), zone)
    assert datetime.fromisoformat(besok["at"]) == expected and besok["at"].endswith("+00:00")
    assert besok["local"] == expected.isoformat()
    assert {d["account"] for d in data["deliveries"]} == {"arsip"}
    assert [d["post_id"] for d in data["deliveries"]] == ["besok", "salinan", "lusa"]


def test_an_unknown_account_is_bad_usage(workspace):
    code, out, err = run(workspace, "--account", "pemkot-zz")

    assert code == 2 and out == ""
    assert "unknown account 'pemkot-zz' (known: arsip, latihan)" in err


# --- the iCalendar file --------------------------------------------------------------------------


def parse_ics_strictly(data: bytes) -> list[dict[str, tuple[dict[str, str], str]]]:
    """RFC 5545 as a strict reader sees it; returns each VEVENT's properties (params, raw value).

    Checks: CRLF line endings only; no line over 75 octets; a fold never splits a UTF-8
    character; BEGIN/END nesting; VCALENDAR with VERSION:2.0 and PRODID; each VEVENT with
    exactly one UID, DTSTAMP and DTSTART; no unescaped `,` `;` in single-valued TEXT.
    """
    assert data.endswith(b"\r\n")
    physical = data[:-2].split(b"\r\n")
    for line in physical:
        assert b"\n" not in line and b"\r" not in line, line
        assert len(line) <= 75, (len(line), line)
        line.decode("utf-8")  # each piece on its own: the fold fell between characters
    logical: list[bytes] = []
    for line in physical:
        if line[:1] in (b" ", b"\t"):
            logical[-1] += line[1:]
        else:
            logical.append(line)
    stack: list[str] = []
    calendar_props: dict[str, str] = {}
    events: list[dict[str, tuple[dict[str, str], str]]] = []
    for raw in logical:
        text = raw.decode("utf-8")
        match = re.fullmatch(r"([A-Z0-9-]+)((?:;[A-Z0-9-]+=[^;:]*)*):(.*)", text)
        assert match, text
        name, params_text, value = match.groups()
        params = dict(p.split("=", 1) for p in params_text.split(";")[1:])
        if name == "BEGIN":
            stack.append(value)
            if value == "VEVENT":
                events.append({})
        elif name == "END":
            assert stack.pop() == value
        elif stack == ["VCALENDAR"]:
            calendar_props[name] = value
        elif stack == ["VCALENDAR", "VEVENT"]:
            assert name not in events[-1], f"{name} twice"
            events[-1][name] = (params, value)
    assert stack == []
    assert calendar_props["VERSION"] == "2.0" and calendar_props["PRODID"]
    for event in events:
        assert {"UID", "DTSTAMP", "DTSTART"} <= set(event)
        for name in ("SUMMARY", "DESCRIPTION"):
            assert not re.search(r"(?<!\\)(?:\\\\)*[,;]", event[name][1]), event[name][1]
    return events


def unescape(value: str) -> str:
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def utc(value: str) -> datetime:
    assert re.fullmatch(r"\d{8}T\d{6}Z", value), value
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def test_the_ics_file_parses_back_strictly_with_times_in_utc_and_in_the_operators_zone(planned, workspace, tmp_path):
    _built, zone, tomorrow, after = planned
    target = tmp_path / "siar.ics"

    code, out, _ = run(workspace, "--ics", str(target), "--domain", "humas.example.go.id")

    assert code == 0 and out.startswith("wrote ") and "the next 90 days" in out
    events = parse_ics_strictly(target.read_bytes())
    by_summary: dict[str, list[dict]] = {}
    by_post: dict[tuple[str, str], list[dict]] = {}
    for event in events:
        summary = unescape(event["SUMMARY"][1])
        by_summary.setdefault(summary, []).append(event)
        post = re.search(r"^Post: (\S+)", unescape(event["DESCRIPTION"][1]), re.M)[1]
        by_post.setdefault((post, summary.split(":", 1)[0]), []).append(event)

    (besok,) = by_post[("besok", "arsip")]
    assert unescape(besok["SUMMARY"][1]) == f"arsip: {LONG_FIRST_LINE}"
    start = utc(besok["DTSTART"][1])
    assert start == datetime.combine(tomorrow, time(8), zone)  # stored and written in UTC…
    assert start.astimezone(zone).time() == time(8)  # …and 08:00 where the team is
    assert besok["DTSTART"][1] == datetime.combine(tomorrow, time(8), zone).astimezone(timezone.utc) \
        .strftime("%Y%m%dT%H%M%SZ")
    description = unescape(besok["DESCRIPTION"][1])
    assert BESOK_TEXT.strip() in description and "Link: https://example.go.id/guru?a=1&b=2" in description
    assert besok["URL"][1] == "https://example.go.id/guru?a=1&b=2"
    assert besok["STATUS"][1] == "CONFIRMED"
    (lusa,) = by_summary["arsip: Malam; koma, dan \\ garis"]
    assert utc(lusa["DTSTART"][1]).astimezone(zone) == datetime.combine(after, time(19, 30), zone)
    assert by_post[("besok", "latihan")][0]["STATUS"][1] == "CONFIRMED"
    held = [e for e in events if e["STATUS"][1] == "TENTATIVE"]
    assert held == by_post[("salinan", "latihan")] + by_post[("salinan", "arsip")] or \
        held == by_post[("salinan", "arsip")] + by_post[("salinan", "latihan")]
    assert all("State: held: duplicate" in unescape(e["DESCRIPTION"][1]) for e in held)
    assert utc(held[0]["DTSTART"][1]).astimezone(zone) == datetime.combine(tomorrow, time(9), zone)
    mornings = by_summary["latihan: Selamat pagi"]
    assert len(mornings) >= 89  # the daily repeat over the 90 days ahead
    assert {utc(e["DTSTART"][1]).astimezone(zone).time() for e in mornings} == {time(6)}
    assert "latihan: Bulan depan" in by_summary  # 30 days ahead: inside a subscription's window
    assert not any(s.endswith("Sudah terbit") for s in by_summary)

    rows = {(r["post_id"], r["account"]): r for r in _built.deliveries()}
    uids = [e["UID"][1] for e in events]
    assert len(set(uids)) == len(uids)
    assert f"{rows[('besok', 'arsip')]['key']}@humas.example.go.id" in uids


def test_the_ics_file_reads_the_same_in_the_icalendar_library(planned, workspace, tmp_path):
    icalendar = pytest.importorskip("icalendar", reason="icalendar is a test extra; the strict parser above runs anyway")
    _built, zone, tomorrow, _after = planned
    target = tmp_path / "siar.ics"
    assert run(workspace, "--ics", str(target), "--days", "7")[0] == 0

    parsed = icalendar.Calendar.from_ical(target.read_bytes())

    assert str(parsed["VERSION"]) == "2.0" and str(parsed["PRODID"]).startswith("-//Siar//")
    events = {str(e["SUMMARY"]): e for e in parsed.walk("VEVENT")
              if str(e["SUMMARY"]).startswith("arsip:") and str(e["STATUS"]) == "CONFIRMED"}
    besok = events[f"arsip: {LONG_FIRST_LINE}"]
    start = besok["DTSTART"].dt
    assert start.utcoffset() == timedelta(0) and start == datetime.combine(tomorrow, time(8), zone)
    assert start.astimezone(zone).strftime("%H:%M") == "08:00"
    assert str(besok["DESCRIPTION"]).split("\n\n")[1] == BESOK_TEXT.strip()
    assert events["arsip: Malam; koma, dan \\ garis"]["DTSTART"].dt.astimezone(zone).strftime("%H:%M") == "19:30"


def test_a_repeats_projected_occurrence_has_the_uid_its_delivery_gets_when_it_is_made(
    workspace, engine, same_database, tmp_path
):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    local = (now - timedelta(minutes=3)).astimezone(ZoneInfo("Asia/Jakarta")).replace(tzinfo=None)
    workspace.post("menit.toml", f'repeat = "* * * * *"\nat = {local.isoformat()}\nto = ["latihan"]\ntext = "Tiap menit"\n')
    built = engine()
    sync(built)
    target = tmp_path / "siar.ics"
    # From the start of this minute: whatever the dispatch below leaves pending is at or after it.
    assert run(workspace, "--ics", str(target), "--days", "1", "--domain", "d.example", now=now)[0] == 0
    events = parse_ics_strictly(target.read_bytes())
    projected = {e["UID"][1] for e in events}
    later = [e for e in events if "a later occurrence of a repeating post" in unescape(e["DESCRIPTION"][1])]
    assert len(later) == calendar.MAX_PROJECTED  # the first 100 after the delivery there is; the rest cut
    assert len(events) - len(later) <= 1  # that delivery, when it falls in the window

    built.run_until_idle(built.dispatcher())  # publishes the minutes gone by; each makes the next

    (pending,) = built.deliveries(post_id="menit", state="pending")
    assert pending["key"] == delivery_key("menit", "latihan", pending["occurrence"])
    assert f"{pending['key']}@d.example" in projected
    assert occurrence_id(pending["due_at"]) == pending["occurrence"]
    code, out, _ = run(workspace, "--account", "latihan")
    assert code == 0 and f"(post menit repeats often: its first {calendar.MAX_PROJECTED} occurrences are shown)" in out


# --- the format itself ---------------------------------------------------------------------------


def test_text_is_escaped_and_long_lines_are_folded_at_75_octets_between_characters():
    assert calendar.escape_text("a\\b;c,d\ne\r\nf\x07") == "a\\\\b\\;c\\,d\\ne\\nf"
    line = "SUMMARY:" + "é" * 100  # two octets each: a fold must not cut one in half
    folded = calendar.fold(line)
    pieces = folded[:-2].split(b"\r\n")
    assert all(len(p) <= 75 for p in pieces) and all(p.startswith(b" ") for p in pieces[1:])
    assert b"".join([pieces[0], *(p[1:] for p in pieces[1:])]).decode() == line
    assert calendar.fold("SHORT:x") == b"SHORT:x\r\n"
