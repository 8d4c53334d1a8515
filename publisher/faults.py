"""Named fault points for the crash tests: `SIAR_FAULTS="after_publish=kill"` kills the process
with SIGKILL at that point, exactly as a power cut would; `dispatch=hang@3` makes the dispatcher
hang at that point from 3 s after start (the watchdog test); `after_claim=sleep:3` stalls there
for 3 s (the fencing test). `#N` acts only the Nth time the point is reached in the process:
`after_save=kill#2` kills right after the second checkpoint `job.save` committed (between the steps
of a multi-step flow). Unset (always, in production), each point is one dictionary lookup."""

from __future__ import annotations

import os
import signal
import threading
import time

POINTS = ("after_claim", "after_sending", "after_publish", "after_save", "dispatch")
# after_publish: answered, not recorded; after_save: a checkpoint (`job.save`) committed
_STARTED = time.monotonic()


def _parse(value: str) -> dict[str, str]:
    plan: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, action = item.partition("=")
        plan[name] = action or "kill"
    return plan


_PLAN = _parse(os.environ.get("SIAR_FAULTS", ""))
_REACHED: dict[str, int] = {}
_COUNT_LOCK = threading.Lock()


def point(name: str) -> None:
    """Act on the fault planned for `name`, if any."""
    action = _PLAN.get(name)
    if action is None:
        return
    action, _, nth = action.partition("#")
    if nth:
        with _COUNT_LOCK:
            _REACHED[name] = reached = _REACHED.get(name, 0) + 1
        if reached != int(nth):
            return
    action, _, after = action.partition("@")
    if after and time.monotonic() - _STARTED < float(after):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "hang":
        threading.Event().wait()
    elif action.startswith("sleep:"):  # `after_claim=sleep:3`: a worker too slow for its lease
        time.sleep(float(action.partition(":")[2]))
