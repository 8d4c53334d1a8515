"""Fencing (issue 4, item 3): a daemon frozen (SIGSTOP) past its lease, another daemon takes the
delivery over, then the frozen one is let go (SIGCONT). Its writes change nothing — every one of
them names the lease it lost — and it sends nothing more for that delivery.

Frozen at two moments: with its webhook request held open by the server (after `sending` was
committed), and between the claim and `sending`. On SQLite (two processes on one file) and on
PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakeserver import Answer, FakeServer
from tests.support.faultkit import (
    DbView,
    freeze_quietly,
    log_events,
    pg_quiet,
    sqlite_write_lock_free,
    thaw,
    with_application_name,
)
from tests.support.process import DaemonProcess, siar_env, wait_until

pytestmark = pytest.mark.slow

# lease > 2 × http_timeout; short, so a frozen daemon loses its lease within seconds.
SETTINGS = """
[daemon]
timezone = "Asia/Jakarta"
sync_every = "1s"
lease = "3s"
http_timeout = "1s"
shutdown_grace = "5s"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "2s"

[accounts.hook]
platform = "webhook"
url = "{url}/hook"
secret = "${{HOOK_SECRET}}"
"""


class Database(DbView):
    """The daemons' one delivery, and when its lease has run out."""

    def delivery(self) -> dict[str, Any] | None:
        rows = self.deliveries()
        return rows[0] if rows else None

    def state(self) -> str | None:
        row = self.delivery()
        return row["state"] if row else None

    def lease_over(self) -> bool:
        row = self.delivery()
        if row is None or row["lease_expires"] is None:
            return False
        expires = row["lease_expires"]
        if isinstance(expires, str):
            expires = datetime.fromisoformat(expires)
        return expires.replace(tzinfo=timezone.utc) < datetime.now(timezone.utc)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request, workspace, tmp_path):
    """(database view, environment for daemon A, environment for daemon B, A's connection name)."""
    name = f"siar-frozen-{uuid.uuid4().hex[:8]}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        db = Database(url)
        env_a = siar_env(HOOK_SECRET="fence-secret-1", SIAR_DATABASE=with_application_name(url, name))
        env_b = siar_env(HOOK_SECRET="fence-secret-1", SIAR_DATABASE=url)
        quiet = lambda: pg_quiet(name)  # noqa: E731
    else:
        db = Database.sqlite(workspace.state / "siar.db")
        env_a = siar_env(HOOK_SECRET="fence-secret-1")
        env_b = siar_env(HOOK_SECRET="fence-secret-1")
        quiet = lambda: sqlite_write_lock_free(workspace.state / "siar.db")  # noqa: E731
    return db, env_a, env_b, quiet


def lease_lost_steps(log: Path) -> list[str]:
    return [e.get("step") for e in log_events(log) if e.get("event") == "delivery.lease_lost"]


def test_a_daemon_frozen_while_its_request_is_held_open_is_fenced_off_after_another_takes_over(
    workspace, tmp_path, setup
):
    db, env_a, env_b, quiet = setup
    release = threading.Event()
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"id": "w-1"}, hold=release))
        workspace.write_settings(SETTINGS.format(url=server.url))
        workspace.post("p.toml", 'to = ["hook"]\ntext = "Satu kali saja"\n')
        with DaemonProcess(workspace.root, tmp_path / "a.log", env_a) as a:
            assert server.wait_for(1, timeout=30, path="/hook"), a.logs()
            assert db.state() == "sending"
            freeze_quietly(a.proc.pid, quiet)
            wait_until(db.lease_over, timeout=15, interval=0.05, what="A's lease to run out")
            try:
                with DaemonProcess(workspace.root, tmp_path / "b.log", env_b) as b:
                    # A's lease runs out; B reconciles the send A may have made: a webhook cannot be
                    # asked, so a person decides (never a blind resend).
                    wait_until(lambda: db.state() == "unknown", timeout=30, what="B takes over")
                    taken = db.delivery()
                    trail = db.events()
                    release.set()  # the platform answers A's request: "created"
                    thaw(a.proc.pid)
                    wait_until(lambda: lease_lost_steps(tmp_path / "a.log"), timeout=15,
                               what="A notices it lost the lease")
                    time.sleep(1.5)  # A's scheduler runs renew, reap, dispatch again meanwhile
                    assert a.proc.poll() is None and b.proc.poll() is None
                    assert db.delivery() == taken  # A's writes changed nothing
                    assert db.events() == trail
                    assert b.terminate() == 0
            finally:
                thaw(a.proc.pid)
            assert a.terminate() == 0
        assert len(server.seen("POST", "/hook")) == 1  # A sent nothing more
    row = db.delivery()
    assert (row["state"], row["attempts"]) == ("unknown", 1)
    events = [e["event"] for e in db.events()]
    assert events == ["created", "claimed", "attempt", "unknown"]  # no `published`, no second `attempt`
    assert lease_lost_steps(tmp_path / "a.log") in (["published"], ["unknown"])
    checked, broken = db.verify()
    assert broken is None and checked == 4


def test_a_daemon_frozen_between_claim_and_send_sends_nothing_after_another_took_the_delivery(
    workspace, tmp_path, setup
):
    db, env_a, env_b, quiet = setup
    env_a = {**env_a, "SIAR_FAULTS": "after_claim=sleep:1.5"}  # a window to freeze A in
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"id": "w-2"}))
        workspace.write_settings(SETTINGS.format(url=server.url))
        workspace.post("p.toml", 'to = ["hook"]\ntext = "Satu kali saja"\n')
        with DaemonProcess(workspace.root, tmp_path / "a.log", env_a) as a:
            wait_until(lambda: db.state() == "claimed", timeout=30, interval=0.02, what="A claims")
            freeze_quietly(a.proc.pid, quiet)
            wait_until(db.lease_over, timeout=15, interval=0.05, what="A's lease to run out")
            try:
                with DaemonProcess(workspace.root, tmp_path / "b.log", env_b) as b:
                    # A's lease runs out before it sent anything: B releases the delivery and sends it.
                    wait_until(lambda: db.state() == "published", timeout=30, what="B publishes")
                    done = db.delivery()
                    trail = db.events()
                    thaw(a.proc.pid)
                    wait_until(lambda: lease_lost_steps(tmp_path / "a.log"), timeout=15,
                               what="A notices it lost the lease")
                    time.sleep(1.5)
                    assert a.proc.poll() is None and b.proc.poll() is None
                    assert db.delivery() == done
                    assert db.events() == trail
                    assert b.terminate() == 0
            finally:
                thaw(a.proc.pid)
            assert a.terminate() == 0
        hits = server.seen("POST", "/hook")
        assert len(hits) == 1  # sent once, by B; A sent nothing
    assert lease_lost_steps(tmp_path / "a.log") == ["sending"]
    row = db.delivery()
    assert (row["state"], row["attempts"], row["platform_id"]) == ("published", 1, "w-2")
    events = db.events()
    assert [e["event"] for e in events] == ["created", "claimed", "released", "claimed", "attempt", "published"]
    owners = [json.loads(e["detail"])["owner"] for e in events if e["event"] == "claimed"]
    assert len(set(owners)) == 2
    checked, broken = db.verify()
    assert broken is None and checked == 6
