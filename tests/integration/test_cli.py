"""Every command of DESIGN.md §3 run as the real `siar` process, each checked against what it left in
the database and on disk, not only its exit status.

Deliveries that need a person are made by real sends in-process (`settle`: what `run --once`
does) against a local HTTP server: 422 → failed, 401 → paused, a read timeout → unknown, a post
two hours late → held (expired). The command under test then runs as a subprocess.

Every test that checks what a command left in the database runs on SQLite and on PostgreSQL (the
`siar_database` fixture); the rest, about files and output rather than the database, on SQLite.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from alembic.script import ScriptDirectory

from publisher.cli import AUDIT_COLUMNS
from publisher.db import Database
from publisher.migrate import SCRIPTS
from publisher.models import utcnow
from publisher.states import NEEDS_PERSON, State
from publisher.sync import Syncer
from tests.conftest import sqlite_only
from tests.support.commands import delivery, events, os_user, parsed, rows, run_all, settle
from tests.support.fakeserver import Answer, FakeServer
from tests.support.process import dump, query, run_siar

pytestmark = pytest.mark.slow

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config"
JAKARTA = ZoneInfo("Asia/Jakarta")

# lease > 2 × http_timeout; a webhook slower than the timeout is `unknown` after a second.
QUICK = """
[daemon]
timezone = "Asia/Jakarta"
lease = "3s"
http_timeout = "1s"
shutdown_grace = "5s"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "4s"

[accounts.latihan]
platform = "outbox"

