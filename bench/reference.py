"""The overhead scenario's physical limit: one loop, in its own process, doing per delivery
exactly the database commits the daemon does (with the same audit rows) and one loopback POST
with `requests`.

    python -m bench.reference --url URL --db PATH --n N [--claims C] [--session daemon] [--no-fsync]

Per delivery, as publisher/dispatch.py does it:
  claim      one commit per claim batch (UPDATE the batch to `claimed` + one audit row each);
             --claims C spreads C claim commits over the N deliveries, as the daemon's run did
  sending    one commit: fenced UPDATE to `sending` + audit row (`attempt`)
  POST       one request with requests.Session (keep-alive), JSON body like the webhook's; with
             --session daemon, the daemon's own session (publisher.dispatch.CountingSession, a
             requests.Session that skips requests' per-request environment and cookie merging)
  record     one commit: fenced UPDATE to `published` + audit row (`published`) + the account's
             pacing (UPDATE account SET last_published_at, dispatch._pace), in one transaction
Every audit row is appended as audit.append does: read the head, insert the event with its
sha256 chain hash, update the head. SQLite: WAL, synchronous=FULL, BEGIN IMMEDIATE, as db.py;
with --no-fsync, synchronous=OFF: the commits cost no fsync at all (the daemon's group commit
shares one fsync among many deliveries, which a sequential loop cannot; without any, the loop's
CPU is a floor for the daemon's).
Prints one JSON object: the rate, and the loop's own CPU per delivery.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import time
from datetime import datetime, timezone

import requests

SCHEMA = """
CREATE TABLE delivery (id INTEGER PRIMARY KEY, account TEXT, state TEXT, lease_owner TEXT,
  lease_expires TEXT, claim_token INTEGER, attempts INTEGER, platform_id TEXT, updated_at TEXT,
  published_at TEXT);
CREATE INDEX ix_delivery_ready ON delivery(state);
CREATE TABLE audit_event (seq INTEGER PRIMARY KEY, at TEXT, delivery_id INTEGER, account TEXT,
  event TEXT, attempt INTEGER, actor TEXT, detail TEXT, prev_hash TEXT, hash TEXT);
CREATE INDEX ix_audit_event_delivery_id ON audit_event(delivery_id);
CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq INTEGER, hash TEXT);
CREATE TABLE account (name TEXT PRIMARY KEY, last_published_at TEXT);
INSERT INTO audit_head VALUES (1, 0, '');
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(sep=" ")


def audit(cur: sqlite3.Cursor, delivery_id: int, account: str, event: str, attempt: int) -> None:
    seq, prev = cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    at = now()
    row = {"seq": seq + 1, "at": at, "delivery_id": delivery_id, "account": account, "event": event,
           "attempt": attempt, "actor": "daemon", "detail": None}
    digest = hashlib.sha256((prev + json.dumps(row, sort_keys=True, separators=(",", ":"))).encode()).hexdigest()
    cur.execute("INSERT INTO audit_event VALUES (?,?,?,?,?,?,?,?,?,?)",
                (seq + 1, at, delivery_id, account, event, attempt, "daemon", None, prev, digest))
    cur.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq + 1, digest))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--claims", type=int, default=0, help="claim commits in all (default: one per delivery)")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--session", choices=("requests", "daemon"), default="requests")
    parser.add_argument("--no-fsync", action="store_true", help="synchronous=OFF: commits without fsync")
    args = parser.parse_args()
    n = args.n
    claims = args.claims or n
    db = sqlite3.connect(args.db, isolation_level=None, check_same_thread=False, timeout=15)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF" if args.no_fsync else "PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=15000")
    db.executescript(SCHEMA)
    accounts = [f"a{i:03d}" for i in range(args.accounts)]
    db.execute("BEGIN")
    db.executemany("INSERT INTO delivery (id, account, state, claim_token, attempts) VALUES (?, ?, 'pending', 0, 0)",
                   [(i + 1, accounts[i % len(accounts)]) for i in range(n)])
    db.executemany("INSERT INTO account (name) VALUES (?)", [(a,) for a in accounts])
    db.execute("COMMIT")
    if args.session == "daemon":
        from publisher.dispatch import CountingSession

        session: requests.Session = CountingSession()
    else:
        session = requests.Session()
    session.headers["User-Agent"] = "siar/0.1 (+https://github.com/siar-publisher)"
    cur = db.cursor()
    commits = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    claimed_upto = 0
    batch = 0
    for i in range(n):
        delivery_id, account = i + 1, accounts[i % len(accounts)]
        if i >= claimed_upto:  # one claim commit covers the next batch
            batch += 1
            batch_end = min(n, max(i + 1, round(batch * n / claims)))
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("UPDATE delivery SET state = 'claimed', lease_owner = 'ref', lease_expires = ?, "
                        "claim_token = claim_token + 1, updated_at = ? WHERE id BETWEEN ? AND ? AND state = 'pending' "
                        "RETURNING *", (now(), now(), i + 1, batch_end)).fetchall()
            for j in range(i, batch_end):
                audit(cur, j + 1, accounts[j % len(accounts)], "claimed", 1)
            cur.execute("COMMIT")
            commits += 1
            claimed_upto = batch_end
        cur.execute("BEGIN IMMEDIATE")
        cur.execute("UPDATE delivery SET state = 'sending', attempts = 1, lease_expires = ?, updated_at = ? "
                    "WHERE id = ? AND lease_owner = 'ref' AND claim_token = 1", (now(), now(), delivery_id))
        audit(cur, delivery_id, account, "attempt", 1)
        cur.execute("COMMIT")
        body = json.dumps({"event": "publish", "key": f"siar-ref-{delivery_id}", "attempt": 1, "account": account,
                           "post_id": f"burst/p{i:05d}", "text": f"Siaran serentak nomor {i}", "link": None,
                           "title": None, "media": []}, separators=(",", ":")).encode()
        response = session.post(f"{args.url}/ref/{account}", data=body, timeout=30,
                                headers={"Content-Type": "application/json", "Idempotency-Key": f"ref-{delivery_id}"})
        platform_id = str(response.json().get("id"))
        cur.execute("BEGIN IMMEDIATE")
        cur.execute("UPDATE delivery SET state = 'published', platform_id = ?, lease_owner = NULL, lease_expires = NULL, "
                    "published_at = ?, updated_at = ? WHERE id = ? AND lease_owner = 'ref' AND claim_token = 1",
                    (platform_id, now(), now(), delivery_id))
        audit(cur, delivery_id, account, "published", 1)
        cur.execute("UPDATE account SET last_published_at = ? WHERE name = ?", (now(), account))
        cur.execute("COMMIT")
        commits += 2
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started  # this process only: the wait for the platform is not in it
    print(json.dumps({"deliveries": n, "seconds": elapsed, "rate_per_s": n / elapsed,
                      "cpu_ms_per_delivery": cpu * 1000 / n, "commits": commits, "commits_per_delivery": commits / n}))


if __name__ == "__main__":
    main()
