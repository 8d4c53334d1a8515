"""Secret canary (issue 4, item 9): every account of every platform is given credentials that are
canaries — `CANARY-<account>-<key>-<random>`, distinct per account and key — and the daemon runs at
`log_level = "debug"` while the platforms misbehave in ways that make adapters fail unexpectedly:
error pages that echo the request back (URL with `access_token`, the bot path, Authorization
headers, the form body) or name the credential in plain words, 200 answers that are not JSON, JSON of the wrong shapes, unknown routes
that quote the path; then a SIGKILL mid-send and a restart that reconciles through lookups.

Then every place a secret could land is searched for each canary (and each token a platform
issued along the way) as written, URL-encoded (both ways), base64 (standard and URL-safe, with
and without padding, and at every byte alignment inside a longer encoded text): every log line
and traceback, every audit row, every column of every delivery and account row (errors
included), the SQLite files' raw bytes (db, -wal, -shm, taken while the daemon runs and after),
every other file the daemon wrote, and the output of status / show / audit / accounts --verify.
None may be found. Rotated tokens live only in the accounts' 0600 files under state/accounts.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import stat
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import Workspace
from tests.faults.fleet import ALL_PLATFORMS, MEDIA_URL, SETTLING, Fleet
from tests.support.commands import run_all
from tests.support.fakeserver import Answer, Seen
from tests.support.process import DaemonProcess, query, siar_env, wait_until

pytestmark = pytest.mark.slow

SETTINGS = f"""
[daemon]
timezone = "Asia/Jakarta"
media_url = "{MEDIA_URL}"
log_level = "debug"
sync_every = "1s"
lease = "3s"
http_timeout = "1s"
shutdown_grace = "3s"

