"""sync: the cost of reading N post files into the database.

Timed IN-PROCESS: `publisher.sync.Syncer.run` on the same code the daemon runs, so the figures are
the file-sync cost alone (no interpreter start-up, no scheduler). Passes:
  first      empty database: parse every file, create every post and delivery (with audit rows)
  unchanged  same Syncer again, nothing changed (its stat cache is warm, as in a running daemon)
  changed    after `changed` files got new text (and a new mtime)
  restart    a new Syncer (cold cache, as after a daemon restart), nothing changed
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from bench.common import (
    Options, account_names, cleanup, params, r, record, sqlite_url, work_dir, write_config, write_post,
)
from bench.drain import log
from bench.profiles import profiled

FULL = {"files": 10_000, "targets": 2, "accounts": 20, "changed": 100, "folders": 100}
QUICK = {"files": 1_000, "changed": 10}
TARGET = {"text": "first sync <= 10 s, unchanged re-sync <= 0.5 s", "first_s": 10.0, "unchanged_s": 0.5}


def _post_name(i: int, folders: int) -> str:
    return f"{i % folders:03d}/post-{i:06d}.toml"


def run(opts: Options) -> dict[str, Any]:
    p = params(opts, "sync", FULL, QUICK)
    folder = work_dir(opts, "sync")
    try:
        from publisher import logs
        from publisher.db import Database
        from publisher.settings import load_settings
        from publisher.sync import Syncer

        accounts = account_names(p["accounts"])
        write_config(folder, accounts=accounts, platform_url="http://127.0.0.1:9")
        base = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)
        for i in range(p["files"]):
            to = [accounts[(i + k) % len(accounts)] for k in range(p["targets"])]
            write_post(folder, _post_name(i, p["folders"]), to=to, text=f"Pengumuman nomor {i}: jadwal layanan",
                       at=base + timedelta(minutes=i))
        log_file = open(folder / "sync.log", "w")
        logs.configure("info", stream=log_file, fmt="json")
        settings = load_settings(folder, environ=dict(os.environ))
        db = Database(sqlite_url(folder))
        db.migrate()
        syncer = Syncer(db, settings)

        def timed(name: str, fn: Any) -> tuple[float, Any]:
            started = time.perf_counter()
            report = profiled(opts.profile, f"sync-{name}", fn)
            return time.perf_counter() - started, report

        first_s, first = timed("first", syncer.run)
        log(f"sync: first pass over {p['files']} files in {first_s:.2f}s")
        unchanged_s, unchanged = timed("unchanged", syncer.run)
        for i in range(0, p["files"], max(1, p["files"] // p["changed"]))[: p["changed"]]:
            to = [accounts[(i + k) % len(accounts)] for k in range(p["targets"])]
            path = write_post(folder, _post_name(i, p["folders"]), to=to, text=f"Pengumuman nomor {i}: jadwal BARU",
                              at=base + timedelta(minutes=i))
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        changed_s, changed = timed("changed", syncer.run)
        restart_s, restart = timed("restart", Syncer(db, settings).run)
        db.dispose()
        log_file.close()
        db_mb = sum(f.stat().st_size for f in (folder / "state").glob("siar.db*")) / 1e6
    finally:
        cleanup(opts, folder)
    figures = {
        "files": p["files"],
        "deliveries": first.created * p["targets"] if first else None,
        "first_sync_s": r(first_s, 3),
        "unchanged_resync_s": r(unchanged_s, 3),
        "changed_resync_s": r(changed_s, 3),
        "restart_resync_s": r(restart_s, 3),
        "first_ms_per_file": r(first_s * 1000 / p["files"], 3),
        "reports": {
            "first": {"created": first.created, "parsed": first.parsed, "problems": len(first.problems)},
            "unchanged": {"parsed": unchanged.parsed, "changed": unchanged.changed},
            "changed": {"parsed": changed.parsed, "updated": changed.updated},
            "restart": {"parsed": restart.parsed, "changed": restart.changed},
        },
        "db_mb": r(db_mb, 1),
    }
    met = first_s <= TARGET["first_s"] and unchanged_s <= TARGET["unchanged_s"]
    return record("sync", opts, p, figures, {**TARGET, "met": met},
                  notes=["timed in-process: publisher.sync.Syncer.run on a migrated SQLite file (WAL, "
                         "synchronous=FULL), the daemon's own code; no interpreter start-up included"])
