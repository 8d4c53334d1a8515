"""Helpers for the fault-injection suite (tests/faults): a settable clock, the daemon's JSON log,
a small filesystem that can be filled, immutable files, a second SQLite writer that hogs the
lock, freezing a process when it holds no database lock, and PostgreSQL backends to cut."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest


class FakeClock:
    """Stands in for `publisher.models.utcnow` where a module imported it: `clock.now = …`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def use_clock(monkeypatch: pytest.MonkeyPatch, now: datetime) -> FakeClock:
    clock = FakeClock(now)
    for module in ("publisher.dispatch", "publisher.sync", "publisher.daemon"):
        monkeypatch.setattr(f"{module}.utcnow", clock)
    return clock


def log_events(path: Path) -> list[dict[str, Any]]:
    """The structlog JSON lines a daemon wrote to `path` (other lines are skipped)."""
    events = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events


# --- a small filesystem ------------------------------------------------------------------------


class SmallDisk:
    """A tmpfs of `size` bytes mounted at `path`; `fill()` uses up its free space, `clear()` frees it.

    Skips the test where mounting is not allowed (not root, or no CAP_SYS_ADMIN)."""

    def __init__(self, path: Path, size: str = "4m") -> None:
        self.path = path
        self.size = size
        self.filler = path / ".filler"

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        return self

    def fill(self) -> None:
        """Write until the filesystem says ENOSPC: every later write that needs space fails."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 65536, 4096, 512, 1):  # down to the last byte
                chunk = b"\0" * size
                try:
                    while True:
                        os.write(fd, chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0

    def clear(self) -> None:
        self.filler.unlink(missing_ok=True)

    def __exit__(self, *_exc: Any) -> None:
        for _ in range(50):
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """`chattr +i`: not even root may open the files for writing (or replace or remove them)."""
    present = [p for p in paths if p.exists()]
    done = subprocess.run(["chattr", "+i", *map(str, present)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, present)], capture_output=True)


# --- a second SQLite writer ----------------------------------------------------------------------


class LockHog:
    """Another writer on the SQLite file: holds `BEGIN IMMEDIATE` for `hold` seconds, lets go for
    `gap` seconds, again and again until stopped."""

    def __init__(self, db_path: Path, hold: float, gap: float) -> None:
        self.db_path = db_path
        self.hold = hold
        self.gap = gap
        self.stopping = threading.Event()
        self.holds = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            while not self.stopping.is_set():
                conn.execute("BEGIN IMMEDIATE")
                self.holds += 1
                self.stopping.wait(self.hold)
                conn.execute("ROLLBACK")
                self.stopping.wait(self.gap)
        finally:
            conn.close()

    def __enter__(self) -> LockHog:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stopping.set()
        self.thread.join(30)


def sqlite_write_lock_free(db_path: Path) -> bool:
    """True when nobody holds the SQLite write lock right now."""
    conn = sqlite3.connect(db_path, timeout=0.2, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


# --- freezing a process --------------------------------------------------------------------------


def freeze_quietly(pid: int, quiet: Callable[[], bool], attempts: int = 50) -> None:
    """SIGSTOP `pid` at a moment it holds no database lock (as `quiet` tells), so the frozen
    process stalls nobody but itself; retried with a short SIGCONT in between when it does."""
    for _ in range(attempts):
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.05)
        if quiet():
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05 + 0.1 * (uuid.uuid4().int % 3))
    raise AssertionError("the process never let go of its database locks")


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


# --- PostgreSQL ----------------------------------------------------------------------------------


def with_application_name(url: str, name: str) -> str:
    """The same database URL, its connections named in pg_stat_activity."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def pg_admin_url() -> str:
    from tests.conftest import POSTGRES_URL

    return POSTGRES_URL


def pg_backends(name: str) -> list[dict[str, Any]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_admin_url())
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                text("SELECT pid, state, xact_start, wait_event_type FROM pg_stat_activity "
                     "WHERE application_name = :n"),
                {"n": name}).mappings()]
    finally:
        engine.dispose()


