"""What happens after a failed attempt: a decision object, never a sleep.

Exponential backoff with jitter between `first_delay` and `max_delay`; the platform's own wait
(Retry-After, reset headers) wins when it is longer, and is jittered too (never shortened), so the
deliveries told to wait for the same reset do not all come back at once. No retry is scheduled past the deadline:
the delivery is held as `expired` instead, for a person to decide.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from publisher.states import HoldReason, State


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    attempts: int = 8
    first_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, kw_only=True)
class Decision:
    state: State
    ready_at: datetime | None = None
    hold_reason: HoldReason | None = None
    why: str = ""


def _base(policy: RetryPolicy, attempt: int) -> float:
    return min(
        policy.max_delay.total_seconds(),
        policy.first_delay.total_seconds() * (2 ** max(0, attempt - 1)),
    )


def backoff(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> timedelta:
    """The jittered wait after attempt number `attempt` (1-based): within [base/2, base]."""
    base = _base(policy, attempt)
    rng = rng or random
    return timedelta(seconds=base / 2 + rng.random() * base / 2)


def after_transient(
    policy: RetryPolicy,
    *,
    attempts: int,
    now: datetime,
    deadline: datetime,
    platform_wait: float | None,
    rng: random.Random | None = None,
) -> Decision:
    if attempts >= policy.attempts:
        return Decision(state=State.FAILED, why=f"gave up after {attempts} attempts")
    rng = rng or random
    wait = backoff(policy, attempts, rng)
    if platform_wait is not None and timedelta(seconds=platform_wait) > wait:
        # Past the platform's reset by a little, at random: up to half the backoff, and no more
        # than a tenth of the platform's wait (at least 1 s).
        spread = min(_base(policy, attempts) / 2, max(1.0, platform_wait / 10))
        wait = timedelta(seconds=platform_wait + rng.random() * spread)
    ready = now + wait
    if ready > deadline:
        return Decision(
            state=State.HELD,
            hold_reason=HoldReason.EXPIRED,
            why=f"the next attempt ({ready.isoformat()}) would start after the deadline",
        )
    return Decision(state=State.RETRYING, ready_at=ready, why=f"retry in {wait.total_seconds():.1f}s")
