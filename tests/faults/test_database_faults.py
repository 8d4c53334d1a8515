"""Database faults (issue 4, item 5): the disk full, the database file read-only, another writer
hogging the SQLite lock, PostgreSQL connections cut mid-transaction.

Pass rule, each time: nothing is `published` without a committed transaction (a send that left
while the database failed ends `published` through the outbox's lookup, or `unknown` for a
webhook — never sent again); the daemon stays up, says in an error event what is wrong, and
carries on by itself once the fault clears.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support.fakeserver import Answer, FakeServer
from tests.support.faultkit import (
    DbView,
    LockHog,
    SmallDisk,
    assert_nothing_published_without_a_commit,
    immutable,
    log_events,
    PgCutter,
    pg_backends,
    with_application_name,
)
from tests.support.process import DaemonProcess, siar_env, wait_until

pytestmark = pytest.mark.slow

SETTINGS = """
[daemon]
timezone = "Asia/Jakarta"
sync_every = "1s"
lease = "3s"
http_timeout = "1s"
shutdown_grace = "5s"
{database}

[retry]
attempts = 3
first_delay = "1s"
max_delay = "2s"

[accounts.latihan]
platform = "outbox"

[accounts.hook]
platform = "webhook"
url = "{url}/hook"
secret = "${{HOOK_SECRET}}"
"""


def configure(workspace: Any, server: FakeServer, database: str | None = None) -> None:
    line = f'database = "{database}"' if database else ""
    workspace.write_settings(SETTINGS.format(url=server.url, database=line))


def post(workspace: Any, name: str, account: str) -> None:
    workspace.post(f"{name}.toml", f'to = ["{account}"]\ntext = "Pos {name} {uuid.uuid4().hex[:6]}"\n')


def errors(log: Path) -> list[dict[str, Any]]:
    return [e for e in log_events(log) if e.get("level") == "error"]


def named(log: Path, fault: str) -> list[dict[str, Any]]:
    """Error events whose `fault` field names the fault."""
    return [e for e in errors(log) if e.get("fault") == fault]


def all_published(db: DbView, *names: str) -> bool:
    states = db.states()
    return all(states.get(n) == "published" for n in names)


def checkpoint_truncate(path: Path) -> None:
    """Empty the WAL into the database file, so the next commit must grow the WAL on disk."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        for _ in range(50):
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.05)
        raise AssertionError("the WAL could not be checkpointed")
    finally:
        conn.close()


ENV = {"HOOK_SECRET": "db-fault-secret-1"}


# --- disk full -----------------------------------------------------------------------------------


def test_a_full_disk_under_the_database_loses_and_doubles_nothing_and_the_daemon_carries_on(workspace, tmp_path):
    with SmallDisk(tmp_path / "disk", size="16m") as disk, FakeServer() as server:
        db_path = disk.path / "siar.db"
        db = DbView.sqlite(db_path)
        server.route("POST", "/hook", Answer(200, {"id": "w"}))
        configure(workspace, server, f"sqlite:///{db_path}")
        post(workspace, "warm-o", "latihan")
        post(workspace, "warm-h", "hook")
        outbox = workspace.state / "outbox" / "latihan"
        # Each send pauses 2 s between the platform's answer and recording it: the disk fills then.
        env = siar_env(**ENV, SIAR_FAULTS="after_publish=sleep:2")
        log = tmp_path / "run.log"
        with DaemonProcess(workspace.root, log, env) as daemon:
            wait_until(lambda: all_published(db, "warm-o", "warm-h"), timeout=30, what="warm-up published")
            post(workspace, "mid-o", "latihan")
            post(workspace, "mid-h", "hook")
            wait_until(lambda: len(list(outbox.glob("*.json"))) == 2 and len(server.seen("POST", "/hook")) == 2,
                       timeout=20, interval=0.02, what="both sends out, not yet recorded")
            checkpoint_truncate(db_path)
            disk.fill()
            post(workspace, "during-o", "latihan")  # synced only once there is room again
            wait_until(lambda: named(log, "database_full"), timeout=20, what="the fault named in the log")
            time.sleep(3)
            assert daemon.proc.poll() is None  # still running
            assert_nothing_published_without_a_commit(db, server, outbox, settled=False)
            assert {s for n, s in db.states().items() if n.startswith("mid")} == {"sending"}
            assert "during-o" not in db.states()

            disk.clear()
            post(workspace, "after-h", "hook")
            wait_until(lambda: all_published(db, "mid-o", "during-o", "after-h")
                       and db.states().get("mid-h") in ("published", "unknown", "failed"), timeout=40, what="recovered")
            assert db.states()["mid-h"] == "unknown"  # it left, its answer was not recorded: a person decides
            assert daemon.proc.poll() is None
            assert daemon.terminate() == 0
        assert_nothing_published_without_a_commit(db, server, outbox)
        assert len(server.seen("POST", "/hook")) == 3  # warm-h, mid-h (once: unknown, not resent), after-h
        checked, broken = db.verify()
        assert broken is None


