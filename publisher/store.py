"""Delivery rows: creation, the batch claim, and fenced transitions, each with its audit event.

Every write that follows a claim names the lease owner and the claim token in its WHERE clause:
a worker that lost its lease (frozen, partitioned, too slow) changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cache
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection, Integer, Select, Update, and_, bindparam, exists, func, insert, literal_column, or_, select, union_all,
    update,
)
from sqlalchemy.engine import RowMapping

from publisher import audit
from publisher.fastsql import Fast
from publisher.models import Account, Delivery, Post
from publisher.redact import redact
from publisher.states import IN_FLIGHT, READY, HoldReason, State

D = Delivery.__table__
P = Post.__table__
A = Account.__table__


def delivery_key(post_id: str, account: str, occurrence: str) -> str:
    """The stable idempotency key: the same post, account and occurrence always give the same key."""
    digest = hashlib.sha256(f"{post_id}\x00{account}\x00{occurrence}".encode()).hexdigest()
    return f"siar-{digest[:32]}"


def message_json(content: Mapping[str, Any]) -> tuple[str, str]:
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text, hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Lease:
    """A claim on one delivery: who holds it and with which token."""

    delivery_id: int
    owner: str
    token: int

    def params(self) -> dict[str, Any]:
        """The parameters of the fence (`_FENCE`): the WHERE clause of every write after a claim."""
        return {"w_id": self.delivery_id, "w_owner": self.owner, "w_token": self.token}


# A fenced UPDATE, built once and run on the driver (see fastsql): its SET clause comes from the
# parameters' column names, compiled once per set of names.
_FENCE = (D.c.id == bindparam("w_id"), D.c.lease_owner == bindparam("w_owner"),
          D.c.claim_token == bindparam("w_token"))
_FENCED = Fast(update(D).where(*_FENCE))


# `sending`, fenced, returning what the drift check reads of the post (sync.drift_from): one
# statement where there were two, before every request. A subquery per column, not a join, so a
# delivery whose post row is gone is still marked (and returns NULLs, as the check's own read did).
# The outer column is spelled out: SQLite's RETURNING would render it unqualified.
# What the drift check reads of a post, in its order (sync's `_DriftPost`, which also reads them
# on its own for deliveries that are not marked first).
DRIFT_COLUMNS = ("spec", "removed", "content_hash", "approved_hash")
_OF = P.alias("of_delivery")
_POST_OF_DELIVERY = [select(_OF.c[name]).where(_OF.c.id == literal_column("delivery.post_id")).scalar_subquery()
                     for name in DRIFT_COLUMNS]
_MARK_SENDING = Fast(update(D).where(*_FENCE).returning(*_POST_OF_DELIVERY))


def mark_sending(
    conn: Connection, lease: Lease, row: Mapping[str, Any], *, now: datetime, attempt: int, lease_expires: datetime,
) -> tuple[Any, ...] | None:
    """`fenced(..., state=SENDING)` with its `attempt` event, returning the post's
    (spec, removed, content_hash, approved_hash) as it is now; None if the lease was lost."""
    found = _MARK_SENDING.run(conn, {
        "state": State.SENDING.value, "attempts": attempt, "lease_expires": lease_expires, "updated_at": now,
        **lease.params(),
    }).fetchall()
    if len(found) != 1:
        return None
    audit.append(conn, "attempt", post_id=row["post_id"], delivery_id=lease.delivery_id, account=row["account"],
                 platform=row["platform"], attempt=attempt, at=now)
    return tuple(found[0])


def delivery_row(
    *, post_id: str, account: str, platform: str, occurrence: str, due_at: datetime, deadline: datetime,
    content: Mapping[str, Any], now: datetime, state: State = State.PENDING, hold_reason: HoldReason | None = None,
) -> dict[str, Any]:
    """A new delivery's columns (one place for them: `create_delivery` and sync's batches)."""
    message, message_hash = message_json(content)
    return {
        "post_id": post_id,
        "account": account,
        "platform": platform,
        "occurrence": occurrence,
        "key": delivery_key(post_id, account, occurrence),
        "state": state.value,
        "hold_reason": hold_reason.value if hold_reason else None,
        "due_at": due_at,
        "ready_at": due_at,
        "deadline": deadline,
        "attempts": 0,
        "message": message,
        "message_hash": message_hash,
        "claim_token": 0,
        "created_at": now,
        "updated_at": now,
    }


def creation_events(row: Mapping[str, Any], delivery_id: int, *, actor: str,
                    detail: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The audit events of a new delivery: `created`, and `held` when it starts held."""
    common = {"actor": actor, "post_id": row["post_id"], "delivery_id": delivery_id, "account": row["account"],
              "platform": row["platform"], "at": row["created_at"]}
    events = [audit.event("created", **common, detail={
        "due_at": row["due_at"].isoformat(), "occurrence": row["occurrence"], **(detail or {})})]
    if row["state"] == State.HELD.value:
        events.append(audit.event("held", **common, detail={"reason": row["hold_reason"], **(detail or {})}))
    return events