[accounts.arsip]
platform = "outbox"
"""


def webhook(name: str, url: str) -> str:
    return f'\n[accounts.{name}]\nplatform = "webhook"\nurl = "{url}"\nsecret = "${{HOOK_SECRET}}"\n'


def hours_ago(hours: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).replace(microsecond=0).isoformat()


@pytest.fixture
def trouble(workspace, siar_database):
    """A workspace after one real pass: something published, and one delivery in each state
    that needs a person."""
    with FakeServer() as server:
        server.route("POST", "/bad", Answer(422, {"error": "text refused"}))
        server.route("POST", "/auth", Answer(401, {"error": "bad signature"}))
        server.route("POST", "/slow", Answer(200, {"id": "late"}, delay=2.5))
        workspace.write_settings(QUICK + webhook("hook-bad", f"{server.url}/bad")
                                 + webhook("hook-auth", f"{server.url}/auth")
                                 + webhook("hook-slow", f"{server.url}/slow")
                                 + webhook("hook-slow2", f"{server.url}/slow"))
        (workspace.root / ".env").write_text("HOOK_SECRET=cli-test-hook-secret\n")
        workspace.post("aman.toml", 'to = ["latihan", "arsip"]\ntext = "Aman"\n')
        workspace.post("nanti.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan", "arsip"]\ntext = "Nanti"\n')
        workspace.post("gagal.toml", 'to = ["hook-bad"]\ntext = "Gagal"\n')
        workspace.post("ganda.toml", 'to = ["latihan", "hook-bad"]\ntext = "Ganda"\n')
        workspace.post("kunci.toml", 'to = ["hook-auth"]\ntext = "Kunci"\n')
        workspace.post("lambat.toml", 'to = ["hook-slow"]\ntext = "Lambat"\n')
        workspace.post("lambat2.toml", 'to = ["hook-slow2"]\ntext = "Lambat lagi"\n')
        workspace.post("telat.toml", f'at = {hours_ago(2)}\nto = ["arsip"]\ntext = "Telat"\n')
        settle(workspace)
        states = {(r["post_id"], r["account"]): r["state"] for r in rows(workspace, "SELECT * FROM delivery")}
        assert states == {
            ("aman", "latihan"): "published", ("aman", "arsip"): "published",
            ("nanti", "latihan"): "pending", ("nanti", "arsip"): "pending",
            ("gagal", "hook-bad"): "failed", ("ganda", "latihan"): "published", ("ganda", "hook-bad"): "failed",
            ("kunci", "hook-auth"): "paused", ("lambat", "hook-slow"): "unknown",
            ("lambat2", "hook-slow2"): "unknown", ("telat", "arsip"): "held",
        }
        yield SimpleNamespace(ws=workspace, root=workspace.root, server=server)


def last_event(workspace, delivery_id: int) -> dict:
    return dict(events(workspace, delivery_id=delivery_id)[-1])


# --- run ---------------------------------------------------------------------------------------


def test_run_once_publishes_what_is_due_into_the_outbox_and_status_then_reports_nothing_to_do(
    workspace, siar_database
):
    workspace.post("aman.toml", 'to = ["latihan", "arsip"]\ntext = "Aman"\n')
    workspace.post("nanti.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Nanti"\n')

    result = run_siar(workspace.root, "run", "--once")

    assert result.returncode == 0, result.stderr
    for account in ("latihan", "arsip"):
        row = delivery(workspace, "aman", account)
        (file,) = (workspace.state / "outbox" / account).glob("*.json")
        assert file.name == f"{row['key']}.json"
        assert json.loads(file.read_text())["text"].strip() == "Aman"
        assert (row["state"], row["attempts"], row["platform_id"]) == ("published", 1, row["key"])
        assert row["url"] == file.resolve().as_uri()
    assert delivery(workspace, "nanti")["state"] == "pending"

    table, as_json = run_all(workspace.root, [["status"], ["status", "--json"]])
    assert (table.returncode, as_json.returncode) == (0, 0)
    assert "Deliveries by state" in table.stdout
    data = parsed(as_json)
    assert {k: v for k, v in data["counts"].items() if v} == {"published": 2, "pending": 1}
    assert data["needs_attention"] == [] and data["paused_accounts"] == []
    assert [r["post_id"] for r in data["next"]] == ["nanti"]


# SQLite only: which files sync accepts does not depend on the backend (the engine tests run it on both).
def test_run_once_exits_one_when_a_post_file_is_invalid_yet_publishes_the_valid_ones(workspace):
    workspace.post("aman.toml", 'to = ["latihan"]\ntext = "Aman"\n')
    workspace.post("rusak.toml", 'to = ["latihan"]\ntext = "Rusak"\nwarna = "merah"\n')

    result = run_siar(workspace.root, "run", "--once")

    assert result.returncode == 1
    assert "rusak.toml" in result.stderr and "sync.file_invalid" in result.stderr
    assert delivery(workspace, "aman")["state"] == "published"
    assert rows(workspace, "SELECT * FROM delivery WHERE post_id = 'rusak'") == []


# SQLite only: a failure recorded on PostgreSQL is what `trouble` sets up for the tests below.
def test_run_once_exits_one_when_a_delivery_fails_and_records_the_platforms_answer(workspace):
    with FakeServer() as server:
        server.route("POST", "/bad", Answer(422, {"error": "text refused"}))
        workspace.write_settings(QUICK + webhook("hook-bad", f"{server.url}/bad"))
        (workspace.root / ".env").write_text("HOOK_SECRET=cli-test-hook-secret\n")
        workspace.post("gagal.toml", 'to = ["hook-bad"]\ntext = "Gagal"\n')

        result = run_siar(workspace.root, "run", "--once")

        assert result.returncode == 1, result.stderr
        (hit,) = server.seen("POST", "/bad")
        assert hit.headers["X-Siar-Signature"].startswith("sha256=")
    row = delivery(workspace, "gagal")
    assert (row["state"], row["http_status"], row["attempts"]) == ("failed", 422, 1)
    assert "HTTP 422" in row["last_error"]
    assert [e["event"] for e in events(workspace, delivery_id=row["id"])][-1] == "failed"


def test_run_once_dry_run_writes_under_state_dry_run_and_leaves_the_real_database_untouched(
    workspace, siar_database
):
    workspace.post("aman.toml", 'to = ["latihan"]\ntext = "Coba dulu"\n')
    settings = workspace.settings()
    db = Database(settings.database)
    db.migrate()
    Syncer(db, settings).run()  # the real database knows the post, pending
    db.dispose()
    real = workspace.state / "siar.db"
    # Byte for byte on SQLite (reading it back could itself touch the -wal file); every row on PostgreSQL.
    snapshot = (lambda: hashlib.sha256(real.read_bytes()).hexdigest()) if workspace.postgres is None else (
        lambda: dump(workspace.database))
    before = snapshot()

    result = run_siar(workspace.root, "run", "--once", "--dry-run")

    assert result.returncode == 0, result.stderr
    (file,) = (workspace.state / "dry-run" / "outbox" / "latihan").glob("*.json")
    assert json.loads(file.read_text())["text"] == "Coba dulu"
    assert not (workspace.state / "outbox").exists()
    assert snapshot() == before
    assert not Path(f"{real}-wal").exists()  # not even opened (on PostgreSQL, no file there at all)
    assert delivery(workspace, "aman")["state"] == "pending"
    dry = query(workspace.state / "dry-run" / "siar.db", "SELECT * FROM delivery")
    assert [r["state"] for r in dry] == ["published"]


# --- check -------------------------------------------------------------------------------------


# SQLite only: `check` is offline, no database on either backend.
def test_check_accepts_the_example_configuration(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, config, ignore=shutil.ignore_patterns("state", ".env"))

    result = run_siar(config, "check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems found" in result.stdout
    assert not (config / "state").exists()  # offline: no database either


# SQLite only: `check` is offline, no database on either backend.
def test_check_names_file_line_and_field_of_every_problem_and_its_json_parses_back(workspace):
    workspace.post("ok.toml", 'to = ["latihan"]\ntext = "Baik"\n')
    broken = workspace.post("rusak.toml", 'to = ["latihan", "tidak-ada"]\ntext = "Rusak"\nwarna = "merah"\n')

    text, as_json = run_all(workspace.root, [["check"], ["check", "--json"]])

    assert (text.returncode, as_json.returncode) == (1, 1)
    found = re.findall(r"^(.+):(\d+): error: (\S+): ", text.stdout, re.MULTILINE)
    assert found == [(str(broken), "1", "to[1]"), (str(broken), "3", "warna")]
    problems = parsed(as_json)
    assert [(p["path"], p["line"], p["field"], p["severity"]) for p in problems] == [
        (str(broken), 1, "to[1]", "error"), (str(broken), 3, "warna", "error")]
    assert "tidak-ada" in problems[0]["message"]


# --- status and show ---------------------------------------------------------------------------


def test_status_counts_match_the_database_and_it_exits_one_while_something_needs_a_person(trouble):
    table, as_json = run_all(trouble.root, [["status"], ["status", "--json"]])

    assert (table.returncode, as_json.returncode) == (1, 1)
    data = parsed(as_json)
    in_db = {r["state"]: r["n"] for r in rows(trouble.ws, "SELECT state, count(*) AS n FROM delivery GROUP BY state")}
    assert data["counts"] == {s.value: in_db.get(s.value, 0) for s in State}
    needing = rows(trouble.ws, "SELECT id FROM delivery WHERE state IN ('failed', 'paused', 'unknown', 'held')")
    assert sorted(r["id"] for r in data["needs_attention"]) == sorted(r["id"] for r in needing)
    assert {r["state"] for r in data["needs_attention"]} == {s.value for s in NEEDS_PERSON}
    assert [a["name"] for a in data["paused_accounts"]] == ["hook-auth"]
    assert "HTTP 401" in data["paused_accounts"][0]["paused_reason"]
    assert "Needs a person" in table.stdout and "hook-auth" in table.stdout and "expired" in table.stdout


def test_show_lists_a_posts_deliveries_with_receipts_and_its_audit_trail(trouble):
    text, as_json, missing = run_all(trouble.root, [["show", "ganda"], ["show", "ganda", "--json"],
                                                    ["show", "tidak-ada"]])

    assert (text.returncode, as_json.returncode, missing.returncode) == (0, 0, 1)
    assert "tidak-ada" in missing.stderr
    data = parsed(as_json)
    assert data["post"]["id"] == "ganda" and data["post"]["path"] == "ganda.toml"
    shown = {d["account"]: d for d in data["deliveries"]}
    published, failed = delivery(trouble.ws, "ganda", "latihan"), delivery(trouble.ws, "ganda", "hook-bad")
    assert (shown["latihan"]["state"], shown["latihan"]["platform_id"], shown["latihan"]["url"]) == (
        "published", published["platform_id"], published["url"])
    assert shown["latihan"]["url"].startswith("file://") and shown["latihan"]["published_at"]
    assert (shown["hook-bad"]["state"], shown["hook-bad"]["http_status"]) == ("failed", 422)
    assert "HTTP 422" in shown["hook-bad"]["last_error"]
    assert [e["seq"] for e in data["audit"]] == [e["seq"] for e in events(trouble.ws, post_id="ganda")]
    trail = {d: [(e["event"], e["http_status"]) for e in data["audit"] if e["delivery_id"] == row["id"]]
             for d, row in (("latihan", published), ("hook-bad", failed))}
    assert trail == {"latihan": [("created", None), ("claimed", None), ("attempt", None), ("published", None)],
                     "hook-bad": [("created", None), ("claimed", None), ("attempt", None), ("failed", 422)]}
    assert "Audit trail" in text.stdout
    assert re.search(rf"^{failed['id']}\s+hook-bad\s+webhook\s+failed", text.stdout, re.MULTILINE)


# --- retry, cancel, resolve --------------------------------------------------------------------


def test_retry_requeues_failed_held_and_paused_deliveries_as_the_os_user_and_they_go_out_again(trouble):
    ws = trouble.ws
    failed, held, paused = delivery(ws, "gagal"), delivery(ws, "telat"), delivery(ws, "kunci")
    assert held["hold_reason"] == "expired"
    before = utcnow()

    results = run_all(trouble.root, [["retry", str(failed["id"])], ["retry", str(held["id"])],
                                     ["retry", f"#{paused['id']}"]])

    assert [r.returncode for r in results] == [0, 0, 0], [r.stdout + r.stderr for r in results]
    assert "failed -> pending" in results[0].stdout and "paused -> pending" in results[2].stdout
    for old in (failed, held, paused):
        row = delivery(ws, old["post_id"])
        assert (row["state"], row["attempts"], row["last_error"], row["hold_reason"]) == ("pending", 0, None, None)
        assert datetime.fromisoformat(row["deadline"]).replace(tzinfo=timezone.utc) > before
        event = [e for e in events(ws, delivery_id=row["id"]) if e["event"] == "requeued"]
        assert [(e["actor"], json.loads(e["detail"])["from"]) for e in event] == [(os_user(), old["state"])]
    account = rows(ws, "SELECT * FROM account WHERE name = 'hook-auth'")[0]
    assert (account["paused"], account["paused_reason"]) == (0, None)
    (resumed,) = events(ws, event="account_resumed")
    assert (resumed["account"], resumed["actor"]) == ("hook-auth", os_user())

    trouble.server.route("POST", "/bad", Answer(200, {"id": "w-1", "url": "https://hooks.example.go.id/1"}))
    again = run_siar(trouble.root, "run", "--once")

    assert again.returncode == 1  # hook-auth still answers 401: paused again
    assert (delivery(ws, "gagal")["state"], delivery(ws, "gagal")["url"]) == (
        "published", "https://hooks.example.go.id/1")
    assert delivery(ws, "telat")["state"] == "published"
    assert (delivery(ws, "kunci")["state"], delivery(ws, "kunci")["attempts"]) == ("paused", 1)


@sqlite_only  # the requeue itself runs on PostgreSQL in the test above
def test_retry_of_a_post_requeues_what_failed_and_leaves_what_was_published(trouble):
    ws = trouble.ws
    published, failed = delivery(ws, "ganda", "latihan"), delivery(ws, "ganda", "hook-bad")

    result = run_siar(trouble.root, "retry", "ganda")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"delivery {published['id']} (latihan): left published: already published" in result.stdout
    assert delivery(ws, "ganda", "hook-bad")["state"] == "pending"
    assert delivery(ws, "ganda", "latihan")["updated_at"] == published["updated_at"]
    assert [e["event"] for e in events(ws, event="requeued")] == ["requeued"]
    assert last_event(ws, failed["id"])["event"] == "requeued"


def test_retry_refuses_an_unknown_delivery_and_resolve_answers_it(trouble):
    ws = trouble.ws
    unknown, unknown2, failed = delivery(ws, "lambat"), delivery(ws, "lambat2"), delivery(ws, "gagal")
    seq_before = rows(ws, "SELECT max(seq) AS s FROM audit_event")[0]["s"]

    retry, empty_url, not_published, not_unknown = run_all(trouble.root, [
        ["retry", str(unknown["id"])],
        ["resolve", str(unknown["id"]), "--published", ""],
        ["resolve", str(unknown2["id"]), "--not-published"],
        ["resolve", str(failed["id"]), "--published", "https://example.go.id/x"],
    ])

    assert retry.returncode == 1 and "siar resolve" in retry.stdout
    assert empty_url.returncode == 2 and "--published" in empty_url.stderr
    assert delivery(ws, "lambat")["state"] == "unknown"
    assert not_unknown.returncode == 1 and "only an unknown delivery" in not_unknown.stdout
    assert delivery(ws, "gagal")["state"] == "failed"
    assert not_published.returncode == 0, not_published.stdout + not_published.stderr
    row = delivery(ws, "lambat2")
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 0, None)
    new = rows(ws, "SELECT * FROM audit_event WHERE seq > :s", s=seq_before)
    assert [(e["event"], e["delivery_id"], e["actor"], json.loads(e["detail"])) for e in new] == [
        ("resolved", unknown2["id"], os_user(), {"published": False})]

    published = run_siar(trouble.root, "resolve", str(unknown["id"]), "--published", "https://hooks.example.go.id/9")

    assert published.returncode == 0, published.stdout + published.stderr
    row = delivery(ws, "lambat")
    assert (row["state"], row["url"]) == ("published", "https://hooks.example.go.id/9")
    assert row["published_at"] is not None
    event = last_event(ws, unknown["id"])
    assert (event["event"], event["actor"]) == ("resolved", os_user())
    assert json.loads(event["detail"]) == {"published": True, "url": "https://hooks.example.go.id/9"}
    assert len(trouble.server.seen("POST", "/slow")) == 2  # one per unknown delivery; nothing resent


def test_cancel_stops_deliveries_not_yet_sent_refuses_published_ones_and_resumes_a_paused_account(trouble):
    ws = trouble.ws
    later = [delivery(ws, "nanti", a) for a in ("latihan", "arsip")]
    published, paused = delivery(ws, "aman", "latihan"), delivery(ws, "kunci")

    one = run_siar(trouble.root, "cancel", str(later[0]["id"]))
    post, refused, pause = run_all(trouble.root, [
        ["cancel", "nanti"], ["cancel", str(published["id"])], ["cancel", str(paused["id"])]])

    assert one.returncode == 0 and "pending -> cancelled" in one.stdout
    assert post.returncode == 0, post.stdout + post.stderr  # one was cancelled already: nothing to do there
    assert refused.returncode == 1 and "already published" in refused.stdout
    assert pause.returncode == 0
    assert [delivery(ws, "nanti", a)["state"] for a in ("latihan", "arsip")] == ["cancelled", "cancelled"]
    assert delivery(ws, "aman", "latihan")["state"] == "published"
    assert delivery(ws, "kunci")["state"] == "cancelled"
    cancelled = events(ws, event="cancelled")
    assert sorted(e["delivery_id"] for e in cancelled) == sorted([later[0]["id"], later[1]["id"], paused["id"]])
    assert {e["actor"] for e in cancelled} == {os_user()}
    # Its only paused delivery is gone: the account must not stay paused with nothing to retry.
    assert rows(ws, "SELECT paused FROM account WHERE name = 'hook-auth'")[0]["paused"] == 0
    assert [e["account"] for e in events(ws, event="account_resumed")] == ["hook-auth"]


# --- audit -------------------------------------------------------------------------------------


def test_audit_filters_by_post_and_since_and_prints_table_json_and_csv(trouble):
    ws = trouble.ws
    cut = utcnow()
    assert run_siar(trouble.root, "cancel", "nanti").returncode == 0
    everything = [dict(e) for e in events(ws)]
    local_cut = cut.astimezone(JAKARTA).replace(tzinfo=None).isoformat()  # naive: the operator's zone

    results = run_all(trouble.root, [
        ["audit", "--post", "gagal", "--format", "json"], ["audit", "--since", cut.isoformat(), "--format", "json"],
        ["audit", "--since", local_cut, "--format", "json"], ["audit", "--since", "1h", "--format", "csv"],
        ["audit"], ["audit", "verify"]])

    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    post_json, since_json, local_json, since_csv, table, verify = results
    assert set(parsed(post_json)[0]) >= set(AUDIT_COLUMNS)
    assert {e["post_id"] for e in parsed(post_json)} == {"gagal"}
    assert [e["seq"] for e in parsed(post_json)] == [e["seq"] for e in everything if e["post_id"] == "gagal"]
    recent = [(e["event"], e["post_id"]) for e in parsed(since_json)]
    assert recent == [("cancelled", "nanti"), ("cancelled", "nanti")]
    assert parsed(local_json) == parsed(since_json)
    table_rows = list(csv.DictReader(io.StringIO(since_csv.stdout)))
    assert list(table_rows[0]) == AUDIT_COLUMNS
    assert [int(r["seq"]) for r in table_rows] == [e["seq"] for e in everything]
    assert table_rows[-1]["actor"] == os_user() and table_rows[-1]["hash"] == everything[-1]["hash"]
    header, *lines = table.stdout.strip().splitlines()
    assert header.split()[:3] == ["SEQ", "AT", "EVENT"] and "ACTOR" in header
    assert len(lines) == len(everything)
    assert f"intact: {len(everything)} events verified" in verify.stdout


# --- accounts ----------------------------------------------------------------------------------


# SQLite only: about siar.toml, masking and the platforms' answers; it checks nothing in the database.
def test_accounts_lists_them_with_secrets_masked_and_verify_asks_each_platform(workspace):
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"ok": True}))
        workspace.add_settings(webhook("hook", f"{server.url}/hook"))
        (workspace.root / ".env").write_text("HOOK_SECRET=accounts-hook-secret-771\n")

        table, as_json, verified = run_all(workspace.root, [
            ["accounts"], ["accounts", "--json"], ["accounts", "--verify", "--json"]])

        assert (table.returncode, as_json.returncode, verified.returncode) == (0, 0, 0), verified.stdout
        assert re.search(r"^hook\s+webhook", table.stdout, re.MULTILINE)
        listed = {a["name"]: a for a in parsed(as_json)}
        assert set(listed) == {"latihan", "arsip", "hook"}
        assert listed["hook"]["settings"] == {"url": f"{server.url}/hook", "secret": "***"}
        checked = {a["name"]: a for a in parsed(verified)}
        assert "outbox folder" in checked["latihan"]["verified"]
        assert "HTTP 200" in checked["hook"]["verified"]
        (ping,) = server.seen("POST", "/hook")
        assert ping.json()["event"] == "ping" and ping.headers["X-Siar-Signature"].startswith("sha256=")
        for result in (table, as_json, verified):
            assert "accounts-hook-secret-771" not in result.stdout + result.stderr

        server.route("POST", "/hook", Answer(401, {"error": "who are you"}))
        refused = run_siar(workspace.root, "accounts", "--verify")

    assert refused.returncode == 1
    line = next(ln for ln in refused.stdout.splitlines() if ln.startswith("hook "))
    assert "AuthExpired: HTTP 401" in line
    assert re.search(r"^latihan\s+outbox\s+outbox folder", refused.stdout, re.MULTILINE)


# --- init, migrate, usage ----------------------------------------------------------------------


# SQLite only: about the files `init` writes, whose configuration names the SQLite database.
def test_init_writes_a_configuration_that_check_accepts_and_run_publishes_from_and_never_overwrites_it(tmp_path):
    target = tmp_path / "baru"

    made = run_siar(target, "init", str(target))

    assert made.returncode == 0, made.stderr
    assert (target / ".env").stat().st_mode & 0o077 == 0  # where the secrets go: owner only
    checked, ran = run_all(target, [["check"], ["run", "--once"]])
    assert checked.returncode == 0, checked.stdout
    assert "chmod 600" not in checked.stdout  # no warning that .env is readable by all
    assert ran.returncode == 0, ran.stderr
    published = query(target / "state" / "siar.db", "SELECT * FROM delivery WHERE state = 'published'")
    assert len(published) >= 1
    assert len(list((target / "state" / "outbox").glob("*/*.json"))) == len(published)

    edited = "# ours\n" + (target / "siar.toml").read_text()
    (target / "siar.toml").write_text(edited)
    refused = run_siar(target, "init", str(target))
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert (target / "siar.toml").read_text() == edited
    forced = run_siar(target, "init", str(target), "--force")
    assert forced.returncode == 0
    assert (target / "siar.toml").read_text() == (EXAMPLE_CONFIG / "siar.toml").read_text()


def test_migrate_brings_a_new_database_to_the_newest_revision_and_is_idempotent(workspace, siar_database):
    (head,) = ScriptDirectory(str(SCRIPTS)).get_heads()

    first = run_siar(workspace.root, "migrate")
    second = run_siar(workspace.root, "migrate")

    assert (first.returncode, second.returncode) == (0, 0), first.stderr
    (version,) = rows(workspace, "SELECT version_num FROM alembic_version")
    assert version["version_num"] == head
    assert first.stdout == second.stdout == f"database schema at revision {version['version_num']}\n"
    assert rows(workspace, "SELECT seq, hash FROM audit_head") == [{"seq": 0, "hash": ""}]


# SQLite only: usage errors stop before any database is opened.
def test_bad_usage_exits_two_and_sends_nothing(workspace):
    workspace.post("aman.toml", 'to = ["latihan"]\ntext = "Aman"\n')
    usage = [[], ["frobnicate"], ["resolve", "1"], ["audit", "--format", "xml"], ["audit", "--since", "kemarin"]]

    results = run_all(workspace.root, usage)

    assert [r.returncode for r in results] == [2] * len(usage), [(r.args, r.stderr) for r in results]
    assert all("usage:" in r.stderr or "error:" in r.stderr for r in results)
    assert not (workspace.state / "outbox").exists()
