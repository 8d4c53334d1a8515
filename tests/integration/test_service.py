"""Siar as a service: systemd's notify protocol and watchdog, SIGHUP reloads, Prometheus metrics,
and unit files that systemd accepts.

On SQLite only: what is tested here (notify socket, signals, metrics endpoint, unit files) sits
above the database; the daemon's work on PostgreSQL is tested in test_daemon_process.py,
test_cli.py and test_postgres_cluster.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.fakeserver import Answer, FakeServer
from tests.support.process import DaemonProcess, query, siar_env, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

SERVICE = """
[daemon]
timezone = "Asia/Jakarta"
sync_every = "1s"
lease = "5s"
http_timeout = "2s"

[retry]
attempts = 3
first_delay = "30s"
max_delay = "1m"
"""


class NotifySocket:
    """A Unix datagram socket standing in for systemd: records each message with its time."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="siar-", dir="/tmp")  # short: socket paths max 108 bytes
        self.path = f"{self.folder}/notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def times(self, prefix: str) -> list[float]:
        return [at for at, line in self.messages if line.startswith(prefix)]

    def lines(self, prefix: str) -> list[str]:
        return [line for _, line in self.messages if line.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def outbox_config(workspace) -> None:
    workspace.write_settings(SERVICE + '\n[accounts.latihan]\nplatform = "outbox"\n')
    workspace.post("a.toml", 'to = ["latihan"]\ntext = "Siaran"\n')


def test_the_daemon_says_ready_pings_the_watchdog_reports_status_and_says_stopping(workspace, tmp_path,
                                                                                  notify_socket):
    outbox_config(workspace)
    env = siar_env(NOTIFY_SOCKET=notify_socket.path, WATCHDOG_USEC="1500000")
    with DaemonProcess(workspace.root, tmp_path / "run.log", env) as daemon:
        wait_until(lambda: len(notify_socket.times("WATCHDOG=1")) >= 6, timeout=20, what="watchdog pings")
        wait_until(lambda: any("published 1" in s for s in notify_socket.lines("STATUS=")), timeout=15,
                   what="a STATUS line with the published count")
        assert daemon.terminate() == 0
    ready = notify_socket.times("READY=1")
    pings = notify_socket.times("WATCHDOG=1")
    assert len(ready) == 1 and ready[0] <= pings[1]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    # WATCHDOG_USEC is 1.5 s: pings come every third of it, always well inside the limit.
    assert max(gaps) < 1.5 and sorted(gaps)[len(gaps) // 2] == pytest.approx(0.5, abs=0.25)
    assert any("pending 0" in line and "published 1" in line for line in notify_socket.lines("STATUS="))
    assert notify_socket.lines("STOPPING=1")


def test_watchdog_pings_stop_when_the_dispatcher_hangs(workspace, tmp_path, notify_socket):
    outbox_config(workspace)
    env = siar_env(NOTIFY_SOCKET=notify_socket.path, WATCHDOG_USEC="1500000", SIAR_FAULTS="dispatch=hang@3")
    with DaemonProcess(workspace.root, tmp_path / "run.log", env) as daemon:
        wait_until(lambda: notify_socket.times("READY=1"), timeout=20, what="ready")
        started = notify_socket.times("READY=1")[0]
        time.sleep(14)
        logs = daemon.logs()
        daemon.kill()
    pings = notify_socket.times("WATCHDOG=1")
    assert pings and pings[0] - started < 2  # healthy at first
    assert pings[-1] - started < 11  # then silent: systemd would restart the service
    assert '"daemon.unhealthy"' in logs


def test_a_post_removed_while_no_daemon_ran_is_not_sent_though_ready_comes_before_the_first_sync(
    workspace, tmp_path, notify_socket
):
    # READY no longer waits for the first sync, but the first dispatch pass still does: a delivery
    # whose file went while no daemon ran is cancelled by that sync, never sent.
    outbox_config(workspace)
    workspace.post("b.toml", 'to = ["latihan"]\ntext = "Tetap"\n')
    from publisher.db import Database
    from publisher.sync import Syncer

    db = Database(workspace.settings().database)
    db.migrate()
    Syncer(db, workspace.settings()).run()
    db.dispose()
    workspace.remove("a.toml")
    env = siar_env(NOTIFY_SOCKET=notify_socket.path)
    with DaemonProcess(workspace.root, tmp_path / "run.log", env) as daemon:
        wait_until(lambda: query(workspace.state / "siar.db", "SELECT 1 FROM delivery WHERE state = 'published'"),
                   timeout=20, what="the remaining post published")
        assert daemon.terminate() == 0
    states = query(workspace.state / "siar.db", "SELECT post_id, state FROM delivery ORDER BY post_id")
    assert [(r["post_id"], r["state"]) for r in states] == [("a", "cancelled"), ("b", "published")]
    assert len(list((workspace.state / "outbox").rglob("*.json"))) == 1
    assert len(notify_socket.times("READY=1")) == 1


def test_sighup_applies_a_changed_account_and_keeps_the_old_configuration_when_the_new_one_is_broken(
    workspace, tmp_path
):
    with FakeServer() as server:
        server.route("POST", "/lama", Answer(200, {"id": "1"}))
        server.route("POST", "/baru", Answer(200, {"id": "2"}))
        settings = SERVICE + '\n[accounts.hook]\nplatform = "webhook"\nurl = "{url}"\n'
        workspace.write_settings(settings.format(url=f"{server.url}/lama"))
        workspace.post("satu.toml", 'to = ["hook"]\ntext = "Satu"\n')
        with DaemonProcess(workspace.root, tmp_path / "run.log") as daemon:
            assert server.wait_for(1, path="/lama")
            workspace.write_settings(settings.format(url=f"{server.url}/baru"))
            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: '"config.reloaded"' in daemon.logs(), timeout=10, what="reload")
            workspace.post("dua.toml", 'to = ["hook"]\ntext = "Dua"\n')
            assert server.wait_for(1, path="/baru")
            good = (workspace.root / "siar.toml").read_text()
            workspace.write_settings(good + "\n[daemon]\nwarna = 1\n")  # broken: a duplicate table
            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: '"config.reload_failed"' in daemon.logs(), timeout=10, what="refused reload")
            workspace.post("tiga.toml", 'to = ["hook"]\ntext = "Tiga"\n')
            assert server.wait_for(2, path="/baru")  # the configuration in force still sends
            assert daemon.terminate() == 0
        assert [r.json()["text"] for r in server.seen("POST", "/baru")] == ["Dua", "Tiga"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    values: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        if "{" in name_labels:
            name, raw = name_labels.split("{", 1)
            labels = frozenset(tuple(item.split("=", 1)) for item in raw.rstrip("}").split(",") if item)
            labels = frozenset((k, v.strip('"')) for k, v in labels)
        else:
            name, labels = name_labels, frozenset()
        values[(name, labels)] = float(value)
    return values


def test_metrics_served_after_a_run_match_the_database(workspace, tmp_path):
    port = free_port()
    with FakeServer() as server:
        server.route("POST", "/ok", Answer(200, {"id": "1"}))
        server.route("POST", "/tolak", Answer(422, {"error": "invalid"}))
        server.route("POST", "/sibuk", Answer(503, "busy"))
        accounts = "".join(f'\n[accounts.{name}]\nplatform = "webhook"\nurl = "{server.url}/{name}"\n'
                           for name in ("ok", "tolak", "sibuk"))
        workspace.write_settings(SERVICE.replace("[daemon]\n", f'[daemon]\nmetrics = "127.0.0.1:{port}"\n')
                                 + accounts)
        workspace.post("a.toml", 'to = ["ok"]\ntext = "A"\n')
        workspace.post("b.toml", 'to = ["ok"]\ntext = "B"\n')
        workspace.post("c.toml", 'to = ["tolak"]\ntext = "C"\n')
        workspace.post("d.toml", 'to = ["sibuk"]\ntext = "D"\n')
        workspace.post("e.toml", 'at = 2099-01-01T00:00:00\nto = ["ok"]\ntext = "E"\n')
        with DaemonProcess(workspace.root, tmp_path / "run.log") as daemon:
            db = workspace.state / "siar.db"
            wait_until(lambda: len(query(db, "SELECT id FROM delivery WHERE state IN "
                                             "('published', 'failed', 'retrying')")) == 4, timeout=20,
                       what="four settled")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                metrics = parse_metrics(answer.read().decode())
            assert daemon.terminate() == 0
    rows = query(db, "SELECT state, account, count(*) AS n FROM delivery GROUP BY state, account")
    for row in rows:
        key = ("siar_deliveries", frozenset({("state", row["state"]), ("account", row["account"])}))
        assert metrics[key] == row["n"]
    assert metrics[("siar_published_total", frozenset({("account", "ok"), ("platform", "webhook")}))] == 2
    assert metrics[("siar_retries_total", frozenset({("account", "sibuk"), ("platform", "webhook")}))] == 1
    assert metrics[("siar_adapter_errors_total",
                    frozenset({("platform", "webhook"), ("error_class", "Rejected")}))] == 1
    assert metrics[("siar_adapter_errors_total",
                    frozenset({("platform", "webhook"), ("error_class", "Transient")}))] == 1
    assert metrics[("siar_lateness_seconds_count", frozenset({("platform", "webhook")}))] == 2
    assert metrics[("siar_last_sync_timestamp_seconds", frozenset())] > time.time() - 60


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if shutil.which("apt-get") and Path("/usr/bin/dpkg").exists():
            subprocess.run(["apt-get", "install", "-y", "-q", "systemd"], capture_output=True, timeout=300)
            path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing and could not be installed")
        pytest.skip("systemd-analyze is not installed and cannot be installed here")
    return path


def test_the_unit_files_pass_systemd_analyze_verify(tmp_path):
    analyze = systemd_analyze()
    siar = shutil.which("siar") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "siar")
    for unit in ("siar.service", "siar-check.service", "siar-check.timer"):
        text = (ROOT / "systemd" / unit).read_text().replace("/usr/local/bin/siar", siar)
        (tmp_path / unit).write_text(text)
    result = subprocess.run([analyze, "verify", *(str(tmp_path / u) for u in
                                                  ("siar.service", "siar-check.service", "siar-check.timer"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if "siar" in line]
    assert problems == [], problems


def test_status_asks_for_a_person_when_no_daemon_has_synced_for_three_intervals(workspace):
    from sqlalchemy import create_engine, text

    from tests.support.process import run_siar

    outbox_config(workspace)
    assert run_siar(workspace.root, "run", "--once").returncode == 0
    fresh = run_siar(workspace.root, "status")
    assert fresh.returncode == 0, fresh.stdout
    engine = create_engine(f"sqlite:///{workspace.state / 'siar.db'}")
    with engine.begin() as conn:  # the last sync was five minutes ago: no daemon is keeping up
        conn.execute(text("UPDATE daemon SET last_sync_at = datetime('now', '-5 minutes')"))
    engine.dispose()
    stale = run_siar(workspace.root, "status")
    assert stale.returncode == 1
    assert "No daemon has synced the posts folder for over 0:01:00" in stale.stdout
