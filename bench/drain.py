"""A burst, end to end, through the daemon's own code only.

The daemons start on an empty posts folder and become ready. Then post files without `at` (due
"as soon as possible", so every delivery is due at the sync pass's `now`) are moved into the
posts folder in one rename; the daemon's next sync pass (every `sync_every`) creates all N deliveries
in one write transaction. The instant it commits (its `sync.done` log event) every delivery is
due and claimable at once: that is t0. Drain time = the last `published_at` − t0.
The figures come from the stand-in platform (arrivals) and the database (states, audit rows).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import DaemonProcess, Monitor, Platform, db_summary, machine_cpu, r, wait_for, write_burst_posts


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _sync_done(procs: list[DaemonProcess]) -> tuple[float, dict[str, Any]] | None:
    """The first `sync.done` event that created posts, in any daemon's log: (timestamp, event)."""
    for proc in procs:
        for line in proc.log_path.read_text(errors="replace").splitlines():
            if '"sync.done"' in line:
                event = json.loads(line)
                if event.get("created"):
                    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
                    return stamp, event
    return None


def drain(
    *, config: Path, url: str, env: dict[str, str], platform: Platform, accounts: list[str], per_account: int,
    daemons: int = 1, timeout_s: float = 600.0, profile_dir: Path | None = None,
    watch_connections: bool = False, stall_s: float = 30.0, sync_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Start `daemons` daemons, wait until all are ready, drop the posts in, and wait (bounded)
    until the platform has seen every request and the database says all published. Returns
    figures; never raises on slowness (a stall or the time bound ends the wait, and says so)."""
    n = len(accounts) * per_account
    procs: list[DaemonProcess] = []
    samples: list[Any] = []
    stalled: list[int] = []
    monitor: Monitor | None = None
    sync_s: float | None = None
    t_due = None
    try:
        for i in range(daemons):
            profile_to = profile_dir / f"daemon-{i}.prof" if profile_dir else None
            procs.append(DaemonProcess(config, config / f"daemon-{i}.log", env, profile_to=profile_to))
        ready = [p.wait_ready() for p in procs]
        monitor = Monitor(url)  # opened now, before the burst can take every free connection
        platform.reset()
        incoming = config / "incoming"
        write_burst_posts(incoming, accounts, per_account)  # writes incoming/posts/burst/*.toml
        moved_at = time.time()
        os.rename(incoming / "posts" / "burst", config / "posts" / "burst")
        log(f"{daemons} daemon(s) ready in {max(ready):.2f}s; {n} deliveries handed to the sync")
        found: list[tuple[float, dict[str, Any]]] = []

        def synced() -> bool:
            hit = _sync_done(procs)
            if hit:
                found.append(hit)
            return bool(hit)

        wait_for(synced, timeout=sync_timeout_s, interval=0.05)
        if found:
            t_due, event = found[0]
            sync_s = t_due - moved_at
            log(f"sync committed {event.get('created')} posts {sync_s:.1f}s after the files came in; draining")
        else:
            t_due = time.time()
            log("no sync.done event within the bound; draining anyway")
        cpu_before = [p.cpu_seconds() for p in procs]
        server_cpu_before = platform.cpu_seconds()
        machine_before = machine_cpu()
        progress = {"count": 0, "at": time.time()}

        def all_sent() -> bool:
            if watch_connections:
                samples.append(monitor.connections())
            count = platform.stats()["count"]
            now = time.time()
            if count != progress["count"]:
                progress.update(count=count, at=now)
            elif now - progress["at"] > stall_s:
                stalled.append(count)
                return True  # no request for stall_s seconds: stop waiting, report what happened
            return count >= n

        sent = wait_for(all_sent, timeout=timeout_s, interval=0.25)
        watcher = monitor
        recorded = wait_for(lambda: watcher.published() >= n, timeout=60 if sent and not stalled else 5, interval=0.2)
        end = time.time()
        cpu = [p.cpu_seconds() - c for p, c in zip(procs, cpu_before)]
        server_cpu = platform.cpu_seconds() - server_cpu_before
        machine_after = machine_cpu()
        machine_busy = machine_after[0] - machine_before[0]
        machine_all = machine_after[1] - machine_before[1]
        stats = platform.stats()
        codes = [p.stop() for p in procs]
        problems: dict[str, int] = {}
        for p in procs:
            for name, count in p.problems().items():
                problems[name] = problems.get(name, 0) + count
    finally:
        for p in procs:
            p.__exit__(None, None, None)
        if monitor is not None:
            monitor.close()
    summary = db_summary(url)
    last = summary["last_published"]
    first = summary["first_published"]
    published = summary["states"].get("published", 0)
    drain_s = (last.timestamp() - t_due) if last is not None and published >= n else None
    rate = published / (last.timestamp() - t_due) if last is not None and last.timestamp() > t_due else None
    return {
        "drain_s": r(drain_s),
        "published_per_s": r(rate, 1),
        # not finished within the bounded wait: what the rate so far would need for all n
        "projected_drain_s": r(n / rate, 1) if rate and drain_s is None else None,
        "completed": bool(sent and recorded and published >= n),
        "stalled": bool(stalled),
        "published": published,
        "requests": stats["count"],
        "duplicate_requests": stats["count"] - stats["distinct_keys"],
        "first_request_after_t0_s": r(stats["first"] - t_due) if stats["first"] else None,
        "last_request_after_t0_s": r(stats["last"] - t_due) if stats["last"] else None,
        "first_published_after_t0_s": r(first.timestamp() - t_due) if first else None,
        "files_in_until_synced_s": r(sync_s, 2),  # includes waiting for the next sync pass
        "ready_s": [r(x) for x in ready],
        "daemon_cpu_s": [r(x, 2) for x in cpu],
        "daemon_cpu_ms_per_delivery": r(sum(cpu) * 1000 / max(1, published), 3),
        "platform_cpu_s": r(server_cpu, 2),
        "platform_connections": stats["connections"],
        # The whole machine over the same window: busy share of all cores, and the CPU that was
        # neither the daemons' nor the platform's (PostgreSQL, this harness, anything else).
        "machine_busy_pct": r(100 * machine_busy / machine_all, 1) if machine_all > 0 else None,
        "machine_cpu_s": r(machine_busy, 2),
        "other_cpu_s": r(machine_busy - sum(cpu) - server_cpu, 2),
        "waited_s": r(end - t_due, 1),
        "states": summary["states"],
        "audit_events": summary["audit_events"],
        "claim_transactions": summary["claim_transactions"],
        "exit_codes": codes,
        "log_problems": problems,
        "monitor_errors": monitor.errors if monitor else None,
        "samples": [x for x in samples if x is not None],
    }
