"""precision: posts at distinct times on an idle daemon; how late does each request arrive?

Lateness = the platform's arrival time of the request − the post's `at`. The files are written
before the daemon starts, the first one due `lead_s` after that, so the daemon has synced them
all and sits idle (its dispatcher asleep until the next due time) when the first one falls due.
The claim time (the audit `claimed` event) splits lateness into "woke and claimed" and "sent".
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from bench.common import (
    DaemonProcess, Options, Platform, account_names, cleanup, params, percentile, r, record, siar_env,
    sqlite_url, wait_for, work_dir, write_config, write_post,
)
from bench.drain import log

FULL = {"posts": 200, "span_s": 20.0, "accounts": 10, "lead_s": 6.0, "latency_ms": 0.0}
QUICK = {"posts": 40, "span_s": 4.0, "lead_s": 4.0}
TARGET = {"text": "lateness p99 <= 50 ms, max <= 250 ms", "p99_ms": 50, "max_ms": 250}


def _claims(url: str) -> dict[int, tuple[datetime, datetime, datetime]]:
    from publisher.audit import EVENTS
    from publisher.db import Database
    from publisher.store import D

    db = Database(url, pool_size=1)
    try:
        with db.read() as conn:
            rows = conn.execute(
                select(D.c.id, D.c.due_at, D.c.created_at, EVENTS.c.at)
                .join(EVENTS, (EVENTS.c.delivery_id == D.c.id) & (EVENTS.c.event == "claimed"))
            ).all()
        return {row[0]: (row[1], row[2], row[3]) for row in rows}
    finally:
        db.dispose()


def run(opts: Options) -> dict[str, Any]:
    p = params(opts, "precision", FULL, QUICK)
    folder = work_dir(opts, "precision")
    try:
        with Platform(p["latency_ms"] / 1000) as platform:
            accounts = account_names(p["accounts"])
            write_config(folder, accounts=accounts, platform_url=platform.url)
            rng = random.Random(6)
            spacing = p["span_s"] / p["posts"]
            first = datetime.now(timezone.utc) + timedelta(seconds=p["lead_s"])
            scheduled: dict[str, datetime] = {}
            for i in range(p["posts"]):
                at = first + timedelta(seconds=i * spacing + rng.uniform(0, spacing / 2))
                post_id = f"p/{i:04d}"
                scheduled[post_id] = at
                write_post(folder, f"{post_id}.toml", to=[accounts[i % len(accounts)]],
                           text=f"Tepat waktu nomor {i}", at=at)
            with DaemonProcess(folder, folder / "daemon.log", siar_env(),
                               profile_to=folder / "daemon.prof" if opts.profile else None) as daemon:
                ready = daemon.wait_ready()
                log(f"precision: daemon ready in {ready:.2f}s; {p['posts']} posts over {p['span_s']}s")
                wait_for(lambda: platform.stats()["count"] >= p["posts"],
                         timeout=(first - datetime.now(timezone.utc)).total_seconds() + p["span_s"] + 30)
                arrivals = platform.arrivals()
                code = daemon.stop()
                problems = daemon.problems()
        claims = _claims(sqlite_url(folder))
    finally:
        if opts.profile and (folder / "daemon.prof").exists():
            from bench.profiles import summarize

            summarize(folder / "daemon.prof", "precision")
        cleanup(opts, folder)

    late_ms = []
    for at, _path, _key, post_id in arrivals:
        if post_id in scheduled:
            late_ms.append((at - scheduled[post_id].timestamp()) * 1000)
    claim_ms = [(c - due).total_seconds() * 1000 for due, _created, c in claims.values()]
    synced_ahead = min(((due - created).total_seconds() for due, created, _c in claims.values()), default=None)
    p99, worst = percentile(late_ms, 99), max(late_ms, default=None)
    figures = {
        "lateness_p50_ms": r(percentile(late_ms, 50), 1),
        "lateness_p99_ms": r(p99, 1),
        "lateness_max_ms": r(worst, 1),
        "lateness_min_ms": r(min(late_ms, default=None), 1),
        "early": sum(1 for x in late_ms if x < 0),
        "received": len(late_ms),
        "posts": p["posts"],
        "claim_lateness_p50_ms": r(percentile(claim_ms, 50), 1),
        "claim_lateness_p99_ms": r(percentile(claim_ms, 99), 1),
        "claim_lateness_max_ms": r(max(claim_ms, default=None), 1),
        "ready_s": r(ready, 2),
        "min_synced_ahead_of_due_s": r(synced_ahead, 2),
        "daemon_exit_code": code,
        "log_problems": problems,
    }
    met = p99 is not None and worst is not None and p99 <= TARGET["p99_ms"] and worst <= TARGET["max_ms"]
    return record("precision", opts, p, figures, {**TARGET, "met": met},
                  notes=["lateness = platform arrival time - the post's `at`; claim lateness = audit "
                         "`claimed` time - due time (the daemon's own clock)"])
