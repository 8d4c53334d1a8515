"""What every scenario shares: sizes and overrides, the platform process, the daemon process,
/proc readings, the workload files, and the result record."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The tree the daemon runs from: this checkout, or another one (to measure a proposed change
# without touching this tree): SIAR_BENCH_SOURCE=/path/to/a/copy python -m bench ...
SOURCE = Path(os.environ.get("SIAR_BENCH_SOURCE") or ROOT).resolve()
RESULTS = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_STDERR_NOISE = re.compile(r'\(.*?\)|"[^"]*"|[\d:.-]+')  # times, counts, quoted job names
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- options ------------------------------------------------------------------------------------


@dataclass
class Options:
    quick: bool = False
    overrides: dict[str, str] = field(default_factory=dict)  # "scenario.param" -> text
    keep: bool = False  # keep the work folders
    profile: bool = False  # run daemons under the all-threads cProfile wrapper, in-process work under cProfile
    workdir: Path | None = None
    quiet_wait_s: float = 0.0  # before each scenario, wait up to this long for the machine to calm down


def params(opts: Options, scenario: str, full: dict[str, Any], quick: dict[str, Any]) -> dict[str, Any]:
    """The scenario's sizes: full or quick, then `--set scenario.name=value`, then
    `SIAR_BENCH_<SCENARIO>_<NAME>` from the environment (each converted to the default's type)."""
    chosen = dict(full)
    if opts.quick:
        chosen.update(quick)
    for name, default in list(chosen.items()):
        text = os.environ.get(f"SIAR_BENCH_{scenario.upper()}_{name.upper()}")
        text = opts.overrides.get(f"{scenario}.{name}", text)
        if text is not None:
            chosen[name] = _convert(text, default)
    unknown = [k for k in opts.overrides if k.split(".", 1)[0] == scenario and k.split(".", 1)[1] not in chosen]
    if unknown:
        raise SystemExit(f"unknown parameter(s) {unknown}; {scenario} takes {sorted(chosen)}")
    return chosen


def _convert(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(float(text))
    if isinstance(default, float):
        return float(text)
    return text


# --- figures ------------------------------------------------------------------------------------


def wait_quiet(max_wait_s: float) -> float:
    """Wait (bounded) until the 1-minute load average is under half the cores; returns it.
    Figures from a machine busy with other work say little, so each record carries the load."""
    limit = (os.cpu_count() or 1) * 0.5
    deadline = time.time() + max_wait_s
    while os.getloadavg()[0] > limit and time.time() < deadline:
        time.sleep(2)
    return round(os.getloadavg()[0], 2)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def work_dir(opts: Options, name: str) -> Path:
    base = opts.workdir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"siar-bench-{name}-", dir=base))


def cleanup(opts: Options, path: Path) -> None:
    if not opts.keep:
        shutil.rmtree(path, ignore_errors=True)


# --- /proc --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, every core, from /proc/stat:
    busy = user + nice + system + irq + softirq + steal; all adds idle and iowait. The
    difference of two readings says how busy the machine was in between, whoever was busy."""
    with open("/proc/stat") as handle:
        values = [int(x) for x in handle.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) from /proc/<pid>/status, in MB (10^6 bytes)."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0]) * 1024 / 1e6
    return {"rss_mb": round(out.get("VmRSS", 0.0), 1), "peak_rss_mb": round(out.get("VmHWM", 0.0), 1)}


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


# --- the stand-in platform ----------------------------------------------------------------------


class Platform:
    """`bench.platform` in its own process on 127.0.0.1."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.platform", "--latency", str(latency)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"bench.platform did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._get("/_stats")

    def arrivals(self) -> list[list[Any]]:
        return self._get("/_arrivals")

    def reset(self) -> None:
        self._get("/_reset")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def wait_count(self, count: int, timeout: float, interval: float = 0.05) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.stats()["count"] >= count:
                return True
            time.sleep(interval)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()


