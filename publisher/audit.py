"""The audit log: append-only, hash-chained, written in the same transaction as the change.

hash = sha256(prev_hash + canonical JSON of the event). Appends lock the single `audit_head`
row, so concurrent writers (threads or daemons) extend one chain instead of forking it.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from publisher.fastsql import Fast, driver_error
from publisher.models import AuditEvent, AuditHead, utcnow
from publisher.redact import REDACTOR, redact

EVENTS = AuditEvent.__table__
HEAD = AuditHead.__table__

# The fields the hash covers, in this order of meaning (serialised with sorted keys).
FIELDS = (
    "seq", "at", "post_id", "delivery_id", "account", "platform", "event", "attempt",
    "http_status", "platform_id", "error", "actor", "detail",
)  # fmt: skip

DAEMON = "daemon"


def operator() -> str:
    """The OS user running a command, recorded as the actor of what a person did."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown-user"


def canonical(row: dict[str, Any]) -> str:
    """The event as hashed: its FIELDS as JSON with sorted keys, no spaces, UTF-8 as is."""
    return canonical_prefix(row) + ',"seq":' + json.dumps(row.get("seq")) + "}"


def canonical_prefix(row: dict[str, Any]) -> str:
    """The canonical JSON up to its last key, "seq" (sorted keys: it sorts after every other
    field), without it: PostgreSQL's `siar_audit_append` adds the number it assigns."""
    data = {}
    for name in FIELDS:
        if name == "seq":
            continue
        value = row.get(name)
        if isinstance(value, datetime):
            value = value.isoformat()
        data[name] = value
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)[:-1]


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(row)).encode()).hexdigest()


def event(
    name: str,
    *,
    actor: str = DAEMON,
    post_id: str | None = None,
    delivery_id: int | None = None,
    account: str | None = None,
    platform: str | None = None,
    attempt: int | None = None,
    http_status: int | None = None,
    platform_id: str | None = None,
    error: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One event's fields, redacted, ready for `append_many` (which numbers and chains it)."""
    return {
        # Hash the time exactly as the database gives it back: UTC, microseconds.
        "at": (at or utcnow()).astimezone(timezone.utc),
        "post_id": post_id,
        "delivery_id": delivery_id,
        "account": account,
        "platform": platform,
        "event": name,
        "attempt": attempt,
        "http_status": http_status,
        "platform_id": platform_id,
        "error": redact(error),
        "actor": actor,
        # Redacted before encoding: JSON escapes a `"` or `\\` inside a secret, which would hide it
        # from the redactor afterwards.
        "detail": (redact(json.dumps(REDACTOR.deep(detail), sort_keys=True, ensure_ascii=False))
                   if detail else None),
    }


# Built once and run on the driver (see fastsql): an audit append runs several times per delivery.
_HEAD_SELECT = select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)
_HEAD = Fast(_HEAD_SELECT)
_HEAD_LOCKED = Fast(_HEAD_SELECT.with_for_update())
_INSERT = Fast(EVENTS.insert())
_MOVE_HEAD = Fast(update(HEAD).where(HEAD.c.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))


_DEFERRED = "siar_audit_deferred"  # Connection.info key: events held for the commit (PostgreSQL)