# --- a read-only database file ---------------------------------------------------------------------


def test_a_read_only_database_file_at_start_is_reported_and_the_daemon_starts_work_when_it_is_writable(
    workspace, tmp_path
):
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"id": "w"}))
        configure(workspace, server)
        db_path = workspace.state / "siar.db"
        db = DbView.sqlite(db_path)
        outbox = workspace.state / "outbox" / "latihan"
        post(workspace, "warm-o", "latihan")
        with DaemonProcess(workspace.root, tmp_path / "first.log", siar_env(**ENV)) as first:
            wait_until(lambda: all_published(db, "warm-o"), timeout=30, what="warm-up published")
            assert first.terminate() == 0
        post(workspace, "ro-o", "latihan")
        post(workspace, "ro-h", "hook")
        log = tmp_path / "second.log"
        second = None
        try:
            # Between runs the file becomes read-only (a restore with the wrong attributes, a
            # remount): not even root may write it.
            with immutable(db_path):
                second = DaemonProcess(workspace.root, log, siar_env(**ENV))
                wait_until(lambda: named(log, "database_readonly"), timeout=20, what="the fault named in the log")
                time.sleep(2)
                assert second.proc.poll() is None
                assert server.seen("POST", "/hook") == [] and len(list(outbox.glob("*.json"))) == 1
                assert "ro-o" not in db.states()
            # Writable again: the same process takes up the work.
            wait_until(lambda: all_published(db, "ro-o", "ro-h"), timeout=30, what="recovered")
            post(workspace, "after-o", "latihan")
            wait_until(lambda: all_published(db, "after-o"), timeout=20, what="later posts publish")
            assert second.terminate() == 0
        finally:
            if second is not None:
                second.__exit__(None, None, None)
        assert_nothing_published_without_a_commit(db, server, outbox)
        assert db.verify()[1] is None


# --- another writer hogging the lock ----------------------------------------------------------------


def test_another_writer_holding_the_sqlite_lock_again_and_again_delays_but_loses_and_doubles_nothing(
    workspace, tmp_path
):
    def answer(seen):  # the platform takes half a second over "locked-h"
        return Answer(200, {"id": "w"}, delay=0.5 if seen.json().get("post_id") == "locked-h" else 0)

    def arrived(post_id: str) -> bool:
        return any(r.json().get("post_id") == post_id for r in server.seen("POST", "/hook"))

    with FakeServer() as server:
        server.route("POST", "/hook", answer)
        configure(workspace, server)
        db_path = workspace.state / "siar.db"
        db = DbView.sqlite(db_path)
        outbox = workspace.state / "outbox" / "latihan"
        log = tmp_path / "run.log"
        post(workspace, "warm-h", "hook")
        with DaemonProcess(workspace.root, log, siar_env(**ENV)) as daemon:
            wait_until(lambda: all_published(db, "warm-h"), timeout=30, what="warm-up published")
            # Short holds (under the 15 s busy timeout), again and again: everything waits its turn.
            names = [f"busy-{i}" for i in range(6)]
            with LockHog(db_path, hold=1.5, gap=0.1) as hog:
                for i, name in enumerate(names):
                    post(workspace, name, "latihan" if i % 2 else "hook")
                wait_until(lambda: all_published(db, *names), timeout=40, what="all published meanwhile")
            assert hog.holds >= 2
            # A hold longer than the busy timeout, taken while "locked-h" is at the platform:
            # recording its answer fails; it stays `sending` until its lease runs out.
            post(workspace, "locked-h", "hook")
            wait_until(lambda: arrived("locked-h"), timeout=20, interval=0.01, what="locked-h sent")
            # Held until the fault is seen: a write queued before the answer's (a lease renewal or
            # heartbeat that fell in the half second at the platform) fails its 15 s busy timeout
            # first, so the answer's may fail only 30 s or more after the hold began.
            with LockHog(db_path, hold=90, gap=0.1) as hog:
                wait_until(lambda: [e for e in named(log, "database_locked")
                                    if e.get("event") == "delivery.crashed" and e.get("post") == "locked-h"],
                           timeout=60, what="the fault named in the log")
                assert db.states()["locked-h"] == "sending"
                hog.stopping.set()
            assert daemon.proc.poll() is None
            post(workspace, "after-o", "latihan")
            wait_until(lambda: all_published(db, "after-o") and db.states().get("locked-h") != "sending",
                       timeout=30, what="recovered")
            assert daemon.terminate() == 0
        assert_nothing_published_without_a_commit(db, server, outbox)
        states = db.states()
        assert states["locked-h"] == "unknown"  # sent, answer not recordable: a person decides
        assert all(states[n] == "published" for n in names)
        assert db.verify()[1] is None


