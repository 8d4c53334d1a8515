"""The daemon as a real process: crashes (SIGKILL) mid-send, retries against a real HTTP server,
SIGTERM with a send in flight, and a post leaving at its time rather than at the next poll."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import sqlite_only
from tests.support.fakeserver import Answer, FakeServer
from tests.support.process import DaemonProcess, query, siar_env, wait_until

# Each on SQLite and on PostgreSQL (a schema of its own): the process-level guarantees hold on both.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("siar_database")]

# Short leases so a crashed daemon's work is reconciled within seconds; lease > 2 × http_timeout.
FAST = """
[daemon]
timezone = "Asia/Jakarta"
sync_every = "1s"
lease = "5s"
http_timeout = "2s"
shutdown_grace = "10s"

[retry]
attempts = 5
first_delay = "1s"
max_delay = "4s"
"""


def webhook_config(workspace, url: str) -> None:
    workspace.write_settings(FAST + f"""
[accounts.hook]
platform = "webhook"
url = "{url}/hook"
secret = "${{HOOK_SECRET}}"

[accounts.latihan]
platform = "outbox"
""")


def deliveries(workspace) -> list:
    return query(workspace.database, "SELECT * FROM delivery ORDER BY id")


def audit_events(workspace, delivery_id: int) -> list:
    return query(workspace.database, "SELECT * FROM audit_event WHERE delivery_id = :d ORDER BY seq",
                 d=delivery_id)


def state_of(workspace, post_id: str) -> str | None:
    rows = query(workspace.database, "SELECT state FROM delivery WHERE post_id = :p", p=post_id)
    return rows[0]["state"] if rows else None


def test_a_daemon_killed_while_a_webhook_request_is_in_flight_leaves_it_unknown_and_never_resends(
    workspace, tmp_path
):
    release = threading.Event()
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"id": "w-1"}, hold=release))
        webhook_config(workspace, server.url)
        workspace.post("p.toml", 'to = ["hook"]\ntext = "Sekali saja"\n')
        env = siar_env(HOOK_SECRET="hook-secret-value-123")
        with DaemonProcess(workspace.root, tmp_path / "first.log", env) as first:
            assert server.wait_for(1, timeout=30, path="/hook"), first.logs()
            assert state_of(workspace, "p") == "sending"  # committed before the request left
            first.kill()
        with DaemonProcess(workspace.root, tmp_path / "second.log", env) as second:
            wait_until(lambda: state_of(workspace, "p") == "unknown", timeout=30, what="unknown")
            time.sleep(2)  # give a wrong implementation the chance to resend
            assert second.terminate() == 0
        release.set()
        assert len(server.seen("POST", "/hook")) == 1
        (row,) = deliveries(workspace)
        assert row["attempts"] == 1
        events = [e["event"] for e in audit_events(workspace, row["id"])]
        assert events == ["created", "claimed", "attempt", "unknown"]


@sqlite_only  # on PostgreSQL the reaper's part runs in the test above; the rest is the outbox's lookup
def test_a_daemon_killed_after_the_outbox_write_settles_published_exactly_once_on_restart(workspace, tmp_path):
    workspace.write_settings(FAST + '\n[accounts.latihan]\nplatform = "outbox"\n')
    workspace.post("p.toml", 'to = ["latihan"]\ntext = "Tepat sekali"\n')
    with DaemonProcess(workspace.root, tmp_path / "first.log", siar_env(SIAR_FAULTS="after_publish=kill")) as first:
        assert first.proc.wait(30) == -9  # killed itself after writing, before recording
    outbox = workspace.state / "outbox" / "latihan"
    assert len(list(outbox.glob("*.json"))) == 1
    assert state_of(workspace, "p") == "sending"
    with DaemonProcess(workspace.root, tmp_path / "second.log") as second:
        wait_until(lambda: state_of(workspace, "p") == "published", timeout=30, what="published")
        assert second.terminate() == 0
    assert len(list(outbox.glob("*.json"))) == 1
    (row,) = deliveries(workspace)
    assert row["attempts"] == 1
    assert [e["event"] for e in audit_events(workspace, row["id"])] == ["created", "claimed", "attempt", "published"]


@sqlite_only  # backoff and Retry-After are the dispatcher's; retries on PostgreSQL: engine tests, test_audit
def test_a_webhook_answering_503_then_429_then_200_is_retried_honouring_retry_after(workspace, tmp_path):
    with FakeServer() as server:
        server.route("POST", "/hook",
                     Answer(503, "Service Unavailable"),
                     Answer(429, {"error": "slow down"}, headers={"Retry-After": "2"}),
                     Answer(200, {"id": "w-42", "url": "https://hooks.example.go.id/p/42"}))
        webhook_config(workspace, server.url)
        workspace.post("p.toml", 'to = ["hook"]\ntext = "Coba lagi"\n')
        with DaemonProcess(workspace.root, tmp_path / "run.log", siar_env(HOOK_SECRET="s3cr3t-hook")) as daemon:
            wait_until(lambda: state_of(workspace, "p") == "published", timeout=40, what="published")
            assert daemon.terminate() == 0
        hits = server.seen("POST", "/hook")
        assert len(hits) == 3
        assert hits[2].at - hits[1].at >= 2.0  # the platform's Retry-After won over the 1s backoff
        assert len({h.headers["Idempotency-Key"] for h in hits}) == 1  # the same key on every attempt
        (row,) = deliveries(workspace)
        assert (row["state"], row["attempts"], row["platform_id"]) == ("published", 3, "w-42")
        trail = [(e["event"], e["attempt"], e["http_status"]) for e in audit_events(workspace, row["id"])]
        assert [t for t in trail if t[0] in ("attempt", "retry", "published")] == [
            ("attempt", 1, None), ("retry", 1, 503),
            ("attempt", 2, None), ("retry", 2, 429),
            ("attempt", 3, None), ("published", 3, None),
        ]


def test_sigterm_lets_the_send_in_flight_finish_records_it_and_exits_zero(workspace, tmp_path):
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"id": "w-7"}, delay=1.5))
        webhook_config(workspace, server.url)
        workspace.post("p.toml", 'to = ["hook"]\ntext = "Selesaikan dulu"\n')
        with DaemonProcess(workspace.root, tmp_path / "run.log", siar_env(HOOK_SECRET="x-secret-x")) as daemon:
            assert server.wait_for(1, timeout=30, path="/hook")
            assert daemon.terminate() == 0
            logs = daemon.logs()
        assert state_of(workspace, "p") == "published"
        assert '"daemon.stopped"' in logs


def test_a_post_leaves_at_its_time_not_before_and_not_at_the_next_poll(workspace, tmp_path):
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"id": "w-9"}))
        webhook_config(workspace, server.url)
        with DaemonProcess(workspace.root, tmp_path / "run.log", siar_env(HOOK_SECRET="x-secret-x")) as daemon:
            time.sleep(1.5)  # the daemon is up and idle
            due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=4)
            workspace.post("tepat.toml", f'to = ["hook"]\nat = {due.isoformat()}\ntext = "Tepat waktu"\n')
            assert server.wait_for(1, timeout=20, path="/hook")
            assert daemon.terminate() == 0
        arrived = server.seen("POST", "/hook")[0].at
        assert arrived >= due.timestamp()
        # Idle, the dispatcher wakes at the due time itself (benchmarks measure how precisely).
        assert arrived - due.timestamp() < 1.0
        body = json.loads(server.seen("POST", "/hook")[0].body)
        assert body["text"] == "Tepat waktu"


def test_a_post_dropped_into_a_running_daemons_folder_is_synced_at_once_not_at_the_next_tick(workspace, tmp_path):
    # The next sync tick is an hour away: only the posts folder's watch (inotify) can pick the file up.
    workspace.write_settings(FAST.replace('sync_every = "1s"', 'sync_every = "1h"')
                             + '\n[accounts.latihan]\nplatform = "outbox"\n')
    with DaemonProcess(workspace.root, tmp_path / "run.log") as daemon:
        wait_until(lambda: '"daemon.dispatching"' in daemon.logs(), timeout=30, what="the first pass")
        assert '"mode": "inotify"' in daemon.logs()
        dropped = time.monotonic()
        workspace.post("2026-11/segera.toml", 'to = ["latihan"]\ntext = "Segera"\n')  # in a new subfolder
        wait_until(lambda: state_of(workspace, "2026-11/segera") == "published", timeout=20, what="published")
        assert time.monotonic() - dropped < 10
        assert daemon.terminate() == 0
