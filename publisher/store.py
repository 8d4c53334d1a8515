"""Delivery rows: creation, the batch claim, and fenced transitions, each with its audit event.

Every write that follows a claim names the lease owner and the claim token in its WHERE clause:
a worker that lost its lease (frozen, partitioned, too slow) changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping

from publisher import audit
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

    def where(self) -> Any:
        return and_(D.c.id == self.delivery_id, D.c.lease_owner == self.owner, D.c.claim_token == self.token)


def create_delivery(
    conn: Connection,
    *,
    post_id: str,
    account: str,
    platform: str,
    occurrence: str,
    due_at: datetime,
    deadline: datetime,
    content: Mapping[str, Any],
    now: datetime,
    state: State = State.PENDING,
    hold_reason: HoldReason | None = None,
    actor: str = audit.DAEMON,
    detail: dict[str, Any] | None = None,
) -> int:
    message, message_hash = message_json(content)
    result = conn.execute(
        insert(D).values(
            post_id=post_id,
            account=account,
            platform=platform,
            occurrence=occurrence,
            key=delivery_key(post_id, account, occurrence),
            state=state.value,
            hold_reason=hold_reason.value if hold_reason else None,
            due_at=due_at,
            ready_at=due_at,
            deadline=deadline,
            attempts=0,
            message=message,
            message_hash=message_hash,
            claim_token=0,
            created_at=now,
            updated_at=now,
        )
    )
    delivery_id = int(result.inserted_primary_key[0])
    audit.append(
        conn, "created", actor=actor, post_id=post_id, delivery_id=delivery_id, account=account,
        platform=platform, detail={"due_at": due_at.isoformat(), "occurrence": occurrence, **(detail or {})},
        at=now,
    )
    if state is State.HELD:
        audit.append(
            conn, "held", actor=actor, post_id=post_id, delivery_id=delivery_id, account=account,
            platform=platform, detail={"reason": hold_reason.value if hold_reason else None, **(detail or {})},
            at=now,
        )
    return delivery_id


def ensure_account(conn: Connection, name: str, platform: str) -> None:
    if conn.execute(select(A.c.name).where(A.c.name == name)).first() is None:
        conn.execute(insert(A).values(name=name, platform=platform, paused=False))
    else:
        conn.execute(update(A).where(A.c.name == name, A.c.platform != platform).values(platform=platform))


def claim_batch(
    conn: Connection, *, owner: str, now: datetime, lease: timedelta, limit: int,
    exclude_accounts: Sequence[str] = (),
) -> list[RowMapping]:
    """Claim up to `limit` ready deliveries, at most one per account, in due order.

    An account is skipped while one of its deliveries is in flight, while it is paused, or
    while its pacing (`not_before`) says wait: per account, one at a time, in order.
    """
    d = D.alias("d")
    busy = exists().where(D.c.account == d.c.account, D.c.state.in_([s.value for s in IN_FLIGHT]))
    blocked = exists().where(
        A.c.name == d.c.account,
        or_(A.c.paused.is_(True), and_(A.c.not_before.is_not(None), A.c.not_before > now)),
    )
    e = D.alias("e")
    earlier = exists().where(
        e.c.account == d.c.account,
        e.c.state.in_([s.value for s in READY]),
        e.c.ready_at <= now,
        or_(e.c.ready_at < d.c.ready_at, and_(e.c.ready_at == d.c.ready_at, e.c.id < d.c.id)),
    )
    candidates = (
        select(d.c.id)
        .where(d.c.state.in_([s.value for s in READY]), d.c.ready_at <= now, ~busy, ~blocked, ~earlier)
        .order_by(d.c.ready_at, d.c.id)
        .limit(limit)
    )
    if exclude_accounts:
        candidates = candidates.where(d.c.account.not_in(list(exclude_accounts)))
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    rows = conn.execute(
        update(D)
        .where(D.c.id.in_(candidates.scalar_subquery()), D.c.state.in_([s.value for s in READY]))
        .values(
            state=State.CLAIMED.value,
            lease_owner=owner,
            lease_expires=now + lease,
            claim_token=D.c.claim_token + 1,
            updated_at=now,
        )
        .returning(*D.c)
    ).mappings().all()
    for row in rows:
        audit.append(
            conn, "claimed", post_id=row["post_id"], delivery_id=row["id"], account=row["account"],
            platform=row["platform"], attempt=row["attempts"] + 1, detail={"owner": owner}, at=now,
        )
    return sorted(rows, key=lambda r: (r["ready_at"], r["id"]))


def next_ready_time(conn: Connection, after: datetime) -> datetime | None:
    """When the next waiting delivery becomes ready, strictly after `after`.

    What is ready already but blocked (its account busy) is not counted: the end of the send
    that blocks it wakes the dispatcher instead, so an idle daemon never spins.
    """
    return conn.execute(
        select(func.min(D.c.ready_at)).where(D.c.state.in_([s.value for s in READY]), D.c.ready_at > after)
    ).scalar()


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
    result = conn.execute(update(D).where(lease.where()).values(updated_at=now, **values))
    if result.rowcount != 1:
        return False
    audit.append(
        conn, event, post_id=row["post_id"], delivery_id=lease.delivery_id, account=row["account"],
        platform=row["platform"], attempt=attempt, http_status=http_status, platform_id=platform_id,
        error=error, detail=detail, at=now,
    )
    return True


def renew(conn: Connection, lease: Lease, *, until: datetime, now: datetime) -> bool:
    result = conn.execute(update(D).where(lease.where()).values(lease_expires=until, updated_at=now))
    return result.rowcount == 1


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
    conn.execute(update(A).where(A.c.name == name).values(**values))


def published_since(conn: Connection, account: str, since: datetime) -> list[datetime]:
    return list(
        conn.execute(
            select(D.c.published_at)
            .where(D.c.account == account, D.c.state == State.PUBLISHED.value, D.c.published_at >= since)
            .order_by(D.c.published_at)
        ).scalars()
    )


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