# --- the daemon ---------------------------------------------------------------------------------


def siar_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIAR_")}
    env.update(extra)
    env["SIAR_LOG_FORMAT"] = "json"
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(SOURCE), str(ROOT)]))
    return env


def siar_once(config: Path, env: dict[str, str], timeout: float = 1800) -> float:
    """`siar run --once` (sync, send what is due now, exit); returns its wall time."""
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "publisher", "run", "--once", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=SOURCE,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"siar run --once failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.time() - started


class DaemonProcess:
    """`python -m publisher run --config DIR` in the background; its JSON log goes to a file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str], profile_to: Path | None = None) -> None:
        self.log_path = log
        self._log = open(log, "ab")
        if profile_to is None:
            argv = [sys.executable, "-m", "publisher", "run", "--config", str(config)]
        else:
            argv = [sys.executable, "-m", "bench.profiled", str(profile_to), "run", "--config", str(config)]
        self.started = time.time()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=self._log, env=env, cwd=SOURCE)
        self.ready_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 600) -> float:
        """Seconds from spawning to the `daemon.ready` log event (its own timestamp)."""
        self.ready_at = self.wait_event("daemon.ready", timeout)
        return self.ready_at - self.started

    def wait_event(self, name: str, timeout: float = 600) -> float:
        """The timestamp of the first log event called `name` (waiting for it to be written)."""
        deadline = time.time() + timeout
        offset = 0
        needle = f'"{name}"'.encode()
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.tail()}")
            with open(self.log_path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            cut = chunk.rfind(b"\n") + 1
            offset += cut
            for line in chunk[:cut].splitlines():
                if needle in line:
                    event = json.loads(line)
                    if event.get("event") == name:
                        return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
            time.sleep(0.005)
        raise RuntimeError(f"no {name} within {timeout}s: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def problems(self) -> dict[str, int]:
        """Warning-or-worse log events by name (a benchmark that hides errors is no benchmark)."""
        counts: Counter[str] = Counter()
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                if line.strip():  # stdlib logging (APScheduler, SQLAlchemy pool, …): group by its words
                    counts["stderr: " + _STDERR_NOISE.sub("…", line.strip())[:100]] += 1
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("level") in ("warning", "error", "critical"):
                counts[str(event.get("event"))] += 1
        return dict(counts)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *_exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


# --- workload files -----------------------------------------------------------------------------


def account_names(count: int) -> list[str]:
    width = max(3, len(str(count - 1)))
    return [f"a{i:0{width}d}" for i in range(count)]


def write_config(
    folder: Path, *, accounts: Iterable[str], platform_url: str | None, concurrency: int = 16,
    sync_every: str | None = None, database: str | None = None, extra_daemon: str = "",
) -> None:
    """siar.toml with one webhook account per name (or outbox accounts when no platform)."""
    (folder / "posts").mkdir(parents=True, exist_ok=True)
    (folder / "media").mkdir(exist_ok=True)
    lines = ["[daemon]", 'timezone = "UTC"', f"concurrency = {concurrency}"]
    if sync_every:
        lines.append(f'sync_every = "{sync_every}"')
    if database:
        lines.append(f'database = "{database}"')
    if extra_daemon:
        lines.append(extra_daemon.strip())
    lines.append("")
    for name in accounts:
        lines.append(f"[accounts.{name}]")
        if platform_url is None:
            lines.append('platform = "outbox"')
        else:
            lines.append('platform = "webhook"')
            lines.append(f'url = "{platform_url}/hook/{name}"')
        lines.append("")
    (folder / "siar.toml").write_text("\n".join(lines))


def toml_time(moment: datetime) -> str:
    """A TOML offset date-time in UTC with microseconds."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_post(folder: Path, name: str, *, to: Sequence[str], text: str, at: datetime | None) -> Path:
    path = folder / "posts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    targets = ", ".join(f'"{a}"' for a in to)
    body = (f"at = {toml_time(at)}\n" if at else "") + f"to = [{targets}]\ntext = \"{text}\"\n"
    path.write_text(body)
    return path


