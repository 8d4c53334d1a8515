"""Run `siar` as a real subprocess, the way systemd or an operator would, and watch its database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError


def siar_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIAR_")}
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


def query(db_path: Path, sql: str, **params: Any) -> list[Any]:
    """Rows from the daemon's SQLite database; none while the daemon has not created it yet."""
    if not db_path.exists():
        return []
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).mappings())
    except OperationalError:  # the schema is not migrated yet
        return []
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