_INSERT_DELIVERY = insert(D)


def create_delivery(
    conn: Connection, *, actor: str = audit.DAEMON, detail: dict[str, Any] | None = None, **fields: Any,
) -> int:
    """Insert one delivery (fields as `delivery_row` takes them) with its audit events."""
    row = delivery_row(**fields)
    delivery_id = int(conn.execute(_INSERT_DELIVERY, row).inserted_primary_key[0])
    audit.append_many(conn, creation_events(row, delivery_id, actor=actor, detail=detail))
    return delivery_id


_ACCOUNT_PLATFORM = select(A.c.platform).where(A.c.name == bindparam("w_name"))
_ADD_ACCOUNT = insert(A)
_SET_ACCOUNT = Fast(update(A).where(A.c.name == bindparam("w_name")))


def ensure_account(conn: Connection, name: str, platform: str) -> None:
    known = conn.execute(_ACCOUNT_PLATFORM, {"w_name": name}).first()
    if known is None:
        conn.execute(_ADD_ACCOUNT, {"name": name, "platform": platform, "paused": False})
    elif known.platform != platform:
        _SET_ACCOUNT.run(conn, {"w_name": name, "platform": platform})


@cache
def _claim_statement(skip_locked: bool) -> Update:
    """`claim_batch`'s UPDATE, built once per backend (building it cost more than running it).

    Its cost does not follow the table's size. PostgreSQL walks ix_delivery_due (the ready ones,
    in claim order) and stops when the batch is full: its cost follows the batch. SQLite reads
    the due ones from ix_delivery_ready (state, ready_at) and sorts them: its cost follows what
    is due. `busy` and `earlier` are seeks in ix_delivery_account_ready (account, state,
    ready_at, id), each reading only that account's deliveries in flight or due.
    """
    now = bindparam("claim_now", type_=D.c.ready_at.type)
    ready = [s.value for s in READY]
    d = D.alias("d")
    busy = select(D.c.id).where(D.c.account == d.c.account, D.c.state.in_([s.value for s in IN_FLIGHT])).exists()
    blocked = exists().where(
        A.c.name == d.c.account,
        or_(A.c.paused.is_(True), and_(A.c.not_before.is_not(None), A.c.not_before > now)),
    )
    e = D.alias("e")
    earlier = select(e.c.id).where(
        e.c.account == d.c.account,
        e.c.state.in_(ready),
        e.c.ready_at <= now,
        or_(e.c.ready_at < d.c.ready_at, and_(e.c.ready_at == d.c.ready_at, e.c.id < d.c.id)),
    ).exists()
    # The ready states as literals, as ix_delivery_due's WHERE (migration 0005) says them: a
    # bound parameter cannot show PostgreSQL's planner that the partial index applies.
    ready_literals = [literal_column(f"'{s.value}'") for s in READY]
    candidates = (
        select(d.c.id)
        .where(d.c.state.in_(ready_literals), d.c.ready_at <= now, ~busy, ~blocked, ~earlier,
               d.c.account.not_in(bindparam("claim_exclude", expanding=True)))
        .order_by(d.c.ready_at, d.c.id)
        .limit(bindparam("claim_limit", type_=Integer))
    )
    if skip_locked:
        candidates = candidates.with_for_update(skip_locked=True)
    # Found by id. The state re-check is a NOT IN, which no index serves: `state IN (ready)`
    # would let SQLite's planner (no statistics) walk ix_delivery_ready through every ready
    # row instead of looking the few ids up.
    still_ready = D.c.state.not_in([s.value for s in State if s not in READY])
    return (
        update(D)
        .where(D.c.id.in_(candidates.scalar_subquery()), still_ready)
        .values(
            state=State.CLAIMED.value,
            lease_owner=bindparam("claim_owner", type_=D.c.lease_owner.type),
            lease_expires=bindparam("claim_expires", type_=D.c.lease_expires.type),
            claim_token=D.c.claim_token + 1,
            updated_at=now,
        )
        .returning(*D.c)
    )