def append_many(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Append events (from `event`) in order inside the caller's write transaction: one read and
    one move of the chain's head for all of them. Returns their sequence numbers, or [] when the
    transaction holds its events for its commit (`held_for_commit`)."""
    if not rows:
        return []
    held = conn.info.get(_DEFERRED)
    if held is not None:
        held.extend(rows)
        return []
    head = _HEAD_LOCKED if conn.dialect.name == "postgresql" else _HEAD
    seq, prev = head.run(conn, {}).fetchone()
    chained = []
    for row in rows:
        seq += 1
        row = {**row, "seq": seq, "prev_hash": prev}
        row["hash"] = prev = chain_hash(prev, row)
        chained.append(row)
    _INSERT.many(conn, chained)
    _MOVE_HEAD.run(conn, {"new_seq": seq, "new_hash": prev})
    return [row["seq"] for row in chained]


def append(conn: Connection, name: str, **fields: Any) -> int | None:
    """Append one event inside the caller's write transaction; returns its sequence number
    (None when the transaction holds its events for its commit)."""
    seqs = append_many(conn, [event(name, **fields)])
    return seqs[0] if seqs else None


@contextmanager
def held_for_commit(conn: Connection) -> Iterator[None]:
    """PostgreSQL: hold the block's audit events, then append them and commit in one exchange.

    Every append locks the chain's one head row until commit. Appended as they come, the lock
    spans the transaction's later statements and each wait of its thread for the interpreter,
    and every daemon's writers queue behind it. Held to the end, the events go in one call of
    `siar_audit_append` (migration 0004) sent with the COMMIT in one query: the lock lasts as long
    as the server takes. The caller's transaction must be open; on success it is committed here."""
    held: list[dict[str, Any]] = []
    info = conn.info  # kept: a connection invalidated inside the block refuses `conn.info`
    info[_DEFERRED] = held
    try:
        yield
    finally:
        info.pop(_DEFERRED, None)
    if held:
        _append_and_commit(conn, held)


_APPEND_CALL = "SELECT siar_audit_append(%s::jsonb); COMMIT"


def _append_and_commit(conn: Connection, rows: list[dict[str, Any]]) -> None:
    from psycopg.pq import Escaping  # PostgreSQL only: SQLite installs need not load it

    # One JSON text: psycopg adapts a single string far more cheaply than arrays of values.
    events = json.dumps([{**{k: row[k] for k in FIELDS if k != "seq" and k != "at"},
                          # Stored as the other times are: UTC without an offset.
                          "at": row["at"].astimezone(timezone.utc).replace(tzinfo=None).isoformat(),
                          "prefix": canonical_prefix(row)}
                         for row in rows], ensure_ascii=False)
    driver = conn.connection.driver_connection
    # The events as a literal quoted by libpq (PQescapeLiteral), so the call and the COMMIT travel
    # as one simple query: one exchange, without a pipeline's bookkeeping in Python. If the call
    # fails the server skips the COMMIT and the block rolls back.
    literal = Escaping(driver.pgconn).escape_literal(events.encode())
    try:
        driver.execute(_APPEND_CALL.encode() % literal, prepare=False)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise driver_error(conn, exc, _APPEND_CALL, None) from exc


@dataclass(frozen=True)
class Broken:
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"audit event {self.seq}: {self.reason}"


def verify(conn: Connection) -> tuple[int, Broken | None]:
    """Recompute the chain; returns (events checked, first broken link or None)."""
    prev, expected_seq, count = "", 1, 0
    for row in _rows(conn):
        count += 1
        if row["seq"] != expected_seq:
            return count, Broken(expected_seq, f"missing (the next event found is {row['seq']})")
        if row["prev_hash"] != prev:
            return count, Broken(row["seq"], "its prev_hash does not match the event before it")
        if chain_hash(prev, row) != row["hash"]:
            return count, Broken(row["seq"], "its content does not match its hash (edited)")
        prev, expected_seq = row["hash"], expected_seq + 1
    head_seq, head_hash = conn.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).one()
    if head_seq > expected_seq - 1:
        # The first missing event is the first broken link, not the last one still there.
        return count, Broken(expected_seq, f"missing: the chain ends at {expected_seq - 1} but its recorded "
                                           f"tip is {head_seq} (events removed from the end)")
    if head_seq != expected_seq - 1 or head_hash != prev:
        return count, Broken(expected_seq - 1 if count else 0,
                             f"the chain ends at {expected_seq - 1} but its recorded tip is event {head_seq} "
                             "with another hash (events added past the tip, or the tip edited)")
    return count, None


def _rows(conn: Connection) -> Iterator[dict[str, Any]]:
    result = conn.execute(select(EVENTS).order_by(EVENTS.c.seq)).mappings()
    for row in result:
        yield dict(row)


def events(
    conn: Connection, *, post_id: str | None = None, since: datetime | None = None,
    delivery_id: int | None = None,
) -> Iterable[dict[str, Any]]:
    query = select(EVENTS).order_by(EVENTS.c.seq)
    if post_id is not None:
        query = query.where(EVENTS.c.post_id == post_id)
    if delivery_id is not None:
        query = query.where(EVENTS.c.delivery_id == delivery_id)
    if since is not None:
        query = query.where(EVENTS.c.at >= since)
    return [dict(r) for r in conn.execute(query).mappings()]
