"""No secret leaves the process: tokens configured as ${VAR} in .env are used for real sends that
succeed and fail every way, then searched for — raw, base64 and URL-encoded — in every log line,
audit row, byte of the database files (on PostgreSQL: every column of every table), stored error
and command output."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
import socket
import sys
from urllib.parse import quote, quote_plus

import pytest
import requests

from adapters.base import register_secret
from publisher import audit, logs
from publisher.db import Database
from publisher.redact import REDACTOR, redact
from tests.support.commands import delivery, rows, run_all
from tests.support.fakeserver import Answer, FakeServer, Seen
from tests.support.process import DaemonProcess, dump, siar_env, wait_until


def forms(value: str) -> set[str]:
    """The ways a secret could be written out: as is, URL-encoded, base64 (with and without padding)."""
    b64 = base64.b64encode(value.encode()).decode()
    return {value, quote(value, safe=""), quote_plus(value), b64, b64.rstrip("="),
            base64.urlsafe_b64encode(value.encode()).decode()}


def leaks(text: str, values: list[str]) -> list[str]:
    return sorted({form for value in values for form in forms(value) if form in text})


# --- unit level: the redactor itself -----------------------------------------------------------


def test_redact_masks_authorization_headers_access_token_parameters_and_bot_paths_in_exception_text():
    cases = [
        (requests.ConnectionError("HTTPSConnectionPool(host='api.telegram.org', port=443): Max retries exceeded "
                                  "with url: /bot123456789:AAHk-Zx_9q8w7e6r5t4y3u2i1o0p/sendMessage"),
         ["123456789:AAHk", "AAHk-Zx_9q8w7e6r5t4y3u2i1o0p"], "/bot***/sendMessage"),
        (ValueError("sent headers={'Authorization': 'Bearer EAAGm0PX4ZCpsBA1x2y3', 'Accept': 'json'}"),
         ["EAAGm0PX4ZCpsBA1x2y3"], "'Accept': 'json'"),
        (RuntimeError('{"authorization": "Bearer abc.def-ghi_jkl"}'), ["abc.def-ghi_jkl"], '"authorization": "'),
        (RuntimeError("Authorization: Basic dXNlcjpwYXNzd29yZA=="), ["dXNlcjpwYXNzd29yZA"], "Authorization: "),
        (OSError("GET https://graph.facebook.com/v19.0/me?fields=id,name&access_token=EAAGsecret123&limit=1 failed"),
         ["EAAGsecret123"], "fields=id,name&access_token=***&limit=1 failed"),
        (OSError("POST /oauth2/token body: refresh_token=1//0gRefresh-Tok&client_secret=GOCSPX-abcdef"),
         ["1//0gRefresh-Tok", "GOCSPX-abcdef"], "refresh_token=***&client_secret=***"),
        (OSError('Authorization: OAuth oauth_consumer_key="ck-123456", oauth_nonce="n0nce99", '
                 'oauth_signature="c2lnbmF0dXJl%3D", oauth_signature_method="HMAC-SHA1", oauth_token="99-AbCdEf"'),
         ["ck-123456", "n0nce99", "c2lnbmF0dXJl", "99-AbCdEf"], 'oauth_signature_method="HMAC-SHA1"'),
    ]
    for exc, hidden, kept in cases:
        for text in (redact(str(exc)), REDACTOR.deep(exc)):
            assert not [h for h in hidden if h in text], text
            assert kept in text, text
    assert REDACTOR.deep(cases[0][0]).startswith("ConnectionError: ")


def test_every_resolved_secret_is_masked_in_all_its_encodings():
    secret = "s3cr3t/with+odd=chars"
    REDACTOR.add(secret)
    text = " | ".join(sorted(forms(secret)))
    assert leaks(redact(text), [secret]) == []
    assert redact("nothing secret here") == "nothing secret here"


def test_a_token_an_adapter_obtains_at_run_time_is_masked_too():
    register_secret("ya29.refreshed-access-token-4711")  # what a refreshing adapter tells the core

    assert redact("Authorization-less echo: ya29.refreshed-access-token-4711") == "Authorization-less echo: ***"


def test_log_lines_mask_secrets_in_tracebacks_from_structlog_and_the_standard_library():
    secret = "tok-" + secrets.token_hex(8)
    REDACTOR.add(secret)
    stream = io.StringIO()
    logs.configure("info", stream=stream, fmt="json")
    try:
        try:
            raise ConnectionError(f"POST https://example.test/hook?key={secret} failed")
        except ConnectionError as exc:
            logs.get("siar.test").error("delivery.adapter_error", error=str(exc), exc_info=exc)
            logging.getLogger("urllib3.connectionpool").warning("Retrying after %s", "a reset", exc_info=True)
            logging.getLogger("apscheduler.executors").error("Job raised", exc_info=exc)
    finally:
        logs.configure("info", stream=sys.stderr)
    output = stream.getvalue()
    assert output.count("ConnectionError") >= 3  # the tracebacks are there ...
    assert leaks(output, [secret]) == []  # ... without the secret


def test_an_audit_detail_holding_a_secret_that_json_escapes_is_masked(workspace, siar_database):
    secret = 'pa"ss\\word-' + secrets.token_hex(4)
    REDACTOR.add(secret)
    db = Database(workspace.settings().database)
    db.migrate()
    with db.write() as conn:
        audit.append(conn, "note", detail={"echo": f"the platform said {secret}"}, error=f"echo {secret}")
    with db.read() as conn:
        (event,) = audit.events(conn)
        assert audit.verify(conn) == (1, None)
    db.dispose()
    stored = json.dumps(event, default=str)
    assert json.loads(event["detail"]) == {"echo": "the platform said ***"}
    assert leaks(stored, [secret, json.dumps(secret)[1:-1]]) == []


# --- end to end: the daemon and every command ---------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def telegram_answer(token: str):  # noqa: ANN201
    message = {"message_id": 7, "chat": {"id": -1001234, "username": "siar_ok"}}

    def answer(seen: Seen) -> Answer:
        chat = seen.json().get("chat_id") if seen.body else None
        if seen.path.endswith("/getMe"):
            return Answer(200, {"ok": True, "result": {"id": 42, "username": "siar_bot"}})
        if chat == "@siar_auth":
            return Answer(401, {"ok": False, "error_code": 401, "description": f"Unauthorized: {token}"})
        if chat == "@siar_slow":
            return Answer(200, {"ok": True, "result": message}, delay=2.5)
        return Answer(200, {"ok": True, "result": message})

    return answer


@pytest.mark.slow
def test_no_token_reaches_a_log_line_an_audit_row_the_database_files_or_any_command_output(
    workspace, tmp_path, siar_database
):
    hook_secret = f"whsec/{secrets.token_hex(10)}+{secrets.token_hex(4)}="
    url_token = "hooktok" + secrets.token_hex(10)
    tg_token = f"{secrets.randbelow(10**9) + 10**9}:AA{secrets.token_urlsafe(24)}"
    needles = [hook_secret, url_token, tg_token, tg_token.split(":", 1)[1]]
    down = closed_port()

    with FakeServer() as server:
        b64 = base64.b64encode(hook_secret.encode()).decode()
        # Platforms that echo what they were sent: the redactor must catch the echo too.
        server.route("POST", "/ok", Answer(200, {"id": "w-1", "url": "https://hooks.example.go.id/1"}))
        server.route("POST", "/auth", Answer(401, {"error": f"signature with key {hook_secret} ({b64}) refused"}))
        server.route("POST", "/bad", Answer(422, {"error": f"bad request, key={quote(hook_secret, safe='')}"}))
        server.route("POST", "/err", Answer(500, f"upstream failed for {quote_plus(hook_secret)}"))
        server.route("POST", "/slow", Answer(200, {"id": "late"}, delay=2.5))
        for method in ("sendMessage", "getMe"):
            server.route("POST", f"/bot{tg_token}/{method}", telegram_answer(tg_token))

        def hook(name: str, url: str) -> str:
            return f'\n[accounts.{name}]\nplatform = "webhook"\nurl = "{url}"\nsecret = "${{HOOK_SECRET}}"\n'

        def telegram(name: str, chat: str, base: str) -> str:
            return (f'\n[accounts.{name}]\nplatform = "telegram"\nbot_token = "${{TG_TOKEN}}"\n'
                    f'chat = "{chat}"\napi_base = "{base}"\n')

        workspace.write_settings("""
