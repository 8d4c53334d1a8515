"""The kill -9 loop: many posts over many accounts and platforms, `siar run` SIGKILLed at random
moments (seeded) and restarted at once, then a clean run to the end; the fake platforms count what
they really made, and the run is scored as lost / duplicated / recovered / unknown.

`make soak` runs the long version and writes its figures to bench/results/soak.json:

    .venv/bin/python -m tests.faults.soak [--posts 3000] [--kills 300] [--seed 4] [--out FILE]

tests/faults/test_kill_loop.py runs the short one (300 posts, 40 kills) inside `make test`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tests.conftest import Workspace
from tests.faults.fleet import MEDIA_URL, SETTLING, Fleet, score
from tests.support.process import DaemonProcess, query, run_siar, siar_env, wait_until

# Leases short so reconciliation happens within the loop; lease > 2 × http_timeout.
SETTINGS = f"""
[daemon]
timezone = "Asia/Jakarta"
media_url = "{MEDIA_URL}"
sync_every = "1s"
lease = "3s"
http_timeout = "1s"
shutdown_grace = "3s"

[retry]
attempts = 10
first_delay = "1s"
max_delay = "2s"
"""

# Several accounts per kind: exact platforms (outbox, Mastodon key, Bluesky rkey, Instagram and
# Threads containers, X and Facebook timelines) and platforms that cannot be asked (webhook,
# Telegram, LinkedIn), whose unsettled deliveries must end `unknown`, never resent.
ACCOUNTS = (("outbox", "latihan"), ("outbox", "arsip"), ("webhook", "hook"), ("mastodon", "masto"),
            ("bluesky", "bsky"), ("instagram", "ig"), ("threads", "threads"), ("telegram", "tg"),
            ("linkedin", "li"), ("x", "x"), ("facebook", "fb"))
# When each SIGKILL lands: mostly while the daemon is sending (a random moment within AFTER_READY
# seconds of it being ready), sometimes during its start (migrations, sync, the first reap).
AFTER_READY = (0.05, 1.2)
EARLY = 0.15  # the share of kills at a random moment of the start instead
STARTUP = 1.0  # about how long a start takes here, for spreading the posts' times over the loop
LATENCY = 0.12  # each fake answer waits up to this long after the platform acted


def _ready(daemon: DaemonProcess, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and daemon.proc.poll() is None:
        if '"daemon.ready"' in daemon.logs():
            return True
        time.sleep(0.02)
    return False


def kill_loop(root: Path, *, posts: int = 300, kills: int = 40, seed: int = 4,
              say: Any = lambda *_: None) -> dict[str, Any]:
    """Run the loop in `root` (a fresh folder); the figures, with the deliveries that failed the rule."""
    rng = random.Random(seed)
    started = time.monotonic()
    workspace = Workspace(root / "config")
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(workspace.root)
    try:
        for platform, name in ACCOUNTS:
            fleet.add(platform, name)
        fleet.write(workspace, SETTINGS)
        names = [name for _, name in ACCOUNTS]
        # Work keeps arriving while the kills go on: most posts fall due during the loop.
        span = kills * (STARTUP + sum(AFTER_READY) / 2) * 0.8
        now = datetime.now(timezone.utc).replace(microsecond=0)
        for number in range(1, posts + 1):
            targets = rng.sample(names, rng.choice((1, 1, 2)))
            at = None
            if rng.random() < 0.7:
                at = (now + timedelta(seconds=rng.uniform(0, span))).replace(microsecond=0).isoformat()
            fleet.post(workspace, f"kf-{number:05d}", targets, at=at)
        fleet.slow(rng, LATENCY)
        env = siar_env()
        db = workspace.state / "siar.db"
        mid_send = 0  # kills that left a delivery of the killed daemon claimed or sending
        for number in range(kills):
            with DaemonProcess(workspace.root, logs / f"run-{number:04d}.log", env) as daemon:
                if rng.random() < EARLY:
                    time.sleep(rng.uniform(0.2, STARTUP))
                else:
                    _ready(daemon)
                    time.sleep(rng.uniform(*AFTER_READY))
                daemon.kill()
            caught = query(db, "SELECT count(*) AS n FROM delivery WHERE state IN ('claimed', 'sending') "
                               "AND lease_owner LIKE :owner", owner=f"%:{daemon.proc.pid}:%")
            mid_send += bool(caught and caught[0]["n"])
            if number % 10 == 9:
                say(f"{number + 1} kills ({mid_send} mid-send), {time.monotonic() - started:.0f}s")

        def settled() -> bool:
            rows = query(db, "SELECT count(*) AS n FROM delivery WHERE state IN ('pending', 'claimed', "
                             "'sending', 'retrying')")
            return bool(rows) and rows[0]["n"] == 0 and len(query(db, "SELECT id FROM delivery")) > 0

        with DaemonProcess(workspace.root, logs / "final.log", env) as daemon:
            wait_until(settled, timeout=60 + posts / 10, interval=0.5, what=f"every delivery to settle ({SETTLING})")
            code = daemon.terminate()
        verify = run_siar(workspace.root, "audit", "verify", env=env)
        result = score(workspace, fleet)
        figures = {**result.figures(), "posts": posts, "kills": kills, "kills_mid_send": mid_send, "seed": seed,
                   "audit_chain_intact": verify.returncode == 0, "final_exit": code,
                   "seconds": round(time.monotonic() - started, 1)}
        figures["failures"] = {"lost": result.lost[:20], "duplicated": result.duplicated[:20]}
        return figures
    finally:
        fleet.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=300)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (printed) for a post-mortem")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="siar-soak-"))
    figures = kill_loop(folder, posts=args.posts, kills=args.kills, seed=args.seed,
                        say=lambda text: print(text, file=sys.stderr, flush=True))
    figures["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if args.keep:
        figures["folder"] = str(folder)
    else:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    text = json.dumps(figures, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    ok = (figures["lost"] == 0 and figures["duplicated"] == 0 and figures["audit_chain_intact"]
          and figures["kills_mid_send"] > 0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
