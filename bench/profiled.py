"""Run `siar` with cProfile in every thread (the daemon's work happens in APScheduler's and the
send pool's threads, which plain `python -m cProfile` never sees); dump merged stats at exit.

    python -m bench.profiled OUT.prof run --config DIR
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
import time

# cpu (default): each thread's own CPU time (time.thread_time), so threads waiting on a lock, a
# socket or SQLite's busy handler cost nothing and what burns the GIL stands out.
# wall: elapsed time, summed over threads (waits show, and dominate).
_TIMER = time.thread_time if os.environ.get("SIAR_BENCH_PROFILE_CLOCK", "cpu") == "cpu" else time.perf_counter

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _start_in_thread(_frame, _event, _arg):  # type: ignore[no-untyped-def]
    sys.setprofile(None)
    profile = cProfile.Profile(_TIMER)
    with _lock:
        _profiles.append(profile)
    profile.enable()


def main() -> int:
    out = sys.argv[1]
    argv = sys.argv[2:]
    threading.setprofile(_start_in_thread)
    main_profile = cProfile.Profile(_TIMER)
    _profiles.append(main_profile)
    main_profile.enable()
    code = 1
    try:
        from publisher.cli import main as siar_main

        code = siar_main(argv)
    finally:
        main_profile.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        with _lock:
            profiles = list(_profiles)
        stats = None
        for profile in profiles:
            try:
                profile.create_stats()
                if not profile.stats:  # type: ignore[attr-defined]
                    continue
                if stats is None:
                    stats = pstats.Stats(profile)
                else:
                    stats.add(profile)
            except Exception:  # noqa: BLE001 - a thread still running: skip its partial profile
                continue
        if stats is not None:
            stats.dump_stats(out)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
