"""burst: N deliveries over many accounts, all due at the same instant; how fast is it drained?

Post files each naming every account, without `at`, are dropped into the running daemon's posts
folder; its sync creates all deliveries in one transaction, due at once (see bench/drain.py).
Drain time = the last `published_at` the daemon recorded − the sync's commit (`sync.done`).
Ideal = N × latency / concurrency (per account one send at a time, `concurrency` accounts at once;
with fewer accounts than `concurrency`, the number of accounts).
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    Options, Platform, account_names, cleanup, params, r, record, siar_env, sqlite_url, work_dir, write_config,
)
from bench.drain import drain

FULL = {"deliveries": 10_000, "accounts": 500, "latency_ms": 50.0, "concurrency": 64, "sync_every": "10s"}
QUICK = {"deliveries": 500, "accounts": 100, "sync_every": "2s"}
TARGET = {"text": "drain <= 1.25 x ideal (ideal = N x latency / concurrency)", "ratio_max": 1.25}


def run(opts: Options) -> dict[str, Any]:
    p = params(opts, "burst", FULL, QUICK)
    folder = work_dir(opts, "burst")
    try:
        with Platform(p["latency_ms"] / 1000) as platform:
            accounts = account_names(p["accounts"])
            write_config(folder, accounts=accounts, platform_url=platform.url, concurrency=p["concurrency"],
                         sync_every=p["sync_every"])
            per_account = max(1, p["deliveries"] // p["accounts"])
            n = per_account * len(accounts)
            ideal = n * p["latency_ms"] / 1000 / min(p["concurrency"], p["accounts"])
            out = drain(config=folder, url=sqlite_url(folder), env=siar_env(), platform=platform, accounts=accounts,
                        per_account=per_account, timeout_s=max(120.0, 40 * ideal),
                        profile_dir=folder if opts.profile else None, stall_s=10.0 if opts.quick else 30.0)
    finally:
        if opts.profile:
            from bench.profiles import summarize

            summarize(folder.glob("daemon-*.prof"), "burst")
        cleanup(opts, folder)
    out.pop("samples")
    ratio = out["drain_s"] / ideal if out["drain_s"] else None
    projected = out["projected_drain_s"] / ideal if out["projected_drain_s"] else None
    figures = {"deliveries": n, **out}
    return record(
        "burst", opts, p, figures,
        {**TARGET, "met": ratio is not None and ratio <= TARGET["ratio_max"]},
        limit={"ideal_s": r(ideal), "formula": "N x latency / min(concurrency, accounts)"},
        ratio=r(ratio),
        **({"ratio_projected": r(projected),
            "note": "not drained within the bounded wait: ratio_projected uses the rate reached"} if projected else {}),
    )
