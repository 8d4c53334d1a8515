"""The end-to-end harness: a configuration folder, a fake platform server, `siar run --once`.

Every account points `api_base` at the local server; secrets go into `.env` as `${VAR}`, the way
an operator keeps them, so the secrets check covers the path they really travel.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Workspace
from tests.support.fakeserver import FakeServer
from tests.support.process import query, run_siar, siar_env

# Where the media folder is served publicly: Meta (Facebook, Instagram, Threads, WhatsApp) fetches by URL.
MEDIA_URL = "https://cdn.palembang.go.id/siar/"

# Short retry waits, so a platform's own wait stands out from the backoff (at most 2 s here).
SETTINGS = f"""
[daemon]
timezone = "Asia/Jakarta"
media_url = "{MEDIA_URL}"
sync_every = "1s"
lease = "30s"
http_timeout = "5s"
shutdown_grace = "5s"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "2s"
"""
MAX_BACKOFF_S = 2.0


class EndToEnd:
    """One configuration folder wired to one fake platform server."""

    def __init__(self, workspace: Workspace, server: FakeServer) -> None:
        self.workspace = workspace
        self.server = server
        self.secrets: dict[str, str] = {}
        self.stderr: list[str] = []

    @property
    def api(self) -> str:
        return self.server.url

    def configure(self, accounts: str, secrets: dict[str, str]) -> None:
        """`siar.toml` with these account tables, and `.env` (mode 0600) holding the secrets."""
        self.workspace.write_settings(SETTINGS, extra=accounts)
        env = self.workspace.root / ".env"
        env.write_text("".join(f"{name}={value}\n" for name, value in secrets.items()))
        env.chmod(0o600)
        self.secrets = dict(secrets)

    def media(self, name: str, data: bytes) -> Path:
        path = self.workspace.root / "media" / name
        path.write_bytes(data)
        return path

    def post(self, name: str, text: str) -> Path:
        return self.workspace.post(name, text)

    def run_once(self) -> subprocess.CompletedProcess[str]:
        env = siar_env()
        assert not set(self.secrets) & set(env), "the secrets must come from .env alone"
        result = run_siar(self.workspace.root, "run", "--once", env=env)
        self.stderr.append(result.stderr)
        return result

    def complaints(self) -> list[dict[str, Any]]:
        """The warning and error events of every run so far (stderr is JSON lines)."""
        events = [json.loads(line) for text in self.stderr for line in text.splitlines() if line.startswith("{")]
        return [e for e in events if e.get("level") in ("warning", "error", "critical")]

    # --- what the daemon recorded ---------------------------------------------------------------

    @property
    def db(self) -> Path:
        return self.workspace.state / "siar.db"

    def delivery(self, post_id: str) -> dict[str, Any]:
        rows = query(self.db, "SELECT * FROM delivery WHERE post_id = :p", p=post_id)
        assert len(rows) == 1, rows
        return dict(rows[0])

    def trail(self, delivery_id: int) -> list[dict[str, Any]]:
        rows = query(self.db, "SELECT * FROM audit_event WHERE delivery_id = :d ORDER BY seq", d=delivery_id)
        return [dict(row) for row in rows]

    def events(self, delivery_id: int) -> list[str]:
        return [row["event"] for row in self.trail(delivery_id)]

    def account(self, name: str) -> dict[str, Any]:
        (row,) = query(self.db, "SELECT * FROM account WHERE name = :n", n=name)
        return dict(row)

    def checkpoint(self, post_id: str) -> dict[str, Any]:
        saved = self.delivery(post_id)["checkpoint"]
        return json.loads(saved) if saved else {}

    def requests(self) -> list[tuple[str, str]]:
        """Every request the platform saw, as (method, path without query), in order."""
        return [(seen.method, seen.route) for seen in self.server.requests]

    # --- checks every test makes ----------------------------------------------------------------

    def assert_secrets_kept(self, *issued: str) -> None:
        """No configured secret, nor a token the platform issued, in stderr, audit rows or the DB files
        (as written, or percent-encoded as it would be in a stored URL)."""
        values = [*self.secrets.values(), *issued]
        secrets = sorted({form for value in values for form in (value, quote(value, safe=""))})
        assert secrets
        logs = "\n".join(self.stderr)
        audit = json.dumps([dict(r) for r in query(self.db, "SELECT * FROM audit_event")], default=str)
        files = sorted(self.workspace.state.glob("siar.db*"))
        assert files
        for secret in secrets:
            assert secret not in logs, f"a secret is in the daemon's stderr: {secret[:6]}…"
            assert secret not in audit, f"a secret is in the audit log: {secret[:6]}…"
            for path in files:
                assert secret.encode() not in path.read_bytes(), f"a secret is in {path.name}: {secret[:6]}…"


def ready_in(delivery: dict[str, Any]) -> float:
    """Seconds from the delivery's last update to its `ready_at` (the wait it was given)."""
    ready = utc(delivery["ready_at"])
    updated = utc(delivery["updated_at"])
    return (ready - updated).total_seconds()


def utc(value: Any) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


@pytest.fixture
def e2e(workspace: Workspace) -> Iterator[EndToEnd]:
    with FakeServer() as server:
        yield EndToEnd(workspace, server)


@pytest.fixture(autouse=True)
def _secrets_only_from_the_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("E2E_"):
            monkeypatch.delenv(name)
