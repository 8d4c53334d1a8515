"""Helpers for driving `siar` commands from tests: several at once, settling a workspace in-process,
and reading the database a command left behind."""

from __future__ import annotations

import getpass
import json
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.support.process import query, run_siar, siar_env


def run_all(config: Path, commands: Sequence[Sequence[str]], env: dict[str, str] | None = None,
            workers: int = 4) -> list[subprocess.CompletedProcess[str]]:
    """Run read-only commands side by side (each is a separate process start, ~1 s of imports)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda args: run_siar(config, *args, env=env or siar_env()), commands))


def settle(workspace: Any) -> None:
    """What `siar run --once` does, in-process: sync, send what is due through the real adapters."""
    from publisher.daemon import Daemon

    Daemon(workspace.settings()).run_once()


def rows(workspace: Any, sql: str, **params: Any) -> list[Any]:
    return query(workspace.database, sql, **params)


def delivery(workspace: Any, post_id: str, account: str | None = None) -> Any:
    sql = "SELECT * FROM delivery WHERE post_id = :p" + (" AND account = :a" if account else "")
    found = rows(workspace, sql, p=post_id, a=account)
    assert len(found) == 1, found
    return found[0]


def events(workspace: Any, **where: Any) -> list[Any]:
    clause = " AND ".join(f"{k} = :{k}" for k in where) or "1 = 1"
    return rows(workspace, f"SELECT * FROM audit_event WHERE {clause} ORDER BY seq", **where)


def parsed(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def os_user() -> str:
    return getpass.getuser()
