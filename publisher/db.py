"""The database: engine set-up per backend, read and write transactions, and migrations.

SQLite runs in WAL mode with `synchronous=FULL`, and every write transaction starts with
`BEGIN IMMEDIATE`, so two writers never deadlock on a lock upgrade and a commit is durable.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.pool import NullPool

# PostgreSQL advisory lock keys (arbitrary, fixed): migrations, and the one syncing daemon.
MIGRATION_LOCK = 0x5_1A_12_01
SYNC_LOCK = 0x5_1A_12_02

BUSY_TIMEOUT_MS = 15_000
# The newest migration in publisher/migrations/versions (a test keeps the two in step).
SCHEMA_HEAD = "0005"


# PostgreSQL connections per process, in a fixed pool. A delivery's transactions are short; more
# of them at once than a few only queue on the server's cores and on the audit chain's head: on
# the burst bench (2 cores) four daemons drained 10,000 in 21 s with 4 connections each, 26 s
# with 12, one daemon as fast with either; and four daemons take 16 of max_connections (100 by
# default), not 48. No overflow: an overflow connection is closed when it comes back to a full
# pool, so under load the server forked a backend every few deliveries (479 in one burst of
# 10,000), each warming its caches afresh. SQLite's writes queue in the process (GroupCommit);
# its pool serves the readers and is not capped here.
POSTGRES_POOL_SIZE = 4


class Database:
    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        if self.is_sqlite:
            self.path = Path(parsed.database) if parsed.database else None
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(url, pool_size)
            self._group: GroupCommit | None = GroupCommit(self.engine)
        else:
            self.path = None
            self.engine = _postgres_engine(url, min(pool_size, POSTGRES_POOL_SIZE))
            self._group = None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed (durably) before the block's caller goes on.

        SQLite: blocks of this process's threads run one at a time, and blocks that queued up
        behind each other share one commit (see `GroupCommit`). PostgreSQL: one transaction each,
        its audit events appended with its commit (see `audit.held_for_commit`).
        """
        if self._group is not None:
            with self._group.write() as conn:
                yield conn
            return
        from publisher.audit import held_for_commit  # audit imports the models; db must not

        with self.engine.connect() as conn:
            with conn.begin(), held_for_commit(conn):
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def exclusive(self, key: int) -> Iterator[bool]:
        """PostgreSQL: hold a session advisory lock for the block, yielding False if another
        process has it. SQLite serves one daemon, whose write transactions already serialise."""
        if not self.is_postgres:
            yield True
            return
        with self.engine.connect() as conn:
            # One lock per schema: two installations sharing a database do not block each other.
            schema = conn.execute(text("SELECT current_schema()")).scalar() or ""
            key = key ^ (zlib.crc32(schema.encode()) & 0x7FFFFFFF)
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    def migrate(self) -> None:
        """Bring the schema to the newest migration; safe when several daemons start at once."""
        if self.schema_revision() == SCHEMA_HEAD:
            return  # the common case: no need to load Alembic at all (time and memory at start)
        from publisher.migrate import upgrade

        if self.is_sqlite and self.path is not None:
            with _file_lock(self.path.with_name(self.path.name + ".migrate-lock")):
                upgrade(self.engine)
        else:
            upgrade(self.engine)

    def schema_revision(self) -> str | None:
        """The revision the database is at, or None (new, or not reachable yet: migrate says)."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:  # noqa: BLE001 - no table yet, or a fault the real migration will report
            return None

    def refresh_statistics(self) -> None:
        """PostgreSQL: ANALYZE the delivery table now, not when autovacuum next gets to it.

        The batch claim walks ix_delivery_due in order and stops at its limit, but only while the
        planner knows how many deliveries are ready: with statistics from before a sync made
        10,000 due at once, it read and sorted them all for every claim (about 50 ms each,
        hundreds of times). SQLite keeps no statistics the planner relies on: nothing to do.
        """
        if self.is_sqlite:
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE delivery")
            conn.commit()

    def write_counts(self) -> dict[str, int]:
        """SQLite: write blocks run and the commits they took (fewer when grouped)."""
        if self._group is None:
            return {}
        return {"db_write_blocks": self._group.blocks, "db_commits": self._group.commits}

    def dispose(self) -> None:
        if self._group is not None:
            self._group.close()
        self.engine.dispose()


def _run(raw: Any, sql: str) -> None:
    """Plain SQL on the driver's connection, its errors wrapped as SQLAlchemy wraps them (so
    `OperationalError` handlers and `fault_name` see a full disk or a lock like any other)."""
    try:
        raw.execute(sql)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc


class _Batch:
    """One open SQLite write transaction that several threads' blocks go into."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.raw = conn.connection.driver_connection
        _run(self.raw, "BEGIN IMMEDIATE")  # may wait (busy_timeout) for another process
        self.blocks = 0
        self.broken: BaseException | None = None  # a block could not be undone alone: all is lost
        self.error: BaseException | None = None
        self.done = threading.Event()

    def finish(self) -> bool:
        """Commit (or roll back a broken batch); True when the connection is still fit for use."""
        try:
            if self.broken is not None:
                self.error = self.broken
                _run(self.raw, "ROLLBACK")
            else:
                _run(self.raw, "COMMIT")
            return True
        except BaseException as exc:  # noqa: BLE001 - every waiter hears it
            self.error = self.error or exc
            return False
        finally:
            self.done.set()


