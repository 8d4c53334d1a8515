"""footprint: the daemon idle with N pending deliveries far in the future.

N post files (one delivery each) are synced once by `siar run --once` (that first start is timed
too); then `siar run` is started and measured: seconds from spawn to its `daemon.ready` log event,
RSS from /proc/<pid>/status once settled (and the peak, VmHWM), and CPU over `idle_s` seconds from
/proc/<pid>/stat (utime + stime), as % of one core, from the end of its first pass (the sync and
reap after READY, log event `daemon.dispatching`) plus `settle_s`. Settings are the defaults (sync_every 10 s,
concurrency 16). On Linux the posts folder is watched (inotify), so an idle tick reads no file; the
full safety walk (every 5 minutes) falls outside the 30 s window.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from bench.common import (
    DaemonProcess, Options, Platform, account_names, cleanup, memory_mb, params, r, record, siar_env, siar_once,
    threads_of, work_dir, write_config, write_post,
)
from bench.drain import log

FULL = {"pending": 10_000, "accounts": 50, "idle_s": 30.0, "settle_s": 5.0}
QUICK = {"pending": 1_000, "idle_s": 5.0, "settle_s": 2.0}
TARGET = {"text": "RSS <= 80 MB, ready <= 1.5 s, idle CPU <= 1 % of one core",
          "rss_mb": 80, "ready_s": 1.5, "idle_cpu_pct": 1.0}


def run(opts: Options) -> dict[str, Any]:
    p = params(opts, "footprint", FULL, QUICK)
    folder = work_dir(opts, "footprint")
    try:
        with Platform(0.0) as platform:
            accounts = account_names(p["accounts"])
            write_config(folder, accounts=accounts, platform_url=platform.url)
            base = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
            for i in range(p["pending"]):
                write_post(folder, f"{i % 100:03d}/post-{i:06d}.toml", to=[accounts[i % len(accounts)]],
                           text=f"Agenda bulan depan nomor {i}", at=base + timedelta(minutes=i))
            env = siar_env()
            first_start_s = siar_once(folder, env)
            log(f"footprint: {p['pending']} pending deliveries synced by `siar run --once` in {first_start_s:.1f}s")
            with DaemonProcess(folder, folder / "daemon.log", env,
                               profile_to=folder / "daemon.prof" if opts.profile else None) as daemon:
                ready = daemon.wait_ready()
                # READY comes before the first sync and reap (systemd need not wait for them); the
                # idle window starts once that first pass is over (`daemon.dispatching`).
                first_pass = daemon.wait_event("daemon.dispatching") - daemon.ready_at
                time.sleep(p["settle_s"])
                settled = memory_mb(daemon.pid)
                threads = threads_of(daemon.pid)
                cpu0, t0 = daemon.cpu_seconds(), time.time()
                time.sleep(p["idle_s"])
                cpu1, t1 = daemon.cpu_seconds(), time.time()
                after = memory_mb(daemon.pid)
                code = daemon.stop()
                problems = daemon.problems()
            requests = platform.stats()["count"]
    finally:
        if opts.profile and (folder / "daemon.prof").exists():
            from bench.profiles import summarize

            summarize(folder / "daemon.prof", "footprint")
        cleanup(opts, folder)
    idle_pct = (cpu1 - cpu0) / (t1 - t0) * 100
    figures = {
        "pending": p["pending"],
        "rss_mb": settled["rss_mb"],
        "rss_mb_after_idle": after["rss_mb"],
        "peak_rss_mb": after["peak_rss_mb"],
        "ready_s": r(ready, 3),
        "first_pass_after_ready_s": r(first_pass, 3),
        "idle_cpu_pct": r(idle_pct, 2),
        "idle_window_s": r(t1 - t0, 1),
        "threads": threads,
        "first_start_once_s": r(first_start_s, 2),
        "requests_while_idle": requests,
        "daemon_exit_code": code,
        "log_problems": problems,
    }
    met = settled["rss_mb"] <= TARGET["rss_mb"] and ready <= TARGET["ready_s"] and idle_pct <= TARGET["idle_cpu_pct"]
    return record("footprint", opts, p, figures, {**TARGET, "met": met},
                  notes=["ready = spawn of `python -m publisher run` to its `daemon.ready` log event, on a "
                         "database that already holds the deliveries (a restart); first_start_once_s = "
                         "`siar run --once` on an empty database (process start + first sync)"])
