"""Fixtures for every test: a configuration folder to write posts into, and clean global state."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from publisher.redact import REDACTOR

BASE_SETTINGS = """
[daemon]
timezone = "Asia/Jakarta"
concurrency = 4
max_lateness = "1h"
sync_every = "1s"
lease = "30s"
http_timeout = "5s"
shutdown_grace = "5s"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "4s"

[accounts.latihan]
platform = "outbox"

[accounts.arsip]
platform = "outbox"
"""


class Workspace:
    """A configuration folder in tmp_path: siar.toml, posts/, media/, state/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Set by the `siar_database` fixture: the PostgreSQL URL every command of the test uses.
        self.postgres: str | None = None
        (root / "posts").mkdir(parents=True, exist_ok=True)
        (root / "media").mkdir(exist_ok=True)
        self.write_settings(BASE_SETTINGS)

    def write_settings(self, text: str, *, extra: str = "") -> Path:
        path = self.root / "siar.toml"
        path.write_text(textwrap.dedent(text) + textwrap.dedent(extra))
        return path

    def add_settings(self, text: str) -> None:
        path = self.root / "siar.toml"
        path.write_text(path.read_text() + textwrap.dedent(text))

    def post(self, name: str, text: str) -> Path:
        path = self.root / "posts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        # Sync skips files whose size and mtime are unchanged: make every write visible.
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        return path

    def remove(self, name: str) -> None:
        (self.root / "posts" / name).unlink()

    def settings(self):  # noqa: ANN201 - imported lazily so collection works without the module
        from publisher.settings import load_settings

        return load_settings(self.root, environ=dict(os.environ))

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def database(self) -> Path | str:
        """What a test reads the daemon's database through (`process.query`): the SQLite file,
        or the PostgreSQL URL."""
        return self.postgres or self.state / "siar.db"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "config")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Loading settings in-process puts .env values into os.environ (as the daemon should); a
    # test must not hand them on to the next one's subprocesses, which would then ignore their
    # own .env ("the environment wins") and sign or mask with another test's secret.
    saved = dict(os.environ)
    for name in ("SIAR_CONFIG", "SIAR_DATABASE", "SIAR_STATE"):
        monkeypatch.delenv(name, raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)
    REDACTOR.clear()


POSTGRES_URL = os.environ.get("SIAR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """A fresh schema on the local PostgreSQL, as a URL whose search_path points at it; dropped after.

    Without a reachable server the test is skipped with the reason, except where
    SIAR_REQUIRE_POSTGRES=1 (CI), where it fails instead.
    """
    import uuid

    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_URL)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        admin.dispose()
        reason = f"PostgreSQL at {POSTGRES_URL} is not reachable ({type(exc).__name__})"
        if os.environ.get("SIAR_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " and SIAR_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    schema = f"siar_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the local PostgreSQL for this test (see `fresh_postgres_schema`)."""
    with fresh_postgres_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def siar_database(request: pytest.FixtureRequest, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """Subprocess-level tests on both backends, so the daemon and the commands cannot drift apart.

    "postgres": a fresh schema, which every `siar` started through `siar_env` gets as $SIAR_DATABASE,
    as does every in-process load of the workspace's settings; `workspace.database` names it for
    the test's own queries. "sqlite": the default, state/siar.db in the workspace.
    """
    if request.param == "postgres":
        from tests.support import process

        url = request.getfixturevalue("postgres_url")
        workspace.postgres = url
        monkeypatch.setenv("SIAR_DATABASE", url)
        monkeypatch.setattr(process, "DATABASE", url)
    return workspace


# For a test under `siar_database` that is about something the database backend cannot change:
# SQLite only (say why beside it).
sqlite_only = pytest.mark.parametrize("siar_database", ["sqlite"], indirect=True)