def write_burst_posts(folder: Path, accounts: Sequence[str], per_account: int, at: datetime | None = None) -> int:
    """`per_account` posts under folder/posts/burst/, each to every account (no `at`: as soon as
    possible): len(accounts) × per_account deliveries."""
    for i in range(per_account):
        write_post(folder, f"burst/p{i:05d}.toml", to=accounts, text=f"Siaran serentak nomor {i}", at=at)
    return len(accounts) * per_account


# --- the database, seen from outside ------------------------------------------------------------


def sqlite_url(config: Path) -> str:
    return f"sqlite:///{config / 'state' / 'siar.db'}"


def db_summary(url: str) -> dict[str, Any]:
    """States, the last publish time, audit events per kind, and claim transactions."""
    from sqlalchemy import distinct, func, select

    from publisher.audit import EVENTS
    from publisher.db import Database
    from publisher.store import D

    db = Database(url, pool_size=1)
    try:
        with db.read() as conn:
            states = dict(conn.execute(select(D.c.state, func.count()).group_by(D.c.state)).all())
            last = conn.execute(select(func.max(D.c.published_at))).scalar()
            first = conn.execute(select(func.min(D.c.published_at))).scalar()
            events = dict(conn.execute(select(EVENTS.c.event, func.count()).group_by(EVENTS.c.event)).all())
            # claim_batch stamps every row of one claim with the same `now`: one time = one claim commit
            claims = conn.execute(
                select(func.count(distinct(EVENTS.c.at))).where(EVENTS.c.event == "claimed")
            ).scalar()
        return {"states": states, "first_published": first, "last_published": last, "audit_events": events,
                "claim_transactions": int(claims or 0)}
    finally:
        db.dispose()


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


class Monitor:
    """One connection, opened before the daemons start and held, to watch the database while
    they work: a daemon that takes every free PostgreSQL slot must not blind the benchmark."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import StaticPool

        self.postgres = url.startswith("postgresql")
        self.engine = create_engine(url, poolclass=StaticPool)
        self.conn = self.engine.connect()
        self.errors = 0

    def _scalar(self, sql: str) -> int | None:
        from sqlalchemy import text

        try:
            value = self.conn.execute(text(sql)).scalar()
            self.conn.rollback()
            return int(value or 0)
        except Exception:  # noqa: BLE001 - a busy or failing database: count it, keep watching
            self.errors += 1
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001
                pass
            return None

    def published(self) -> int:
        return self._scalar("SELECT count(*) FROM delivery WHERE state = 'published'") or 0

    def connections(self) -> int | None:
        if not self.postgres:
            return None
        return self._scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self.engine.dispose()


# --- the record ---------------------------------------------------------------------------------


def run_reference(url: str, db: Path, *, n: int, claims: int, accounts: int, env: dict[str, str],
                  session: str = "requests", fsync: bool = True) -> dict[str, Any]:
    """One run of `bench.reference` (in its own process) against the platform at `url`."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.reference", "--url", url, "--db", str(db), "--n", str(n),
         "--claims", str(claims), "--accounts", str(accounts), "--session", session,
         *([] if fsync else ["--no-fsync"])],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.reference failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
        dirty = subprocess.run(["git", "status", "--porcelain", "publisher", "adapters"], capture_output=True,
                               text=True, cwd=ROOT).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except OSError:
        return None


def record(scenario: str, opts: Options, p: dict[str, Any], figures: dict[str, Any], target: dict[str, Any],
           **extra: Any) -> dict[str, Any]:
    """One scenario's JSON object: figures, cores, the issue's target (and whether this run met
    it: information, never a failure), and where one applies the limit measured in the same run."""
    return {
        "scenario": scenario,
        "figures": figures,
        "cores": os.cpu_count(),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "target": target,
        **extra,
        "params": p,
        "quick": opts.quick,
    }