# --- PostgreSQL connections cut ------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_connections_cut_mid_transaction_lose_and_double_nothing(workspace, tmp_path, postgres_url):
    name = f"siar-cut-{uuid.uuid4().hex[:8]}"
    release = threading.Event()
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"id": "w"}, hold=release), Answer(200, {"id": "w"}, delay=0.1))
        configure(workspace, server)
        db = DbView(postgres_url)
        outbox = workspace.state / "outbox" / "latihan"
        log = tmp_path / "run.log"
        # Each send pauses 1 s between the platform's answer and recording it.
        env = siar_env(**ENV, SIAR_DATABASE=with_application_name(postgres_url, name),
                       SIAR_FAULTS="after_publish=sleep:1")
        with DaemonProcess(workspace.root, log, env) as daemon:
            post(workspace, "mid-o", "latihan")
            post(workspace, "mid-h", "hook")
            wait_until(lambda: len(list(outbox.glob("*.json"))) == 1 and server.seen("POST", "/hook"),
                       timeout=30, interval=0.02, what="both sends out, not yet recorded")
            # The test holds the audit chain's tip: recording the two sends blocks inside its
            # transaction (the delivery row already updated); then those connections are cut.
            admin = create_engine(postgres_url)
            try:
                with admin.connect() as conn:
                    conn.execute(text("SELECT * FROM audit_head WHERE id = 1 FOR UPDATE"))
                    release.set()
                    waiting = lambda: [b for b in pg_backends(name) if b["wait_event_type"] == "Lock"]  # noqa: E731
                    wait_until(lambda: len(waiting()) >= 2, timeout=20, interval=0.05,
                               what="both records waiting inside their transactions")
                    with PgCutter(name) as cutter:
                        assert cutter.cut(only_in_transaction=True) >= 2
                    conn.rollback()
            finally:
                admin.dispose()
            wait_until(lambda: named(log, "database_disconnected"), timeout=20, what="the fault named in the log")
            # And a storm: for 4 s, every connection caught inside a transaction is cut, now and then all.
            names = [f"cut-{i:02d}" for i in range(10)]
            for i, post_name in enumerate(names):
                post(workspace, post_name, "latihan" if i % 2 else "hook")
            with PgCutter(name) as cutter:
                stop, rounds = time.time() + 4, 0
                while time.time() < stop:
                    cutter.cut(only_in_transaction=rounds % 50 != 49)
                    rounds += 1
            assert cutter.cut_in_transaction + cutter.cut_idle >= 5
            wait_until(lambda: len(db.deliveries()) == len(names) + 2
                       and all(r["state"] in ("published", "unknown") for r in db.deliveries()),
                       timeout=60, interval=0.5, what="every post settled")
            assert daemon.proc.poll() is None
            post(workspace, "after-o", "latihan")
            wait_until(lambda: all_published(db, "after-o"), timeout=20, what="later posts publish")
            assert daemon.terminate() == 0
        assert_nothing_published_without_a_commit(db, server, outbox)
        states = db.states()
        assert (states["mid-o"], states["mid-h"]) == ("published", "unknown")  # found by lookup; a person decides
        assert all(r["state"] == "published" for r in db.deliveries() if r["platform"] == "outbox")
        assert db.verify()[1] is None
