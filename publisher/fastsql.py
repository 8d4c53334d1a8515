"""Hot statements run straight on the driver's cursor, compiled once per backend.

A delivery runs about a dozen small statements (its fenced updates, its audit appends, its
account's pacing). Through `Connection.execute` each costs ~30 µs of SQLAlchemy bookkeeping
(cache key, execution context, result set-up, events) around ~3 µs of SQLite work, and under a
burst that bookkeeping was a large share of the daemon's CPU. A `Fast` statement keeps SQLAlchemy
for what it is good at here (building the statement, quoting, each column type's conversion of
its values) and skips the rest: it is compiled once per dialect and set of parameter names, and
run on the driver's cursor inside the caller's open transaction.

Driver errors are wrapped as SQLAlchemy wraps them (`driver_error`), so fault names and
`OperationalError` handlers see them as before, and a lost connection is invalidated as SQLAlchemy
would. Outside an open transaction a `Fast` statement falls back to `Connection.execute`, which
begins one: it never runs a statement in autocommit by accident.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Executable


class _Compiled:
    """One statement compiled for one dialect and one set of parameter names."""

    def __init__(self, statement: Any, dialect: Any, keys: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self.sql = compiled.string
        if "POSTCOMPILE" in self.sql:  # an IN (…) list is rendered per execution: not for this path
            raise ValueError(f"Fast cannot run a statement with an expanding IN parameter: {self.sql}")
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup or []) if self.positional else list(compiled.binds)
        self.processors: list[tuple[str, Callable[[Any], Any] | None]] = []
        for name in names:
            bind = compiled.binds[name]
            self.processors.append((name, bind.type.dialect_impl(dialect).bind_processor(dialect)))
        # Values SQLAlchemy fixed at compile time (literal `.values(x=1)`, a WHERE's constant).
        self.fixed = {name: bind.effective_value for name, bind in compiled.binds.items()
                      if name not in keys and not bind.required}

    def params(self, values: Mapping[str, Any]) -> Any:
        out = []
        fixed = self.fixed
        for name, process in self.processors:  # in the statement's order (a name may repeat)
            value = values[name] if name in values else fixed[name]
            out.append(process(value) if process is not None and value is not None else value)
        return tuple(out) if self.positional else {name: v for (name, _), v in zip(self.processors, out)}


class Fast:
    """A statement to run often: `Fast(update(t).where(t.c.id == bindparam("w_id")))`.

    `run(conn, params)` returns the driver's cursor (its `rowcount`, `fetchone()`); `many(conn,
    rows)` runs it once per row in one call. Values are converted by the columns' types as
    SQLAlchemy would; results are the driver's own (no result-type conversion: use it for
    statements whose results are plain numbers and text)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}
        self._lock = threading.Lock()

    def _for(self, conn: Connection, keys: Iterable[str]) -> _Compiled:
        key = (conn.dialect.name, tuple(sorted(keys)))
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key)
                if compiled is None:
                    compiled = self._compiled[key] = _Compiled(self.statement, conn.dialect, key[1])
        return compiled

    def run(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        driver = _open_driver(conn)
        if driver is None:
            return _Fallback(conn.execute(self.statement, dict(params)))  # type: ignore[call-overload]
        compiled = self._for(conn, params)
        values = compiled.params(params)
        cursor = driver.cursor()
        try:
            cursor.execute(compiled.sql, values)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise driver_error(conn, exc, compiled.sql, values, cursor) from exc
        return cursor

    def many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        driver = _open_driver(conn)
        if driver is None:
            conn.execute(self.statement, [dict(r) for r in rows])  # type: ignore[call-overload]
            return
        compiled = self._for(conn, rows[0])
        values = [compiled.params(row) for row in rows]
        cursor = driver.cursor()
        try:
            cursor.executemany(compiled.sql, values)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise driver_error(conn, exc, compiled.sql, values, cursor) from exc
        finally:
            cursor.close()


def driver_error(conn: Connection, exc: Exception, sql: str, values: Any, cursor: Any = None) -> DBAPIError:
    """An error the driver raised on `conn`, as SQLAlchemy raises it; a lost connection is
    invalidated as SQLAlchemy invalidates it, so the pool never hands it out again (and pings the
    others, see db.py)."""
    lost = bool(conn.dialect.is_disconnect(exc, conn.connection.driver_connection, cursor))
    if lost and not conn.invalidated:
        conn.invalidate(exc)
    return DBAPIError.instance(sql, values, exc, conn.dialect.loaded_dbapi.Error, connection_invalidated=lost)


class _Fallback:
    """`Connection.execute`'s result, shaped like a driver cursor for `Fast.run`'s callers."""

    def __init__(self, result: Any) -> None:
        self._result = result
        self.rowcount = result.rowcount

    def fetchone(self) -> Any:
        row = self._result.fetchone()
        return tuple(row) if row is not None else None


def _open_driver(conn: Connection) -> Any:
    """The driver connection when a transaction is open on it, else None (use SQLAlchemy)."""
    driver = conn.connection.driver_connection
    if conn.in_transaction():
        return driver
    # SQLite under GroupCommit: the transaction was begun on the driver (BEGIN IMMEDIATE).
    if getattr(driver, "in_transaction", False) is True:
        return driver
    return None