[daemon]
timezone = "Asia/Jakarta"
sync_every = "1s"
lease = "3s"
http_timeout = "1s"
shutdown_grace = "5s"

[retry]
attempts = 2
first_delay = "300ms"
max_delay = "600ms"
""" + hook("hook-ok", f"{server.url}/ok") + hook("hook-auth", f"{server.url}/auth")
            + hook("hook-bad", f"{server.url}/bad") + hook("hook-err", f"{server.url}/err")
            + hook("hook-slow", f"{server.url}/slow") + hook("hook-down", "${HOOK_URL}")
            + telegram("tg-ok", "@siar_ok", server.url) + telegram("tg-auth", "@siar_auth", server.url)
            + telegram("tg-slow", "@siar_slow", server.url)
            + telegram("tg-down", "@siar_ok", f"http://127.0.0.1:{down}"))
        env_file = workspace.root / ".env"
        env_file.write_text(f"HOOK_SECRET='{hook_secret}'\nTG_TOKEN={tg_token}\n"
                            f"HOOK_URL=http://127.0.0.1:{down}/hook?access_token={url_token}\n")
        env_file.chmod(0o600)
        accounts = ["hook-ok", "hook-auth", "hook-bad", "hook-err", "hook-slow", "hook-down",
                    "tg-ok", "tg-auth", "tg-slow", "tg-down"]
        for name in accounts:
            workspace.post(f"{name}.toml", f'to = ["{name}"]\ntext = "Uji rahasia {name}"\n')
        expected = {"hook-ok": "published", "hook-auth": "paused", "hook-bad": "failed", "hook-err": "failed",
                    "hook-slow": "unknown", "hook-down": "failed", "tg-ok": "published", "tg-auth": "paused",
                    "tg-slow": "unknown", "tg-down": "failed"}

        def settled() -> bool:
            return {r["account"]: r["state"] for r in rows(workspace, "SELECT * FROM delivery")} == expected

        db_files: dict[str, bytes] = {}
        with DaemonProcess(workspace.root, tmp_path / "daemon.log", siar_env()) as daemon:
            wait_until(settled, timeout=30, what=f"every delivery settled; log:\n{daemon.logs()[-3000:]}")
            # While the daemon runs, the write-ahead log holds the newest pages.
            for path in sorted(workspace.state.glob("siar.db*")):
                db_files[f"{path.name} (running)"] = path.read_bytes()
            if workspace.postgres:
                db_files["tables (running)"] = json.dumps(dump(workspace.postgres), default=str).encode()
            assert daemon.terminate() == 0
            daemon_log = daemon.logs()

        # The secrets were really in play: the token in the path, the secret in the signature.
        assert server.seen("POST", f"/bot{tg_token}/sendMessage")
        assert "***" in delivery(workspace, "hook-auth")["last_error"]  # the echo was there, and masked
        assert "***" in delivery(workspace, "tg-auth")["last_error"]

        ids = {r["account"]: r["id"] for r in rows(workspace, "SELECT account, id FROM delivery")}
        commands = [
            ["check"], ["check", "--json"], ["status"], ["status", "--json"],
            ["audit"], ["audit", "--format", "csv"],
            ["accounts"], ["accounts", "--json"], ["accounts", "--verify"], ["accounts", "--verify", "--json"],
            ["show", "no-such-post"], ["show", "hook-auth"], ["show", "hook-down"], ["show", "tg-auth", "--json"],
            ["show", "tg-down", "--json"],
            # What a person does; each on its own delivery, so they may run side by side.
            ["retry", str(ids["hook-bad"])], ["cancel", str(ids["tg-auth"])], ["retry", str(ids["hook-slow"])],
            ["resolve", str(ids["tg-slow"]), "--not-published"], ["retry", "hook-auth"],
            ["resolve", str(ids["hook-err"]), "--published", "https://x.id/1"],
        ]
        results = run_all(workspace.root, commands)
        # After the changes, so their events are read back too.
        results += run_all(workspace.root, [["audit", "--format", "json"], ["audit", "verify"]])

    assert [r.returncode for r in results[-2:]] == [0, 0]
    verified = json.loads(results[commands.index(["accounts", "--verify", "--json"])].stdout)
    assert {a["name"] for a in verified if a.get("error")} == {"hook-auth", "hook-bad", "hook-err", "hook-down",
                                                               "hook-slow", "tg-down"}
    audit_rows = rows(workspace, "SELECT * FROM audit_event ORDER BY seq")
    assert len(audit_rows) > 40

    # A second configuration whose error message would quote a secret value.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "siar.toml").write_text('[accounts.hook]\nplatform = "webhook"\nurl = "https://x.example/h"\n'
                                     'api_base = "${HOOK_SECRET}"\nmax_per_day = "${TG_TOKEN}"\n')
    (wrong / ".env").write_text(env_file.read_text())
    (wrong / ".env").chmod(0o600)
    errors = run_all(wrong, [["check"], ["status"]])
    assert [r.returncode for r in errors] == [1, 1]
    assert "api_base: expected an http(s) URL, got" in errors[0].stdout

    for path in sorted(workspace.state.rglob("*")):
        if path.is_file():
            db_files[str(path.relative_to(workspace.state))] = path.read_bytes()
    if workspace.postgres:
        db_files["tables"] = json.dumps(dump(workspace.postgres), default=str).encode()
    places = {"daemon log": daemon_log, "audit rows": json.dumps([dict(r) for r in audit_rows], default=str)}
    for n, result in enumerate(results + errors):
        places[f"output {n} of `siar {' '.join(result.args[3:-2])}`"] = result.stdout + result.stderr
    for name, data in db_files.items():
        places[f"file {name}"] = data.decode("latin-1")  # byte for byte; every needle is ASCII
    if workspace.postgres:
        assert db_files.keys() >= {"tables (running)", "tables"}
    else:
        assert db_files.keys() >= {"siar.db (running)", "siar.db-wal (running)", "siar.db"}
    found = {where: leaks(text, needles) for where, text in places.items()}
    assert {where: hits for where, hits in found.items() if hits} == {}
    assert '"delivery.paused"' in daemon_log and "ReadTimeout" in daemon_log  # the failures were logged

