"""Without a reachable PostgreSQL its tests skip with the reason, unless SIAR_REQUIRE_POSTGRES=1
(`.ci/run`), where they fail loudly: CI must never pass by skipping them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


def run_a_postgres_test(required: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SIAR_REQUIRE_POSTGRES", "PYTEST_XDIST_WORKER")}
    env["SIAR_TEST_POSTGRES"] = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    if required:
        env["SIAR_REQUIRE_POSTGRES"] = "1"
    test = "tests/integration/test_postgres_cluster.py::test_two_daemons_starting_together_on_an_empty_database_migrate_it_once"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_without_postgres_its_tests_skip_and_say_why():
    result = run_a_postgres_test(required=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "is not reachable" in result.stdout


def test_with_siar_require_postgres_they_fail_instead():
    result = run_a_postgres_test(required=True)
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout or "1 error" in result.stdout
    assert "SIAR_REQUIRE_POSTGRES=1" in result.stdout
