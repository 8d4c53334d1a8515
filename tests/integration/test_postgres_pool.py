"""PostgreSQL's connection pool: a connection that died while idle is replaced before use."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from publisher import db as dbmod
from publisher.db import Database, fault_name
from publisher.fastsql import Fast

pytestmark = pytest.mark.postgres


def _kill_backend(url: str, pid: int) -> None:
    admin = create_engine(url)
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar() is True
    finally:
        admin.dispose()


def _backend_pid(database: Database) -> int:
    with database.read() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_killed_while_idle_is_replaced_before_use(postgres_url: str) -> None:
    database = Database(postgres_url, pool_size=1)
    try:
        pid = _backend_pid(database)
        _kill_backend(postgres_url, pid)  # a server restart, or an idle-session timeout
        time.sleep(dbmod.PING_AFTER_IDLE_S + 0.2)
        assert _backend_pid(database) != pid  # pinged at checkout, found dead, reopened: no error
    finally:
        database.dispose()


def test_one_used_a_moment_ago_is_not_pinged_and_a_death_meanwhile_fails_once(postgres_url: str,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The trade made for one round trip less per transaction: a connection that died within
    the last second fails its next use once, as a named fault; the pool then starts afresh."""
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_S", 60.0)
    database = Database(postgres_url, pool_size=1)
    try:
        pid = _backend_pid(database)
        _kill_backend(postgres_url, pid)
        with pytest.raises(OperationalError) as failed:
            _backend_pid(database)
        assert fault_name(failed.value) == "database_disconnected"
        assert _backend_pid(database) != pid
    finally:
        database.dispose()


def test_a_connection_lost_under_a_fast_statement_gets_the_others_pinged(postgres_url: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement run on the driver (publisher/fastsql.py) meets the lost connection: it is
    invalidated as SQLAlchemy would, and the pool's other connections, used a moment ago too,
    are pinged before their next use instead of failing one by one."""
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE_S", 60.0)
    database = Database(postgres_url, pool_size=2)
    pid_of = Fast(text("SELECT pg_backend_pid()"))
    try:
        first, second = database.engine.connect(), database.engine.connect()
        pids = [int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in (first, second)]
        first.close()
        second.close()
        for pid in pids:
            _kill_backend(postgres_url, pid)
        with pytest.raises(OperationalError) as failed, database.write() as conn:
            pid_of.run(conn, {})
        assert fault_name(failed.value) == "database_disconnected"
        for _ in range(3):  # every later transaction finds a live connection
            with database.write() as conn:
                assert pid_of.run(conn, {}).fetchone()[0] not in pids
    finally:
        database.dispose()


def test_under_load_the_pool_reuses_its_connections_rather_than_forking_new_server_backends(postgres_url: str) -> None:
    """A fixed pool: threads wanting more connections than it holds wait for one. With overflow,
    each connection past the pool's size was closed on its way back and another opened for the
    next wait: a burst had the server start a backend every few deliveries."""
    import threading

    size = 3
    database = Database(postgres_url, pool_size=size)
    pids: set[int] = set()
    lock = threading.Lock()

    def writer() -> None:
        for _ in range(15):
            with database.write() as conn:
                pid = int(conn.execute(text("SELECT pg_backend_pid() FROM pg_sleep(0.005)")).scalar_one())
            with lock:
                pids.add(pid)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        database.dispose()
    assert len(pids) == size, sorted(pids)
