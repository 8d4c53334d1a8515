"""Delivery states and hold reasons (DESIGN.md §4)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    SENDING = "sending"
    RETRYING = "retrying"
    PUBLISHED = "published"
    FAILED = "failed"
    PAUSED = "paused"
    UNKNOWN = "unknown"
    HELD = "held"
    CANCELLED = "cancelled"


class HoldReason(StrEnum):
    APPROVAL = "approval"
    BLACKOUT = "blackout"
    DUPLICATE = "duplicate"
    EXPIRED = "expired"


# Waiting for the clock: the dispatcher may claim these once they are ready.
READY = (State.PENDING, State.RETRYING)
# Held by a live lease: a worker owns them until the lease expires.
IN_FLIGHT = (State.CLAIMED, State.SENDING)
# Waiting for a person (`siar retry` / `siar resolve`).
NEEDS_PERSON = (State.FAILED, State.PAUSED, State.UNKNOWN, State.HELD)
# Nothing more happens to these on its own.
TERMINAL = (State.PUBLISHED, State.CANCELLED)
# A sync may still rewrite these with new content.
EDITABLE = (State.PENDING, State.RETRYING, State.HELD, State.FAILED, State.PAUSED)
