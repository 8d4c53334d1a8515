"""What a person does to deliveries: retry, cancel, resolve. Each is audited with the OS user.

These writes are not fenced by a lease (a person holds none); instead each one names the state
it expects in its WHERE clause, so it never races a daemon that is sending the same delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from publisher import audit, store
from publisher.models import utcnow
from publisher.settings import Settings
from publisher.states import IN_FLIGHT, READY, TERMINAL, State

D, P, A = store.D, store.P, store.A

RETRYABLE = (State.FAILED, State.HELD, State.PAUSED)
CANCELLABLE = (State.PENDING, State.RETRYING, State.HELD, State.PAUSED, State.FAILED, State.UNKNOWN)
# Acting on a whole post, these deliveries have nothing to do with the action: they are listed,
# not counted as refusals (a post published on one account and failed on another can be retried).
MOOT_FOR_RETRY = TERMINAL + READY
MOOT_FOR_CANCEL = TERMINAL


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Change:
    delivery_id: int
    account: str
    before: str
    after: str | None  # None: left as it was
    note: str = ""
    moot: bool = False  # left alone because there was nothing to do (a post's published delivery)


def is_post_target(target: str, *, post: bool = False) -> bool:
    """Whether `target` names a post (all its deliveries) rather than one delivery number."""
    return post or not target.lstrip("#").isdigit()


def deliveries_for(conn: Connection, target: str, *, post: bool = False) -> list[Any]:
    """A delivery by number, or every delivery of a post by its id."""
    if not is_post_target(target, post=post):
        rows = conn.execute(select(D).where(D.c.id == int(target.lstrip("#")))).mappings().all()
        if rows:
            return list(rows)
        raise NotFound(f"no delivery {target}")
    rows = conn.execute(select(D).where(D.c.post_id == target).order_by(D.c.id)).mappings().all()
    if not rows:
        exists = conn.execute(select(P.c.id).where(P.c.id == target)).first()
        raise NotFound(f"post {target!r} has no deliveries" if exists else f"no post or delivery {target!r}")
    return list(rows)


def _move(conn: Connection, row: Any, event: str, *, actor: str, now: datetime,
          detail: dict[str, Any] | None = None, **values: Any) -> bool:
    result = conn.execute(
        update(D).where(D.c.id == row["id"], D.c.state == row["state"], D.c.claim_token == row["claim_token"])
        .values(updated_at=now, **values)
    )
    if result.rowcount != 1:
        return False
    audit.append(conn, event, actor=actor, post_id=row["post_id"], delivery_id=row["id"], account=row["account"],
                 platform=row["platform"], detail=detail, at=now)
    return True


def retry(conn: Connection, settings: Settings, target: str, *, post: bool = False,
          actor: str | None = None) -> list[Change]:
    """Send again what failed, was held (expired, duplicate) or paused, with fresh attempts."""
    actor = actor or audit.operator()
    now = utcnow()
    whole_post = is_post_target(target, post=post)
    changes = []
    for row in deliveries_for(conn, target, post=post):
        state = State(row["state"])
        if state not in RETRYABLE:
            note = {
                State.UNKNOWN: "its outcome is unknown: answer with `siar resolve` instead",
                State.PUBLISHED: "already published",
                State.CANCELLED: "cancelled (restore the post file to publish it again)",
            }.get(state, "not waiting for a person")
            changes.append(Change(row["id"], row["account"], state.value, None, note,
                                  moot=whole_post and state in MOOT_FOR_RETRY))
            continue
        ok = _move(conn, row, "requeued", actor=actor, now=now,
                   detail={"from": state.value, "hold_reason": row["hold_reason"]},
                   state=State.PENDING.value, hold_reason=None, ready_at=now,
                   deadline=now + settings.max_lateness, attempts=0, last_error=None)
        if ok and state is State.PAUSED:
            conn.execute(update(A).where(A.c.name == row["account"]).values(paused=False, paused_reason=None))
            audit.append(conn, "account_resumed", actor=actor, account=row["account"], platform=row["platform"],
                         at=now)
        changes.append(Change(row["id"], row["account"], state.value, State.PENDING.value if ok else None,
                              "" if ok else "changed meanwhile; try again"))
    return changes


def cancel(conn: Connection, target: str, *, post: bool = False, actor: str | None = None) -> list[Change]:
    actor = actor or audit.operator()
    now = utcnow()
    whole_post = is_post_target(target, post=post)
    changes = []
    for row in deliveries_for(conn, target, post=post):
        state = State(row["state"])
        if state not in CANCELLABLE:
            note = "being sent right now" if state in IN_FLIGHT else f"already {state.value}"
            changes.append(Change(row["id"], row["account"], state.value, None, note,
                                  moot=whole_post and state in MOOT_FOR_CANCEL))
            continue
        ok = _move(conn, row, "cancelled", actor=actor, now=now, detail={"from": state.value},
                   state=State.CANCELLED.value, hold_reason=None)
        if ok and state is State.PAUSED:
            store.resume_if_nothing_paused(conn, row, actor=actor, now=now)
        changes.append(Change(row["id"], row["account"], state.value, State.CANCELLED.value if ok else None,
                              "" if ok else "changed meanwhile; try again"))
    return changes


def approve(conn: Connection, settings: Settings, post_id: str, *, by: str, actor: str | None = None) -> list[Change]:
    """Record who approved the post's current content and release what waited for approval.

    Nothing is written to the post file; the approval is bound to the content, so a later change
    to the file holds the post again.
    """
    from publisher.posts import PostSpec  # the stored spec carries the content hash

    actor = actor or audit.operator()
    now = utcnow()
    post = conn.execute(select(P.c.id, P.c.spec, P.c.content_hash).where(P.c.id == post_id)).first()
    if post is None:
        raise NotFound(f"no post {post_id!r}")
    conn.execute(update(P).where(P.c.id == post_id).values(approved_hash=post.content_hash, approved_by=by))
    audit.append(conn, "approved", actor=actor, post_id=post_id, at=now,
                 detail={"by": by, "content_hash": post.content_hash})
    spec = PostSpec.from_json(post.spec)
    lateness = spec.max_lateness or settings.max_lateness
    changes = []
    for row in deliveries_for(conn, post_id, post=True):
        if row["state"] != State.HELD.value or row["hold_reason"] != "approval":
            continue
        ok = _move(conn, row, "released", actor=actor, now=now, detail={"reason": "approved", "by": by},
                   state=State.PENDING.value, hold_reason=None, deadline=max(row["deadline"], now + lateness))
        changes.append(Change(row["id"], row["account"], State.HELD.value, State.PENDING.value if ok else None))
    return changes


def resolve(conn: Connection, settings: Settings, target: str, *, published_url: str | None,
            actor: str | None = None) -> Change:
    """A person's answer for an `unknown` delivery: it went out (with its URL), or it did not."""
    actor = actor or audit.operator()
    now = utcnow()
    rows = deliveries_for(conn, target)
    if len(rows) != 1:
        raise NotFound("resolve takes one delivery number")
    row = rows[0]
    if row["state"] != State.UNKNOWN.value:
        return Change(row["id"], row["account"], row["state"], None, "only an unknown delivery can be resolved")
    # `is not None`: an empty URL must never read as "not published" and send the post again.
    if published_url is not None:
        ok = _move(conn, row, "resolved", actor=actor, now=now, detail={"published": True, "url": published_url},
                   state=State.PUBLISHED.value, url=published_url, published_at=now, last_error=None)
        after = State.PUBLISHED.value
    else:
        ok = _move(conn, row, "resolved", actor=actor, now=now, detail={"published": False},
                   state=State.PENDING.value, ready_at=now, deadline=now + settings.max_lateness,
                   attempts=0, last_error=None)
        after = State.PENDING.value
    return Change(row["id"], row["account"], row["state"], after if ok else None)
