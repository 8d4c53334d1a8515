"""Named fault points for the crash tests: `SIAR_FAULTS="after_publish=kill"` kills the process
with SIGKILL at that point, exactly as a power cut would. Unset (always, in production), each
point is one dictionary lookup."""

from __future__ import annotations

import os
import signal

POINTS = ("after_claim", "after_sending", "after_publish")  # after_publish: answered, not recorded


def _parse(value: str) -> dict[str, str]:
    plan: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, action = item.partition("=")
        plan[name] = action or "kill"
    return plan


_PLAN = _parse(os.environ.get("SIAR_FAULTS", ""))


def point(name: str) -> None:
    """Act on the fault planned for `name`, if any."""
    if _PLAN.get(name) == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
