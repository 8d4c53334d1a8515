"""Several daemons on one PostgreSQL: every delivery exactly once, per-account order kept, one
audit chain, migrations once — with no coordination but the database's own locks."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from tests.support.fakeserver import Answer, FakeServer
from tests.support.process import DaemonProcess, run_siar, siar_env, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SETTINGS = """
[daemon]
timezone = "Asia/Jakarta"
sync_every = "2s"
lease = "5s"
http_timeout = "2s"
concurrency = 8
max_lateness = "2h"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "2s"
"""


def cluster_config(workspace, server_url: str, accounts: int, per_account: int) -> datetime:
    tables = "".join(f'\n[accounts.kota-{n:03d}]\nplatform = "webhook"\nurl = "{server_url}/hook"\n'
                     for n in range(accounts))
    workspace.write_settings(SETTINGS + tables)
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    for n in range(accounts):
        for i in range(per_account):
            at = (base + timedelta(seconds=i)).isoformat()
            workspace.post(f"kota-{n:03d}/{i:03d}.toml",
                           f'to = ["kota-{n:03d}"]\nat = {at}\ntext = "Kota {n} pos {i}"\n')
    return base


def db_rows(url: str, sql: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).mappings())
    finally:
        engine.dispose()


def settled(url: str, total: int, states: tuple[str, ...] = ("published",)) -> bool:
    quoted = ", ".join(f"'{s}'" for s in states)
    try:
        rows = db_rows(url, f"SELECT count(*) AS n FROM delivery WHERE state IN ({quoted})")
    except ProgrammingError:  # the first daemon has not migrated the schema yet
        return False
    return rows[0]["n"] == total


def received(server: FakeServer) -> list[dict]:
    return [r.json() for r in server.seen("POST", "/hook")]


def test_four_daemons_publish_2000_deliveries_over_100_accounts_exactly_once_in_order(
    workspace, postgres_url, tmp_path
):
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"id": "ok"}))
        cluster_config(workspace, server.url, accounts=100, per_account=20)
        env = siar_env(SIAR_DATABASE=postgres_url)
        daemons = [DaemonProcess(workspace.root, tmp_path / f"d{i}.log", env) for i in range(4)]
        try:
            wait_until(lambda: settled(postgres_url, 2000), timeout=240, interval=1, what="2000 published")
        finally:
            codes = [d.terminate() for d in daemons]
        assert codes == [0, 0, 0, 0]
        bodies = received(server)
    keys = Counter(body["key"] for body in bodies)
    assert len(keys) == 2000 and max(keys.values()) == 1  # none lost, none twice
    by_account: dict[str, list[int]] = defaultdict(list)
    for body in bodies:
        by_account[body["account"]].append(int(body["text"].rsplit(" ", 1)[1]))
    assert all(order == sorted(order) for order in by_account.values())  # per-account due order
    owners = db_rows(postgres_url, "SELECT DISTINCT owner FROM daemon")
    assert len(owners) == 4
    claimers = db_rows(postgres_url, "SELECT DISTINCT detail FROM audit_event WHERE event = 'claimed'")
    assert len({json.loads(r["detail"])["owner"] for r in claimers}) >= 2  # the work was shared
    verify = run_siar(workspace.root, "audit", "verify", env=siar_env(SIAR_DATABASE=postgres_url))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_daemon_killed_mid_run_is_taken_over_and_nothing_is_sent_twice(workspace, postgres_url, tmp_path):
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(200, {"id": "ok"}, delay=0.05))
        cluster_config(workspace, server.url, accounts=40, per_account=10)
        env = siar_env(SIAR_DATABASE=postgres_url)
        first = DaemonProcess(workspace.root, tmp_path / "a.log", env)
        second = DaemonProcess(workspace.root, tmp_path / "b.log", env)
        try:
            assert server.wait_for(60, timeout=60, path="/hook")
            first.kill()
            third = DaemonProcess(workspace.root, tmp_path / "c.log", env)
            try:
                wait_until(lambda: settled(postgres_url, 400, ("published", "unknown")), timeout=180, interval=1,
                           what="every delivery settled")
                time.sleep(3)  # a wrong implementation would resend the unknown ones now
            finally:
                assert third.terminate() == 0
        finally:
            assert second.terminate() == 0
        bodies = received(server)
    keys = Counter(body["key"] for body in bodies)
    assert max(keys.values()) == 1  # nothing sent twice
    rows = db_rows(postgres_url, "SELECT key, state FROM delivery")
    for row in rows:
        if row["state"] == "published":
            assert keys[row["key"]] == 1
        else:
            assert row["state"] == "unknown" and keys[row["key"]] <= 1  # in flight at the kill: a person decides
    unknown = [r for r in rows if r["state"] == "unknown"]
    assert len(unknown) <= 16  # at most what the killed daemon had in flight


def test_two_daemons_starting_together_on_an_empty_database_migrate_it_once(workspace, postgres_url, tmp_path):
    workspace.write_settings(SETTINGS + '\n[accounts.latihan]\nplatform = "outbox"\n')
    env = siar_env(SIAR_DATABASE=postgres_url)
    a = DaemonProcess(workspace.root, tmp_path / "a.log", env)
    b = DaemonProcess(workspace.root, tmp_path / "b.log", env)
    try:
        wait_until(lambda: '"daemon.ready"' in a.logs() and '"daemon.ready"' in b.logs(), timeout=60,
                   what="both ready")
    finally:
        assert a.terminate() == 0 and b.terminate() == 0
    from publisher.migrate import SCRIPTS
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(SCRIPTS)).get_current_head()
    versions = db_rows(postgres_url, "SELECT version_num FROM alembic_version")
    assert [v["version_num"] for v in versions] == [head]
    assert '"error"' not in a.logs() + b.logs()