class GroupCommit:
    """SQLite write transactions for one process: one block at a time, shared commits.

    SQLite has one writer. Threads competing for it through `BEGIN IMMEDIATE` would sleep in
    SQLite's busy handler (1, 2, 5, 10 … 100 ms steps) while the lock sits free, and each commit
    costs an fsync. Here a thread waits its turn on a Python lock instead, runs its block inside
    a savepoint of the open transaction, and the last block of a queue commits for all of them;
    every thread returns only once its block is committed (or raises what the commit raised). A
    block that raises is rolled back alone; the others still commit.

    The transaction is driven with plain SQL on the driver's side of one long-lived connection
    (dropped after any failure): SQLAlchemy's transaction objects cost more CPU than the writes
    they wrap. SQLAlchemy's own "begin" finds the transaction open and leaves it be.
    """

    MAX_BLOCKS = 64  # commit at least this often, however long the queue stays

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._turn = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queued = 0
        self._batch: _Batch | None = None
        self._conn: Connection | None = None
        self.blocks = 0  # write blocks run, and commits made: how much the grouping saved
        self.commits = 0

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._queue_lock:
            self._queued += 1
        self._turn.acquire()
        with self._queue_lock:
            self._queued -= 1
        batch: _Batch | None = None
        try:
            batch = self._batch
            if batch is None:
                batch = self._batch = self._begin()
            batch.blocks += 1
            self.blocks += 1
            raw = batch.raw
            _run(raw, "SAVEPOINT siar_block")
            try:
                yield batch.conn
            except BaseException as exc:
                try:
                    _run(raw, "ROLLBACK TO siar_block")
                    _run(raw, "RELEASE siar_block")
                except BaseException as undo:  # noqa: BLE001 - the transaction is unusable now
                    batch.broken = batch.broken or undo
                raise exc
            try:
                _run(raw, "RELEASE siar_block")
            except BaseException as exc:
                batch.broken = batch.broken or exc
                raise
        finally:
            if batch is not None and self._batch is batch:
                with self._queue_lock:
                    last = self._queued == 0 or batch.blocks >= self.MAX_BLOCKS or batch.broken is not None
                if last:
                    self._batch = None
                    self.commits += 1
                    if not batch.finish():
                        self._drop()
            self._turn.release()
        batch.done.wait()
        if batch.error is not None:
            raise batch.error

    def _begin(self) -> _Batch:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._drop()
            self._conn = self.engine.connect()
        try:
            return _Batch(self._conn)
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never back to the pool: its state is unknown
                conn.close()
            except BaseException:  # noqa: BLE001 - it is being thrown away
                pass

    def close(self) -> None:
        with self._turn:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# Stable names for the database faults an operator must hear about (log field `fault`), by what
# SQLite, PostgreSQL and the drivers say. Anything else is not a database fault but a bug.
_FAULTS = (
    ("database_full", ("database or disk is full", "no space left on device", "could not extend file")),
    ("database_readonly", ("readonly database", "read-only", "read only")),
    ("database_locked", ("database is locked", "database table is locked", "lock timeout")),
    ("database_io_error", ("disk i/o error", "input/output error")),
    ("database_unopenable", ("unable to open database file",)),
    ("database_disconnected", ("terminating connection", "server closed the connection", "connection is closed",
                               "connection is lost", "consuming input failed", "could not receive data",
                               "connection refused", "connection reset", "connection timeout expired",
                               "ssl syscall error", "the database system is shutting down",
                               "the database system is starting up")),
)
# After these a pooled connection may be unusable for good (SQLite opened it read-only, the file
# failed under it): it is dropped, so the next use opens the file afresh once the fault is gone.
_REOPEN = ("database_readonly", "database_io_error", "database_unopenable")


def fault_name(exc: BaseException) -> str | None:
    """The stable name of a database fault (`database_full`, `database_readonly`, …), or None."""
    module = type(exc).__module__.split(".", 1)[0]
    if module not in ("sqlalchemy", "sqlite3", "psycopg", "psycopg2"):
        return None
    if isinstance(exc, DBAPIError) and exc.connection_invalidated and not isinstance(exc.orig, sqlite3.Error):
        return "database_disconnected"
    message = str(exc).lower()
    for name, phrases in _FAULTS:
        if any(phrase in message for phrase in phrases):
            return name
    return "database_error" if isinstance(exc, OperationalError) else None


def _sqlite_engine(url: str, pool_size: int) -> Engine:
    memory = make_url(url).database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}}
    if memory:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN is ours to choose.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        if fault_name(context.original_exception) in _REOPEN:
            context.is_disconnect = True  # the pool drops its connections; new ones open the file again

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.connection.driver_connection.in_transaction:
            return  # GroupCommit began it (BEGIN IMMEDIATE) and will commit it
        conn.exec_driver_sql("BEGIN")

    return engine


# A pooled PostgreSQL connection idle for longer than this is pinged before use (a server
# restart leaves dead ones behind); one back from use a moment ago is not, unless a connection
# was found lost since (then every pooled one is suspect). Pinging every checkout was one more
# round trip per transaction, two or three per delivery.
PING_AFTER_IDLE_S = 1.0


def _postgres_engine(url: str, pool_size: int) -> Engine:
    engine = create_engine(url, pool_size=pool_size, max_overflow=0)
    lost = {"at": 0.0}  # monotonic time a connection of this pool was last found lost

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(_dbapi_conn: Any, _record: Any, _exc: Any) -> None:
        lost["at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["siar_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("siar_idle_since", None)
        if since is not None and since > lost["at"] and time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure: the pool opens a fresh connection
            raise DisconnectionError(f"pooled connection failed its ping: {type(exc).__name__}") from exc
        if not alive:
            raise DisconnectionError("pooled connection failed its ping")

    return engine


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

