"""The daemon: APScheduler 3 drives sync, dispatch, lease reaping and renewal; SIGTERM stops it.

Dispatch is not polled once a minute: after every pass the dispatch job is rescheduled for the
moment the next delivery becomes ready, and a finished send wakes it at once.

Sync is not a walk of the posts folder every `sync_every` either, where the kernel can say what
changed: on Linux the folder is watched with inotify (publisher/watch.py); a change is synced
about a quarter of a second after it stops, and a tick in which nothing changed reads no file
(10,000 `stat`s were most of an idle daemon's CPU). A full walk still runs every FULL_WALK_EVERY,
for what inotify cannot see. Where the folder cannot be watched, every tick walks, as before.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from adapters.outbox import OutboxAdapter
from publisher import faults, logs
from publisher.db import Database, fault_name
from publisher.dispatch import CountingSession, Dispatcher, Outcome
from publisher.models import Daemon as DaemonRow
from publisher.models import Delivery
from publisher.models import utcnow
from publisher.notify import Notifier
from publisher.problems import ConfigInvalid
from publisher.settings import AccountSettings, Settings, load_settings
from publisher.states import State
from publisher.sync import Report, Syncer
from publisher.watch import FolderWatch

if TYPE_CHECKING:
    from publisher.metrics import Metrics

log = logs.get("siar.daemon")

DISPATCH_FALLBACK = timedelta(seconds=2)  # a safety net; normal wake-ups are exact
REAP_EVERY = timedelta(seconds=5)
SEEN_EVERY = timedelta(seconds=5)
SYNC_RECORD_EVERY = timedelta(seconds=20)
STATUS_EVERY = timedelta(minutes=1)  # the STATUS= counts at least this often, changed or not
# While the posts folder is watched, a sync tick walks it only when the watch saw a change, and
# at least this often whatever it saw (or every `sync_every`, if that is longer): inotify does not
# see a file changed on another NFS client, or the target of a symlinked post file outside the
# folder. Five minutes (30 default ticks) bounds how late such a change is found, at about 0.03 %
# of a core for 10,000 files (one walk, ~85 ms, per 300 s) instead of about 0.9 %.
FULL_WALK_EVERY = timedelta(minutes=5)
# A change is synced once the folder has been quiet this long (a `git pull` of 500 files, an
# editor's several writes: one or two syncs, not 500), and at the latest WATCH_MAX_DELAY after it.
WATCH_DEBOUNCE = 0.25
WATCH_MAX_DELAY = 2.0
# A sync pass that the watch reports a change during runs again at once, up to this many passes
# in a row; what is still changing after that is synced by the next tick.
SYNC_AGAIN_MAX = 3
# The first sync runs after READY (a restart with 10,000 post files is ready in about a second);
# until it is done the watchdog is fed for this long, the bound systemd's TimeoutStartSec= (90 s
# by default) put on it when it ran before READY.
FIRST_PASS_GRACE = timedelta(seconds=90)
DAEMONS = DaemonRow.__table__
D = Delivery.__table__


def _failed(event: str, exc: Exception, *, trace: bool = True) -> None:
    """A job failed: say so. A database fault gets its stable name (`fault`: database_full,
    database_readonly, database_locked, database_disconnected, …) instead of a traceback."""
    fault = fault_name(exc)
    extra: dict[str, Any] = {"fault": fault} if fault else ({"exc_info": exc} if trace else {})
    log.error(event, error=f"{type(exc).__name__}: {exc}", **extra)


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def dry_run_settings(settings: Settings) -> Settings:
    """`--dry-run`: a throwaway database and outbox under state/dry-run; the real state is untouched."""
    folder = settings.state_dir / "dry-run"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return dataclasses.replace(settings, database=f"sqlite:///{folder / 'siar.db'}")


class Daemon:
    def __init__(self, settings: Settings, *, dry_run: bool = False, notifier: Notifier | None = None,
                 metrics_address: str | None = None) -> None:
        self.dry_run = dry_run
        self.notifier = notifier or Notifier()
        self.settings = dry_run_settings(settings) if dry_run else settings
        # Workers wait briefly for a connection rather than each holding one (on PostgreSQL at
        # most POSTGRES_POOL_SIZE: see db.py).
        self.db = Database(self.settings.database, pool_size=min(self.settings.concurrency + 4, 10))
        self.syncer = Syncer(self.db, self.settings)
        self.dispatcher = Dispatcher(
            self.db, self.settings, on_settled=self.syncer.on_settled,
            adapter_override=self._dry_run_adapter if dry_run else None,
        )
        self.dispatcher.on_free = self.kick
        self.scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.stop_requested = threading.Event()
        self.ready_hooks: list[Callable[[], None]] = []  # systemd READY=1 and the like
        self.tick_hooks: list[Callable[[], None]] = []  # watchdog pings
        self.last_sync: Report | None = None
        self._sync_recorded: datetime | None = None  # when last_sync_at was last written
        # The posts folder's watch (None: not made yet). Only the sync job (and the first pass,
        # before that job exists) makes, replaces and asks it; shutdown closes it.
        self.watch: FolderWatch | None = None
        self._watch_mode: tuple[str, str | None] | None = None  # what `sync.watching` last said
        self._watch_retry_at = 0.0  # monotonic: when a watch that could not start is tried again
        self._rewatch = False  # SIGHUP: make a new watch (the posts folder may have moved)
        # A full walk is owed (none has succeeded since start, a change, a refused or failed pass);
        # _walked_at: monotonic time of the last successful one.
        self._walk_owed = True
        self._walked_at = 0.0
        self._sync_lock = threading.Lock()
        self._syncing = False  # the sync job is running
        self._sync_again = False  # the watch saw a change while it ran
        self._kick_lock = threading.Lock()
        self._dispatching = False
        self._again = False
        self._kicked = False  # a pass is scheduled for "now" and has not started yet
        # When the dispatch job last finished a pass: the watchdog pings only while this is fresh.
        self.last_dispatch = time.monotonic()
        self._starting: float | None = None  # monotonic time of READY, until the first dispatch pass
        # What the last STATUS= line counted from (see _status_counts); the first tick counts.
        self._status_stale, self._status_busy, self._status_at = True, 0, 0.0
        self.dispatcher.observers.append(self.status_changed)
        self._reload_requested = threading.Event()
        self.metrics_address = metrics_address or self.settings.metrics
        self.metrics: Metrics | None = None
        self._metrics_server: Any = None
        if self.metrics_address:
            from publisher.metrics import Metrics  # prometheus_client only when metrics are served

            self.metrics = Metrics(self.db)
            self.dispatcher.observers.append(self.metrics.observe)

    # --- jobs ---------------------------------------------------------------------------------

    def sync(self, *, walk: bool = True) -> Report:
        """One sync pass. `walk=False`: the watch saw no change since the last full walk, so the
        files are not read again (see _unchanged_pass); a full walk runs instead when that is
        not possible."""
        try:
            report = None if walk else self._unchanged_pass()
            if report is None:
                report = self._walk()
        except Exception as exc:
            _failed("sync.failed", exc)
            raise
        self.last_sync = report
        if report.skipped:  # another daemon holds the sync lock and syncs for everyone
            return report
        if self.metrics is not None and report.error is None:
            self.metrics.synced()
        now = utcnow()
        # An idle daemon's unchanged passes need not each cost a durable write: `siar status`
        # calls a sync late only after a minute or more, so recording one every SYNC_RECORD_EVERY does.
        if report.changed or self._sync_recorded is None or now - self._sync_recorded >= SYNC_RECORD_EVERY:
            with self.db.write() as conn:
                conn.execute(update(DAEMONS).where(DAEMONS.c.owner == self.dispatcher.owner)
                             .values(last_sync_at=now, seen_at=now))
            self._sync_recorded = now
        if report.changed:
            self.status_changed()
            self.kick()
        return report

    def _walk(self) -> Report:
        """A full pass: every file's size and mtime, parsing what changed."""
        if self.watch is not None:
            self.watch.take()  # before the walk: a change during it is reported for the next pass
        self._walk_owed = False
        try:
            report = self.syncer.run()
        except Exception:
            self._walk_owed = True
            raise
        if report.skipped or report.error is not None:
            # Another daemon syncs (and this one may sync next, its view of the files being old),
            # or the folder was refused: the next pass walks again.
            self._walk_owed = True
        else:
            self._walked_at = time.monotonic()
        return report

    def _unchanged_pass(self) -> Report | None:
        """The watch saw nothing since the last full walk: `Syncer.run_unchanged` (no file read).
        None when the syncer cannot vouch for its last pass; then a full walk runs."""
        report = self.syncer.run_unchanged()
        if report is not None and report.skipped:
            self._walk_owed = True  # on PostgreSQL another daemon syncs; this one walks if it takes over
        return report

    def _needs_walk(self) -> bool:
        watch = self.watch
        if watch is None or not watch.active:
            return True  # not watched: every tick walks, as it always has
        if watch.take():
            self._walk_owed = True  # kept until a walk succeeds
        return self._walk_owed or time.monotonic() - self._walked_at >= self._full_walk_every().total_seconds()

    def _full_walk_every(self) -> timedelta:
        return max(self.settings.sync_every, FULL_WALK_EVERY)

    def _sync_job(self) -> None:
        with self._sync_lock:
            self._syncing, self._sync_again = True, False
        try:
            for _ in range(SYNC_AGAIN_MAX):
                self._ensure_watch()
                try:
                    self.sync(walk=self._needs_walk())
                except Exception:
                    pass  # logged in sync(); the next interval tries again
                with self._sync_lock:
                    if not self._sync_again or self.stop_requested.is_set():
                        return
                    self._sync_again = False
        finally:
            with self._sync_lock:
                self._syncing = False

    def sync_soon(self) -> None:
        """Sync now (the watch saw a change, the configuration was reloaded). Called from other
        threads; while the sync job runs, it makes one more pass instead."""
        with self._sync_lock:
            if self._syncing:
                self._sync_again = True
                return
        if self.stop_requested.is_set():
            return
        try:
            self.scheduler.modify_job("sync", next_run_time=utcnow())
        except Exception:  # before the first pass added the job (it syncs anyway), or shutting down
            pass

    # --- watching the posts folder ------------------------------------------------------------

    def _ensure_watch(self) -> None:
        """Watch the posts folder, or say why it is walked every tick instead. A watch that broke
        (the folder moved, was removed or replaced) or could not start because the folder did not
        exist yet is tried again at every pass; one that hit a limit, after FULL_WALK_EVERY; one
        where inotify cannot work at all, not until the configuration is reloaded."""
        try:
            self._watch_posts()
        except Exception as exc:  # a watch is an optimisation: whatever goes wrong, walk as before
            _failed("sync.watch_failed", exc)
            broken, self.watch = self.watch, None
            self._watch_retry_at = time.monotonic() + self._full_walk_every().total_seconds()
            if broken is not None:
                broken.close()

    def _watch_posts(self) -> None:
        if self.watch is None and not self._rewatch and time.monotonic() < self._watch_retry_at:
            return  # making one failed unexpectedly (sync.watch_failed): walking until it is time
        folder = self.settings.posts_dir
        watch = self.watch
        if watch is not None and watch.folder == folder and not self._rewatch:
            if watch.active:
                return
            if watch.retry is None or time.monotonic() < self._watch_retry_at:
                self._say_mode("polling", watch.reason)
                return
        self._rewatch = False
        if watch is not None:
            watch.close()
        watch = FolderWatch(folder, self.sync_soon, debounce=WATCH_DEBOUNCE, max_delay=WATCH_MAX_DELAY,
                            retry_later=self._full_walk_every().total_seconds())
        self.watch = watch
        self._walk_owed = True  # whatever happened while it was not watched
        if watch.start():
            self._say_mode("inotify", None, watches=watch.watches)
        else:
            self._watch_retry_at = time.monotonic() + (watch.retry or 0.0)
            self._say_mode("polling", watch.reason)

    def _say_mode(self, mode: str, reason: str | None, **extra: Any) -> None:
        """`sync.watching`, once per change of mode (or of the reason for polling)."""
        if self._watch_mode == (mode, reason):
            return
        self._watch_mode = (mode, reason)
        if mode == "inotify":
            log.info("sync.watching", mode=mode, folder=str(self.settings.posts_dir),
                     full_walk_every_s=self._full_walk_every().total_seconds(), **extra)
        else:
            log.info("sync.watching", mode=mode, folder=str(self.settings.posts_dir), reason=reason,
                     every_s=self.settings.sync_every.total_seconds())

    def kick(self) -> None:
        """Dispatch again as soon as possible (a send finished, a sync changed something).

        Kicks coalesce: while a dispatch pass is due or running, another kick only notes that one
        more pass is wanted (under a burst, dozens of sends finish between two passes)."""
        with self._kick_lock:
            if self._dispatching:
                self._again = True
                return
            if self._kicked:
                return
            self._kicked = True
            self._schedule_dispatch(utcnow())

    def _schedule_dispatch(self, when: datetime) -> None:
        if self.stop_requested.is_set():
            return
        try:
            self.scheduler.modify_job("dispatch", next_run_time=when)
        except Exception:  # the scheduler is shutting down
            pass

    def _dispatch_job(self) -> None:
        faults.point("dispatch")
        with self._kick_lock:
            self._dispatching = True
            self._again = False
            self._kicked = False
        try:
            self.dispatcher.dispatch()
        except Exception as exc:
            _failed("dispatch.failed", exc)
        now = utcnow()
        when = now + DISPATCH_FALLBACK
        try:
            # Already kicked again (a send ended during the pass): the next pass is now anyway.
            wake = None if self._again else self.dispatcher.next_wake()
        except Exception as exc:
            _failed("dispatch.failed", exc, trace=False)
            wake = None
        if wake is not None and wake < when:
            when = wake
        self.last_dispatch = time.monotonic()
        # Scheduled under the kick lock: a kick arriving meanwhile is either seen here (`_again`)
        # or schedules its own pass after this one, never overwritten by this later time.
        with self._kick_lock:
            if self._again:
                when = now
            self._dispatching = False
            self._schedule_dispatch(when)

    def _first_pass(self) -> None:
        """After READY: sync, reap leases left by a daemon that died, then start dispatching — the
        order a start has always had, so a post file changed or removed while no daemon ran is
        read before anything is sent. A sync or reap that fails is logged; its job tries again.
        The watch starts first, so nothing that changes from the first walk on goes unseen."""
        with self._sync_lock:
            self._syncing, self._sync_again = True, False  # a change seen meanwhile: synced below
        try:
            self._ensure_watch()
            self.sync()
        except Exception:
            pass  # logged in sync()
        with self._sync_lock:
            self._syncing, again = False, self._sync_again
        try:
            self.dispatcher.reap()
        except Exception as exc:
            _failed("reap.failed", exc)
        if self.stop_requested.is_set():
            return
        now = utcnow()
        self.scheduler.add_job(self._sync_job, "interval", id="sync",
                               seconds=self.settings.sync_every.total_seconds(),
                               next_run_time=now if again else now + self.settings.sync_every)
        self.last_dispatch = time.monotonic()
        log.info("daemon.dispatching", seconds_after_ready=round(self.last_dispatch - (self._starting or 0.0), 3))
        self._starting = None
        self.scheduler.add_job(self._dispatch_job, "interval", id="dispatch",
                               seconds=DISPATCH_FALLBACK.total_seconds(), next_run_time=now)

    def _reap_job(self) -> None:
        try:
            if self.dispatcher.reap():
                self.status_changed()
                self.kick()
        except Exception as exc:
            _failed("reap.failed", exc)

    def _renew_job(self) -> None:
        try:
            self.dispatcher.renew_leases()
        except Exception as exc:
            _failed("lease.renew_failed", exc, trace=False)

    def _seen_job(self) -> None:
        try:
            with self.db.write() as conn:
                conn.execute(update(DAEMONS).where(DAEMONS.c.owner == self.dispatcher.owner).values(seen_at=utcnow()))
                counts = self._status_counts(conn)
        except Exception as exc:
            _failed("daemon.heartbeat_failed", exc, trace=False)
            return
        if counts is not None:
            self.notifier.status(", ".join(f"{state} {counts.get(state, 0)}" for state in STATUS_STATES))
        for hook in self.tick_hooks:
            hook()

    def status_changed(self, *_event: Any) -> None:
        """Something this daemon did may have changed the counts: the next STATUS= line counts again."""
        self._status_stale = True

    def _status_counts(self, conn: Any) -> dict[str, int] | None:
        """Deliveries per state for systemd's STATUS= line, or None when there is no line to send.
        Counting reads every delivery row (about 1 ms per 10,000 on SQLite, 100 ms at a million), so
        outside systemd it is skipped, and under it done only when this daemon changed something
        (a recorded transition, a send started or ended, a sync or reap that changed rows) or
        STATUS_EVERY has passed (for what other daemons and `siar` commands changed)."""
        if not self.notifier.enabled:
            return None
        busy, now = self.dispatcher.busy, time.monotonic()
        fresh = now - self._status_at < STATUS_EVERY.total_seconds()
        if fresh and not self._status_stale and busy == self._status_busy:
            return None
        # Cleared before counting: a change recorded while the query runs is counted next time.
        self._status_stale, self._status_busy, self._status_at = False, busy, now
        return dict(conn.execute(select(D.c.state, func.count()).group_by(D.c.state)).all())

    def healthy(self) -> bool:
        """Dispatch has finished a pass lately (it runs at least every DISPATCH_FALLBACK); until its
        first pass, the first sync has FIRST_PASS_GRACE."""
        starting = self._starting
        if starting is not None:
            return time.monotonic() - starting < FIRST_PASS_GRACE.total_seconds()
        return time.monotonic() - self.last_dispatch < 3 * DISPATCH_FALLBACK.total_seconds()

    def _watchdog_job(self) -> None:
        # Pinging from the scheduler thread, and only while dispatch is healthy, means a stuck
        # scheduler or a stuck dispatcher both stop the pings and systemd restarts the service.
        if self.healthy():
            self.notifier.ping()
        else:
            log.error("daemon.unhealthy", note="dispatch has not finished a pass; watchdog pings withheld",
                      seconds_since=round(time.monotonic() - self.last_dispatch, 1))

    # --- reloading ----------------------------------------------------------------------------

    def reload(self) -> bool:
        """SIGHUP: read siar.toml and .env again; a broken configuration leaves the old in force."""
        try:
            fresh = load_settings(self.settings.config_dir)
        except ConfigInvalid as exc:
            for problem in exc.problems:
                log.error("config.reload_invalid", problem=str(problem))
            log.error("config.reload_failed", note="the configuration in force is kept")
            return False
        if self.dry_run:
            fresh = dataclasses.replace(fresh, database=self.settings.database)
        for field in ("database", "concurrency"):
            if getattr(fresh, field) != getattr(self.settings, field):
                log.warning("config.reload_needs_restart", field=field)
                fresh = dataclasses.replace(fresh, **{field: getattr(self.settings, field)})
        self.settings = fresh
        self.syncer.reload(fresh)
        self.dispatcher.reload(fresh)
        # The posts folder may be another one now: the next pass watches it afresh and walks it.
        self._rewatch = True
        self._walk_owed = True
        try:
            self.scheduler.reschedule_job("sync", trigger="interval", seconds=fresh.sync_every.total_seconds())
        except Exception:
            pass
        log.info("config.reloaded", accounts=len(fresh.accounts))
        self.sync_soon()  # every file is parsed again with the new settings: now, not at the next tick
        self.kick()
        return True

    def _dry_run_adapter(self, account: AccountSettings) -> OutboxAdapter:
        folder = self.settings.state_dir / "dry-run" / "outbox" / account.name
        return OutboxAdapter({"name": account.name, "folder": str(folder)}, CountingSession())

    # --- life cycle ---------------------------------------------------------------------------

    def _register(self) -> None:
        now = utcnow()
        with self.db.write() as conn:
            conn.execute(insert(DAEMONS).values(owner=self.dispatcher.owner, host=socket.gethostname(),
                                                pid=os.getpid(), started_at=now, seen_at=now))

    def _unregister(self) -> None:
        try:
            with self.db.write() as conn:
                conn.execute(update(DAEMONS).where(DAEMONS.c.owner == self.dispatcher.owner)
                             .values(stopped_at=utcnow(), seen_at=utcnow()))
        except Exception as exc:
            log.error("daemon.unregister_failed", error=str(exc))

    def prepare(self, *, wait_for_database: bool = False) -> bool:
        """Migrate, register, start serving metrics. False: stopped while waiting for the database."""
        if not self._start_database(wait_for_database):
            return False
        if self.metrics is not None and self.metrics_address:
            self._metrics_server = self.metrics.serve(self.metrics_address)
            log.info("metrics.serving", address=self.metrics_address)
        log.info("daemon.started", owner=self.dispatcher.owner, database=safe_url(self.settings.database),
                 accounts=len(self.settings.accounts), timezone=str(self.settings.timezone),
                 dry_run=self.dry_run, concurrency=self.settings.concurrency)
        return True

    def _start_database(self, wait: bool) -> bool:
        """Migrate and register. With `wait` (the daemon), a database that cannot be used yet —
        read-only, full, locked, unreachable — is reported and tried again, not the end of the process."""
        delay = 1.0
        while True:
            try:
                self.db.migrate()
                self._register()
                return True
            except OperationalError as exc:
                if not wait or fault_name(exc) is None:
                    raise
                _failed("daemon.database_unavailable", exc)
            if self.stop_requested.wait(delay):
                return False
            delay = min(delay * 2, 30.0)

    def run_forever(self) -> int:
        self._install_signals()
        if not self.prepare(wait_for_database=True):
            self.db.dispose()
            log.info("daemon.stopped", note="stopped before the database could be used")
            return 0
        now = utcnow()
        # The first sync, reap and dispatch pass come right after READY, in that order: the sync
        # and dispatch jobs are added by _first_pass, so nothing is sent before the files were read.
        self._starting = time.monotonic()
        self.scheduler.add_job(self._first_pass, id="first_pass", next_run_time=now)
        self.scheduler.add_job(self._reap_job, "interval", id="reap", seconds=REAP_EVERY.total_seconds())
        self.scheduler.add_job(self._renew_job, "interval", id="renew",
                               seconds=max(1.0, self.settings.lease.total_seconds() / 4))
        self.scheduler.add_job(self._seen_job, "interval", id="seen", seconds=SEEN_EVERY.total_seconds(),
                               next_run_time=now)
        if self.notifier.watchdog is not None:
            self.scheduler.add_job(self._watchdog_job, "interval", id="watchdog",
                                   seconds=max(0.5, self.notifier.watchdog.total_seconds() / 3), next_run_time=now)
        self.scheduler.start()
        for hook in self.ready_hooks:
            hook()
        self.notifier.ready("running")
        log.info("daemon.ready")
        while not self.stop_requested.wait(0.5):
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()
        return self.shutdown()

    def shutdown(self) -> int:
        log.info("daemon.stopping", in_flight=self.dispatcher.busy)
        self.notifier.stopping()
        self.stop_requested.set()
        try:
            self.scheduler.pause()
        except Exception:
            pass
        finished = self.dispatcher.stop(self.settings.shutdown_grace.total_seconds())
        if not finished:
            log.warning("daemon.stopped_with_sends_in_flight", in_flight=self.dispatcher.busy,
                        note="they are reconciled when a daemon next starts")
        try:
            self.scheduler.shutdown(wait=True)
        except Exception:
            pass
        if self.watch is not None:
            self.watch.close()
        self._unregister()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.db.dispose()
        log.info("daemon.stopped", **self.db.write_counts())
        return 0

    def request_stop(self, *_args: Any) -> None:
        self.stop_requested.set()

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        # The handler only flags; the main loop reloads, outside the signal context.
        signal.signal(signal.SIGHUP, lambda *_: self._reload_requested.set())

    def run_once(self) -> tuple[Report, list[Outcome]]:
        """Sync, send what is due now (waiting for each send), and return; retries due later wait."""
        self.prepare()
        try:
            report = self.sync()
            self.dispatcher.reap()
            while True:
                started = self.dispatcher.dispatch()
                if started == 0 and self.dispatcher.busy == 0:
                    break
                self.dispatcher.drain()
            return report, list(self.dispatcher.outcomes)
        finally:
            self.dispatcher.stop(self.settings.shutdown_grace.total_seconds())
            self._unregister()
            self.db.dispose()


NEEDS_ATTENTION = (State.FAILED, State.UNKNOWN, State.PAUSED, State.HELD)
STATUS_STATES = ("pending", "retrying", "sending", "published", "failed", "unknown", "paused", "held")
