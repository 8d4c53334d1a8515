"""Run `siar` as a real subprocess, the way systemd or an operator would, and watch its database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool


# Set (for one test) by the `siar_database` fixture: the PostgreSQL URL every `siar` it starts uses.
DATABASE: str | None = None


def siar_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIAR_")}
    if DATABASE is not None:
        env["SIAR_DATABASE"] = DATABASE
    env.update(extra)
    env["SIAR_LOG_FORMAT"] = "json"
    return env


def run_siar(config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "publisher", *args, "--config", str(config)],
        capture_output=True, text=True, env=env or siar_env(), timeout=timeout,
    )


class DaemonProcess:
    """`siar run` in the background; stderr (the JSON log) goes to a file the test can read."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None, *args: str) -> None:
        self.log_path = log
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "publisher", "run", "--config", str(config), *args],
            stdout=self._log, stderr=self._log, env=env or siar_env(),
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *_exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


def query(database: Path | str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows from the daemon's database — a SQLite file, or a URL (`workspace.database`) — none while
    the daemon has not created it yet. Times come back as SQLite gives raw SQL them, as text, on
    every backend, so a test reads them one way."""
    if isinstance(database, Path):
        if not database.exists():
            return []
        url = f"sqlite:///{database}"
    else:
        url = database
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(text(sql), params).mappings()
            return [{k: str(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in found]
    except OperationalError:  # SQLite: the schema is not migrated yet (or is being migrated)
        return []
    except ProgrammingError as exc:  # PostgreSQL: only "the table is not there yet" means none
        if getattr(exc.orig, "sqlstate", None) == "42P01":  # undefined_table
            return []
        raise
    finally:
        engine.dispose()


def execute(database: Path | str, sql: str, **params: Any) -> None:
    """One statement, committed: how a test changes the database behind the daemon's back."""
    engine = create_engine(f"sqlite:///{database}" if isinstance(database, Path) else database, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


def dump(database: Path | str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in a stable order: what is in the database, on either backend."""
    url = f"sqlite:///{database}" if isinstance(database, Path) else database
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = sorted(inspect(conn).get_table_names())
            return {t: [dict(r) for r in conn.execute(text(f'SELECT * FROM "{t}" ORDER BY 1')).mappings()]
                    for t in tables}
    finally:
        engine.dispose()


def wait_until(check: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
