"""postgres: the burst on the local PostgreSQL with 1, 2 and 4 daemons; drain time and speed-up.

Each run gets a fresh schema on 127.0.0.1:5432/test (the URL option
`options=-csearch_path%3D<schema>`, as tests/conftest.py does); k daemons on one config folder
are started and, once all are ready, the posts are dropped in: one daemon's sync (the others
skip the pass: PostgreSQL advisory lock) makes every delivery due at one instant (bench/drain.py). Ideal for k daemons =
N × latency / (concurrency × k). Skipped, with the reason, when the server is not reachable.

The daemons, the server and the stand-in platform share this machine's cores. Each run reports
how busy the whole machine was and how much CPU it spent (`machine_cpu_s`, PostgreSQL's share in
`other_cpu_s`); `cpu_floor_s` = that CPU ÷ cores is the least drain time that much work allows,
and `speedup_cpu_bound` = one daemon's drain ÷ a run's floor is the most that run could have
reached on these cores, spending what it spent per delivery.
"""

from __future__ import annotations

import os
import uuid
from typing import Any
from urllib.parse import urlsplit

from bench.common import (
    Options, Platform, account_names, cleanup, params, r, record, siar_env, work_dir, write_config,
)
from bench.drain import drain

FULL = {"deliveries": 10_000, "accounts": 500, "latency_ms": 200.0, "concurrency": 64, "sync_every": "10s", "daemons": "1,2,4",
        "url": "postgresql+psycopg://postgres@127.0.0.1:5432/test"}
QUICK = {"deliveries": 256, "accounts": 64, "concurrency": 16, "sync_every": "2s"}
TARGET = {"text": "4 daemons >= 2 x one daemon (drain-time speed-up) on burst with latency 200 ms", "speedup_min": 2.0}


def _admin(url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(url, pool_size=1)


def run(opts: Options) -> dict[str, Any]:
    from sqlalchemy import text

    p = params(opts, "postgres", FULL, QUICK)
    host = urlsplit(p["url"].replace("postgresql+psycopg", "postgresql")).hostname
    if host not in ("127.0.0.1", "localhost"):
        return record("postgres", opts, p, {}, {**TARGET, "met": None},
                      skipped=f"refusing a non-local PostgreSQL host {host!r}: benchmarks use 127.0.0.1 only")
    admin = _admin(p["url"])
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
            max_connections = int(conn.execute(text("SHOW max_connections")).scalar())
    except Exception as exc:  # noqa: BLE001 - unreachable, whatever the reason
        admin.dispose()
        return record("postgres", opts, p, {}, {**TARGET, "met": None},
                      skipped=f"PostgreSQL at {p['url']} is not reachable ({type(exc).__name__})")

    counts = [int(x) for x in str(p["daemons"]).split(",") if x.strip()]
    runs: dict[str, Any] = {}
    try:
        for k in counts:
            schema = f"siar_bench_{uuid.uuid4().hex[:12]}"
            sep = "&" if "?" in p["url"] else "?"
            url = f"{p['url']}{sep}options=-csearch_path%3D{schema}"
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            folder = work_dir(opts, f"postgres-{k}")
            try:
                with Platform(p["latency_ms"] / 1000) as platform:
                    accounts = account_names(p["accounts"])
                    write_config(folder, accounts=accounts, platform_url=platform.url, concurrency=p["concurrency"],
                         sync_every=p["sync_every"])
                    per_account = max(1, p["deliveries"] // p["accounts"])
                    n = per_account * len(accounts)
                    ideal = n * p["latency_ms"] / 1000 / (min(p["concurrency"], p["accounts"]) * k)
                    out = drain(config=folder, url=url, env=siar_env(SIAR_DATABASE=url), platform=platform,
                                accounts=accounts, per_account=per_account, daemons=k,
                                timeout_s=max(180.0, 20 * ideal), watch_connections=True,
                                profile_dir=folder if opts.profile else None, stall_s=10.0 if opts.quick else 30.0)
                samples = out.pop("samples")
                out["peak_pg_connections"] = max(samples, default=None)
                out["ideal_s"] = r(ideal)
                out["ratio_to_ideal"] = r(out["drain_s"] / ideal) if out["drain_s"] else None
                out["cpu_ms_per_delivery_all"] = r(out["machine_cpu_s"] * 1000 / n, 3)
                out["cpu_floor_s"] = r(out["machine_cpu_s"] / (os.cpu_count() or 1))
                if out["projected_drain_s"]:
                    out["ratio_projected"] = r(out["projected_drain_s"] / ideal)
                runs[str(k)] = out
            finally:
                if opts.profile:
                    from bench.profiles import summarize

                    summarize(folder.glob("daemon-*.prof"), f"postgres-{k}")
                cleanup(opts, folder)
                if not opts.keep:
                    with admin.begin() as conn:
                        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
    def over(base: float | None, times: dict[str, float | None]) -> dict[str, float | None]:
        return {k: r(base / v, 2) if base and v else None for k, v in times.items()}

    first = str(counts[0])
    drains = {k: v.get("drain_s") for k, v in runs.items()}
    speedups = over(drains.get(first), drains)
    top = speedups.get(str(max(counts)))
    bounds = over(drains.get(first), {k: v.get("cpu_floor_s") for k, v in runs.items()})
    est = {k: v.get("drain_s") or v.get("projected_drain_s") for k, v in runs.items()}
    projected = over(est.get(first), est)
    figures = {"drain_s": {k: v["drain_s"] for k, v in runs.items()}, "speedup": speedups,
               **({"speedup_with_projected_drains": projected} if projected != speedups else {}),
               "deliveries": n, "max_connections": max_connections, "runs": runs}
    return record("postgres", opts, p, figures,
                  {**TARGET, "met": top is not None and top >= TARGET["speedup_min"]},
                  limit={"ideal_s": {k: v["ideal_s"] for k, v in runs.items()},
                         "formula": "N x latency / (concurrency x daemons)",
                         "speedup_cpu_bound": bounds,
                         "speedup_cpu_bound_formula": "one daemon's drain / (the run's machine CPU / cores)"},
                  ratio={k: v["ratio_to_ideal"] for k, v in runs.items()})