[retry]
attempts = 6
first_delay = "1s"
max_delay = "1s"
"""


def canary(account: str, key: str) -> str:
    return f"CANARY-{account}-{key}-{secrets.token_hex(8)}"


def forms(value: str) -> set[str]:
    """How a secret could be written out: as is, URL-encoded, base64 in every variant and at every
    byte alignment (the part of an encoded longer text that only the secret's bytes decide)."""
    raw = value.encode()
    found = {value, quote(value, safe=""), quote_plus(value)}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        first, last = -(-shift // 3), (shift + len(raw)) // 3  # whole 3-byte groups inside the secret
        core = encoded[4 * first:4 * last]
        found |= {core, core.replace("+", "-").replace("/", "_")}
        if shift == 0:
            found |= {encoded, encoded.rstrip("="), base64.urlsafe_b64encode(raw).decode()}
    return {f for f in found if len(f) >= 12}


def echo(seen: Seen) -> Answer:
    """A proxy's error page quoting the whole request back."""
    return Answer(502, f"<html>Bad gateway for {seen.method} {seen.path}; headers={seen.headers}; "
                       f"body={seen.body[:400]!r}</html>")


GARBAGE = Answer(200, "<html><body>Maintenance: this is not JSON</body></html>", headers={"Content-Type": "application/json"})
def tattle(seen: Seen) -> Answer:
    """A platform error that names the credential it was given, in plain words (no `Bearer`, no
    `access_token=` around it for a pattern to catch): only masking by value can hide it."""
    sent = f"{seen.path} {seen.headers} {seen.body.decode('utf-8', 'replace')}"
    named = sorted(set(re.findall(r"CANARY-[A-Za-z0-9_-]+", sent))) or ["(none)"]
    text = f"credential {' and '.join(named)} is not valid for this resource"
    return Answer(500, {"error": {"message": text, "code": 2, "type": "OAuthException"}, "message": text,
                        "detail": text, "title": "Server Error", "status": 500, "description": text,
                        "ok": False, "error_code": 500})


# Claims gzip, is not: `requests` itself raises (ContentDecodingError) inside the adapter's call,
# an error no adapter maps, so it reaches the dispatcher as an unexpected exception with its traceback.
BROKEN_GZIP = Answer(200, b"{not gzip at all}", headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
WRONG_SHAPES = Answer(200, {"id": ["not", "an", "id"], "data": "oops", "value": 7, "uri": {"not": "a uri"},
                            "messages": {"id": 1}, "contacts": None, "ok": True, "result": "r", "post_id": {},
                            "status_code": ["x"], "status": 12, "blob": "b"})


def test_no_canary_secret_is_found_anywhere_after_a_debug_run_full_of_adapter_failures(tmp_path):
    workspace = Workspace(tmp_path / "config")
    fleet = Fleet(workspace.root, secret=canary)
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        for platform in ALL_PLATFORMS:
            fleet.add(platform, f"akun-{platform}")
        fleet.write(workspace, SETTINGS)
        names = list(fleet.accounts)
        for n, name in enumerate(names):
            fleet.post(workspace, f"kf-1{n:03d}", [name])
        for account in fleet.accounts.values():
            if account.fake is not None:  # the step that makes the post: echo, broken, not JSON, wrong JSON, then fine
                account.fake.fail(account.create, echo, tattle, BROKEN_GZIP, GARBAGE, WRONG_SHAPES, None)
        db = workspace.state / "siar.db"
        env = siar_env()

        def settled() -> bool:  # nothing left to do but what waits for a person (a paused account)
            rows = query(db, "SELECT d.state, a.paused FROM delivery d JOIN account a ON a.name = d.account")
            return bool(rows) and not any(r["state"] in SETTLING and not r["paused"] for r in rows)

        files: dict[str, bytes] = {}
        with DaemonProcess(workspace.root, logs / "first.log", env) as daemon:
            wait_until(settled, timeout=60, interval=0.3, what=f"settled; log:\n{daemon.logs()[-2000:]}")
            assert daemon.terminate() == 0
        # A second round, killed mid-send, then reconciled through the platforms' look-ups.
        for n, name in enumerate(names):
            fleet.post(workspace, f"kf-2{n:03d}", [name])
        with DaemonProcess(workspace.root, logs / "killed.log", siar_env(SIAR_FAULTS="after_publish=kill")) as daemon:
            assert daemon.proc.wait(60) == -9
        with DaemonProcess(workspace.root, logs / "restart.log", env) as daemon:
            wait_until(settled, timeout=60, interval=0.3, what=f"settled; log:\n{daemon.logs()[-2000:]}")
            for path in sorted(workspace.state.glob("siar.db*")):  # the -wal holds the newest pages now
                files[f"{path.name} (running)"] = path.read_bytes()
            assert daemon.terminate() == 0

        deliveries = query(db, "SELECT * FROM delivery ORDER BY id")
        with_errors = [r for r in deliveries if r["last_error"]]
        shown = [[*(["show", r["post_id"]]), *(["--json"] if i % 2 else [])] for i, r in enumerate(with_errors[:8])]
        commands = [["status"], ["status", "--json"], ["audit"], ["audit", "--format", "json"],
                    ["audit", "--format", "csv"], ["audit", "verify"], ["accounts", "--verify"],
                    ["accounts", "--verify", "--json"], *shown]
        results = run_all(workspace.root, commands, env=env)

        # --- the canaries were really in play, and the failures really happened -------------------
        for account in fleet.accounts.values():
            if account.server is None or account.platform == "webhook":  # a webhook secret only signs
                continue
            sent = "\n".join(f"{s.path} {s.headers} {s.body!r}" for s in account.server.requests)
            used = [v for v in account.secrets.values() if v in sent or quote_plus(v) in sent]
            assert used, f"{account.name} never sent its credentials"  # (X's refresh token waits for a 401)
        daemon_logs = "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))
        events = [json.loads(line) for line in daemon_logs.splitlines() if line.startswith("{")]
        tracebacks = [e for e in events if "Traceback" in str(e.get("exception", ""))]
        assert len(tracebacks) >= 3, "no adapter raised an unexpected error: the canary saw no traceback"
        assert any(e.get("event") == "delivery.reconciling" for e in events)
        assert results[commands.index(["audit", "verify"])].returncode == 0

        # --- everywhere a secret could land -----------------------------------------------------------
        needles = {value for a in fleet.accounts.values() for value in a.secrets.values()}
        needles |= {token for a in fleet.accounts.values() for token in a.issued()}
        places: dict[str, str] = {"daemon logs": daemon_logs}
        for table in ("audit_event", "delivery", "account", "daemon", "post"):
            places[f"table {table}"] = json.dumps([dict(r) for r in query(db, f"SELECT * FROM {table}")], default=str)
        for n, result in enumerate(results):
            places[f"`siar {' '.join(commands[n])}`"] = result.stdout + result.stderr
        for path in sorted(workspace.state.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(workspace.state)
            if relative.parts[0] == "accounts":  # rotated tokens and sessions: kept here, private
                assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{relative} is readable by others"
                continue
            files[str(relative)] = path.read_bytes()
        assert {"siar.db (running)", "siar.db-wal (running)", "siar.db"} <= set(files)
        for name, data in files.items():
            places[f"file {name}"] = data.decode("latin-1")  # byte for byte; every needle is ASCII
        found: dict[str, list[str]] = {}
        for where, text in places.items():
            hits = sorted({f"{form[:24]}… (of {value[:22]}…)" for value in needles for form in forms(value)
                           if form in text})
            if hits:
                found[where] = hits
        assert found == {}
    finally:
        fleet.close()