@contextmanager
def _planned_afresh(conn: Connection) -> Iterator[None]:
    """PostgreSQL: statements in the block are planned with their values every time. psycopg
    prepares a statement after five runs and PostgreSQL may then keep a generic plan, made without
    the values: for the claim its guesses (a third of the deliveries due, one left after the
    account checks) make sorting every due delivery look cheaper than walking ix_delivery_due."""
    driver = conn.connection.driver_connection
    threshold, driver.prepare_threshold = driver.prepare_threshold, None
    try:
        yield
    finally:
        driver.prepare_threshold = threshold


def claim_batch(
    conn: Connection, *, owner: str, now: datetime, lease: timedelta, limit: int,
    exclude_accounts: Sequence[str] = (),
) -> list[RowMapping]:
    """Claim up to `limit` ready deliveries, at most one per account, in due order.

    An account is skipped while one of its deliveries is in flight, while it is paused, or
    while its pacing (`not_before`) says wait: per account, one at a time, in order.
    """
    postgres = conn.dialect.name == "postgresql"
    with _planned_afresh(conn) if postgres else nullcontext():
        rows = conn.execute(_claim_statement(postgres), {
            "claim_now": now, "claim_owner": owner, "claim_expires": now + lease, "claim_limit": limit,
            "claim_exclude": list(exclude_accounts),
        }).mappings().all()
    rows = sorted(rows, key=lambda r: (r["ready_at"], r["id"]))
    audit.append_many(conn, [
        audit.event("claimed", post_id=row["post_id"], delivery_id=row["id"], account=row["account"],
                    platform=row["platform"], attempt=row["attempts"] + 1, detail={"owner": owner}, at=now)
        for row in rows
    ])
    return rows


def next_ready_time(conn: Connection, after: datetime) -> datetime | None:
    """When the next waiting delivery becomes ready, strictly after `after`.

    What is ready already but blocked (its account busy) is not counted: the end of the send
    that blocks it wakes the dispatcher instead, so an idle daemon never spins.
    """
    return conn.execute(_next_ready_statement(), {"after": after}).scalar()


@cache
def _next_ready_statement() -> Select[Any]:
    """One min() per ready state: each is a single seek in ix_delivery_ready (state, ready_at),
    where `state IN (…)` would read every waiting row after `after`."""
    after = bindparam("after", type_=D.c.ready_at.type)
    firsts = union_all(*(
        select(func.min(D.c.ready_at).label("t")).where(D.c.state == s.value, D.c.ready_at > after) for s in READY
    )).subquery()
    return select(func.min(firsts.c.t))