class PgCutter:
    """Cuts the named connections (pg_terminate_backend), over one admin connection kept open so
    it can poll fast enough to catch them inside a transaction."""

    def __init__(self, name: str) -> None:
        from sqlalchemy import create_engine

        self.name = name
        self.engine = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
        self.conn = self.engine.connect()
        self.cut_idle = 0
        self.cut_in_transaction = 0

    def cut(self, *, only_in_transaction: bool) -> int:
        from sqlalchemy import text

        where = "application_name = :n" + (" AND xact_start IS NOT NULL" if only_in_transaction else "")
        cut = int(self.conn.execute(
            text(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {where}"),
            {"n": self.name}).scalar() or 0)
        if only_in_transaction:
            self.cut_in_transaction += cut
        else:
            self.cut_idle += cut
        return cut

    def __enter__(self) -> PgCutter:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.conn.close()
        self.engine.dispose()


def pg_quiet(name: str) -> bool:
    """None of the named connections is inside a transaction (so none holds a row lock)."""
    return all(b["xact_start"] is None for b in pg_backends(name))


# --- the test's own view of a daemon's database ----------------------------------------------------


class DbView:
    """Reads a daemon's database (a SQLite file or a PostgreSQL URL) from the test, read-only."""

    def __init__(self, url: str) -> None:
        self.url = url

    @classmethod
    def sqlite(cls, path: Path) -> DbView:
        return cls(f"sqlite:///{path}")

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        from sqlalchemy import create_engine, text

        if self.url.startswith("sqlite:///") and not Path(self.url[len("sqlite:///"):]).exists():
            return []
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(text(sql), params).mappings()]
        except Exception:  # noqa: BLE001 - not migrated yet, or the file is being swapped
            return []
        finally:
            engine.dispose()

    def deliveries(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM delivery ORDER BY id")

    def events(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM audit_event WHERE delivery_id IS NOT NULL ORDER BY seq")

    def states(self) -> dict[str, str]:
        return {r["post_id"]: r["state"] for r in self.deliveries()}

    def verify(self) -> tuple[int, Any]:
        from publisher import audit
        from publisher.db import Database

        db = Database(self.url)
        try:
            with db.read() as conn:
                return audit.verify(conn)
        finally:
            db.dispose()


def assert_nothing_published_without_a_commit(db: DbView, server: Any, outbox: Path, *, settled: bool = True) -> None:
    """The pass rule for faults around a send: `published` only with its committed audit event and
    a real send behind it; a webhook never sent twice; and once settled, every send that left ends
    `published` (outbox: found by lookup) or `unknown` (webhook: nobody can ask), none in flight."""
    from collections import Counter

    sent = Counter(r.json()["key"] for r in server.seen("POST", "/hook")) if server is not None else Counter()
    files = {p.stem for p in outbox.glob("*.json")} if outbox.exists() else set()
    events = db.events()
    for row in db.deliveries():
        published = [e for e in events if e["delivery_id"] == row["id"] and e["event"] == "published"]
        where = f"delivery {row['id']} ({row['post_id']}, {row['platform']}, {row['state']})"
        if row["platform"] == "webhook":
            assert sent[row["key"]] <= 1, f"{where}: sent {sent[row['key']]} times"
        out = sent[row["key"]] == 1 if row["platform"] == "webhook" else row["key"] in files
        if row["state"] == "published":
            assert len(published) == 1, f"{where}: {len(published)} published events"
            assert out, f"{where}: marked published, but nothing reached the platform"
        else:
            assert not published, f"{where}: a published event, but the state is not published"
            if settled and out:
                expected = "unknown" if row["platform"] == "webhook" else "published"
                assert row["state"] == expected, f"{where}: it went out; it must end {expected}"
        if settled:
            assert row["state"] not in ("claimed", "sending"), f"{where}: never settled"
