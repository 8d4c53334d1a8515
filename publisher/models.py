"""Database tables. The guarantees live here as constraints: one delivery per post, account and
occurrence; one idempotency key per delivery; one audit sequence number per event."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Column, DateTime, Index, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; times must be aware")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL on SQLite
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc)


def utc_column(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Post(SQLModel, table=True):
    """One post file as last synced. `spec` is the validated post, as JSON."""

    __tablename__ = "post"

    id: str = Field(primary_key=True)
    path: str = Field(index=True)  # relative to the posts folder
    content_hash: str
    fingerprint: str = Field(index=True)  # text + media + targets, for the duplicate guard
    spec: str = Field(sa_column=Column(Text, nullable=False))
    removed: bool = False
    # `siar approve`: who approved which content; a change to the content needs a new approval.
    approved_hash: str | None = None
    approved_by: str | None = None
    created_at: datetime = utc_column(nullable=False)
    updated_at: datetime = utc_column(nullable=False)


class Delivery(SQLModel, table=True):
    """One post on one account at one occurrence, and where it stands."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("post_id", "account", "occurrence", name="uq_delivery_occurrence"),
        Index("ix_delivery_ready", "state", "ready_at"),
        # Per account and state, in claim order: `claim_batch` finds an account's deliveries in
        # flight and its earlier ready ones with a seek (also serves every (account, state) lookup).
        Index("ix_delivery_account_ready", "account", "state", "ready_at", "id"),
        # PostgreSQL only, and partial: the ready deliveries alone (migration 0005), in claim
        # order, so a claim walks it from the front and stops when its batch is full however
        # many are due (ix_delivery_ready would have it read and sort them all). Its WHERE is not
        # stated here: naming a PostgreSQL option loads that dialect (2.5 MB) into every SQLite
        # daemon, and Alembic does not compare it. SQLite's planner keeps to ix_delivery_ready and
        # sorts in-process (~3 ms at 10,000 due): there the index only cost memory.
        Index("ix_delivery_due", "ready_at", "id").ddl_if(dialect="postgresql"),
    )

    id: int | None = Field(default=None, primary_key=True)
    post_id: str = Field(foreign_key="post.id", index=True)
    account: str
    platform: str
    occurrence: str  # "" for a one-off post; the UTC due time for a repeat's occurrence
    key: str = Field(unique=True)  # stable idempotency key
    state: str = Field(default="pending")
    hold_reason: str | None = None
    due_at: datetime = utc_column(nullable=False)
    ready_at: datetime = utc_column(nullable=False)  # due time, or the next retry's time
    deadline: datetime = utc_column(nullable=False)  # no attempt starts after this
    attempts: int = 0
    message: str = Field(sa_column=Column(Text, nullable=False))  # JSON of the account's content
    message_hash: str
    lease_owner: str | None = None
    lease_expires: datetime | None = utc_column()
    claim_token: int = 0  # grows with every claim: the fencing token
    checkpoint: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    platform_id: str | None = None
    url: str | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    http_status: int | None = None
    created_at: datetime = utc_column(nullable=False)
    updated_at: datetime = utc_column(nullable=False)
    published_at: datetime | None = utc_column()


class Account(SQLModel, table=True):
    """Per-account dispatch state: pause, pacing. Settings themselves stay in siar.toml."""

    __tablename__ = "account"

    name: str = Field(primary_key=True)
    platform: str
    paused: bool = False
    paused_reason: str | None = None
    not_before: datetime | None = utc_column()  # rate limits and min_interval
    last_published_at: datetime | None = utc_column()


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained record of everything that happened to a delivery."""

    __tablename__ = "audit_event"

    seq: int = Field(primary_key=True)
    at: datetime = utc_column(nullable=False)
    post_id: str | None = Field(default=None, index=True)
    delivery_id: int | None = Field(default=None, index=True)
    account: str | None = None
    platform: str | None = None
    event: str
    attempt: int | None = None
    http_status: int | None = None
    platform_id: str | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    actor: str
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    prev_hash: str
    hash: str


class AuditHead(SQLModel, table=True):
    """The chain's tip: one row, locked by every append so the chain stays single."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = ""


class Daemon(SQLModel, table=True):
    """Each running `siar run`, so `siar status` can say who holds what and when it was seen."""

    __tablename__ = "daemon"

    owner: str = Field(primary_key=True)
    host: str
    pid: int
    started_at: datetime = utc_column(nullable=False)
    seen_at: datetime = utc_column(nullable=False)
    last_sync_at: datetime | None = utc_column()
    stopped_at: datetime | None = utc_column()