def fenced(
    conn: Connection,
    lease: Lease,
    event: str,
    *,
    now: datetime,
    state: State | None = None,
    attempt: int | None = None,
    http_status: int | None = None,
    platform_id: str | None = None,
    error: str | None = None,
    detail: dict[str, Any] | None = None,
    row: Mapping[str, Any],
    **values: Any,
) -> bool:
    """Apply a change only if `lease` still holds; append its audit event in the same transaction."""
    if state is not None:
        values["state"] = state.value
        if state not in IN_FLIGHT:
            values.setdefault("lease_owner", None)
            values.setdefault("lease_expires", None)
    if "last_error" in values:
        values["last_error"] = redact(values["last_error"])
    if platform_id is not None:
        values["platform_id"] = platform_id
    if http_status is not None:
        values["http_status"] = http_status
    if _FENCED.run(conn, {**values, "updated_at": now, **lease.params()}).rowcount != 1:
        return False
    audit.append(
        conn, event, post_id=row["post_id"], delivery_id=lease.delivery_id, account=row["account"],
        platform=row["platform"], attempt=attempt, http_status=http_status, platform_id=platform_id,
        error=error, detail=detail, at=now,
    )
    return True


def update_leased(conn: Connection, lease: Lease, *, now: datetime, **values: Any) -> bool:
    """Change the delivery's columns only if `lease` still holds (no audit event: bookkeeping)."""
    return _FENCED.run(conn, {**values, "updated_at": now, **lease.params()}).rowcount == 1


def renew(conn: Connection, lease: Lease, *, until: datetime, now: datetime) -> bool:
    return update_leased(conn, lease, now=now, lease_expires=until)


def expired_leases(conn: Connection, now: datetime, state: State, limit: int = 100) -> list[RowMapping]:
    return list(
        conn.execute(
            select(D).where(D.c.state == state.value, D.c.lease_expires < now).order_by(D.c.id).limit(limit)
        ).mappings()
    )


def take_over(conn: Connection, row: Mapping[str, Any], *, owner: str, now: datetime, lease: timedelta) -> Lease | None:
    """Take an expired lease over (reaper); the token grows so the old holder is fenced off."""
    result = conn.execute(
        update(D)
        .where(
            D.c.id == row["id"], D.c.state == row["state"], D.c.claim_token == row["claim_token"],
            D.c.lease_expires < now,
        )
        .values(lease_owner=owner, lease_expires=now + lease, claim_token=D.c.claim_token + 1, updated_at=now)
    )
    if result.rowcount != 1:
        return None
    return Lease(int(row["id"]), owner, int(row["claim_token"]) + 1)


def set_account(conn: Connection, name: str, **values: Any) -> None:
    _SET_ACCOUNT.run(conn, {**values, "w_name": name})


_PUBLISHED_SINCE = (
    select(D.c.published_at)
    .where(D.c.account == bindparam("w_account"), D.c.state == State.PUBLISHED.value,
           D.c.published_at >= bindparam("w_since", type_=D.c.published_at.type))
    .order_by(D.c.published_at)
)


def published_since(conn: Connection, account: str, since: datetime) -> list[datetime]:
    return list(conn.execute(_PUBLISHED_SINCE, {"w_account": account, "w_since": since}).scalars())


def resume_if_nothing_paused(conn: Connection, row: Mapping[str, Any], *, actor: str, now: datetime) -> None:
    """The account was paused for this delivery, now cancelled: `siar retry` could reach no
    delivery to resume the account, and its other deliveries would wait forever. Resume it; if
    the credentials are still refused, the next send pauses it again on a delivery a person can see."""
    still_paused = conn.execute(select(D.c.id).where(D.c.account == row["account"],
                                                     D.c.state == State.PAUSED.value).limit(1)).first()
    if still_paused is not None:
        return
    result = conn.execute(update(A).where(A.c.name == row["account"], A.c.paused.is_(True))
                          .values(paused=False, paused_reason=None))
    if result.rowcount == 1:
        audit.append(conn, "account_resumed", actor=actor, account=row["account"], platform=row["platform"],
                     detail={"reason": f"paused delivery {row['id']} cancelled"}, at=now)
