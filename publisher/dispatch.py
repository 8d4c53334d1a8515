"""Dispatch: claim what is due, send it through its adapter, record what happened.

`sending` is committed before the request leaves; every later write is fenced by the lease;
no transaction is open during an HTTP call. An answer that may or may not mean "posted" is
reconciled through the adapter's `lookup`, else the delivery becomes `unknown` for a person.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.utils
from requests.adapters import HTTPAdapter
from requests.sessions import merge_hooks, merge_setting
from requests.structures import CaseInsensitiveDict
from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.engine import RowMapping

from adapters.base import (
    AuthExpired,
    BaseAdapter,
    LeaseLost,
    MaybeSent,
    Message,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
    has_lookup,
)
from adapters.http import new_session
from adapters.registry import adapter_class
from publisher import audit, faults, logs, retry, store
from publisher.db import Database, fault_name
from publisher.models import utcnow
from publisher.posts import Content
from publisher.redact import redact
from publisher.settings import AccountSettings, Blackout, Settings
from publisher.states import READY, HoldReason, State
from publisher.sync import drift as post_drift
from publisher.sync import drift_from as post_drift_from

log = logs.get("siar.dispatch")

A, D = store.A, store.D
# The earliest pacing wait still ahead (`next_wake`), built once: building it cost more than running it.
_NEXT_PACING = select(func.min(A.c.not_before)).where(A.c.not_before > bindparam("after", type_=A.c.not_before.type))


def new_owner() -> str:
    """A lease owner name that is unique per process start: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# The environment's proxies per (scheme, host, no_proxy), and netrc credentials per (scheme,
# host), shared by every account's session: a daemon's environment does not change while it runs.
_ENVIRON_PROXIES: dict[tuple[str, str, Any], dict[str, str]] = {}
_NETRC_AUTH: dict[tuple[str, str], Any] = {}


# Prepared URLs by the URL given (for requests without `params`): requests parses, IDNA-encodes
# and requotes the same few API URLs for every request. Bounded: URLs that vary per request
# (a query string with an id) stop being added once it is full.
_PREPARED_URLS: dict[str, str] = {}
_PREPARED_URLS_MAX = 512


class _PreparedRequest(requests.PreparedRequest):
    def prepare_url(self, url: Any, params: Any) -> None:
        if params or not isinstance(url, str):
            super().prepare_url(url, params)
            return
        known = _PREPARED_URLS.get(url)
        if known is not None:
            self.url = known
            return
        super().prepare_url(url, params)  # raises for a bad URL, which is then not kept
        if len(_PREPARED_URLS) < _PREPARED_URLS_MAX:
            _PREPARED_URLS[url] = self.url


def _merged(request_setting: Any, session_setting: Any) -> Any:
    """requests' `merge_setting` for two plain dicts (the proxies of every request), without its
    generic path: requests 2.34 checks each against a runtime typing Protocol, which cost more
    than the merge. Anything else goes through requests' own function."""
    if type(request_setting) is not dict or type(session_setting) is not dict:
        return merge_setting(request_setting, session_setting)
    merged = {**session_setting, **request_setting}
    return {k: v for k, v in merged.items() if v is not None}


class _Undo(Exception):
    """Raised inside a write block to roll it back (only that block, under SQLite's GroupCommit)."""


class CountingSession(requests.Session):
    """Counts requests handed to the transport, to tell "never sent" from "may have been sent"."""

    def __init__(self) -> None:
        super().__init__()
        self.headers.update(new_session().headers)
        self.sent = 0
        self._ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent += 1
        return super().send(request, **kwargs)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """As requests does it when no cookie, session auth or session parameter is involved (the
        adapters' case: tokens go in headers or the body), without its generic merging: that
        merging (cookie jars copied twice, each mapping checked against typing protocols, the
        netrc file looked up on disk) cost as much CPU as sending the request. Anything else
        takes requests' own path. The netrc lookup is kept, once per host."""
        if request.cookies or self.cookies or self.auth is not None or self.params:
            return super().prepare_request(request)
        headers = CaseInsensitiveDict(self.headers)
        if request.headers:
            headers.update(request.headers)
            for name in [k for k, v in headers.items() if v is None]:
                del headers[name]
        auth = request.auth
        if not auth and self.trust_env:
            auth = self._netrc_auth(request.url)
        prepared = _PreparedRequest()
        prepared.prepare(method=request.method.upper(), url=request.url, files=request.files, data=request.data,
                         json=request.json, headers=headers, params=request.params, auth=auth,
                         hooks=merge_hooks(request.hooks, self.hooks))
        return prepared

    def _netrc_auth(self, url: str) -> Any:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in _NETRC_AUTH:
            _NETRC_AUTH[key] = requests.utils.get_netrc_auth(url)
        return _NETRC_AUTH[key]

    def merge_environment_settings(self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        """As requests does it, but with the environment's proxy and CA settings read once per
        host: reading them for every request (os.environ, no_proxy matching) cost more CPU than
        the rest of a request, and a daemon's environment does not change while it runs."""
        if self.trust_env:
            parts = urlsplit(url)
            no_proxy = proxies.get("no_proxy") if proxies is not None else None
            key = (parts.scheme, parts.netloc, no_proxy)
            env = _ENVIRON_PROXIES.get(key)
            if env is None:
                env = _ENVIRON_PROXIES[key] = requests.utils.get_environ_proxies(url, no_proxy=no_proxy)
            if proxies is not None:
                for name, value in env.items():
                    proxies.setdefault(name, value)
            if verify is True or verify is None:
                verify = self._ca_bundle or verify
        return {"proxies": _merged(proxies, self.proxies), "stream": merge_setting(stream, self.stream),
                "verify": merge_setting(verify, self.verify), "cert": merge_setting(cert, self.cert)}


class DbJob:
    """The `Job` an adapter sees: idempotency key, attempt, and a checkpoint committed on save."""

    def __init__(self, dispatcher: Dispatcher, lease: store.Lease, row: Mapping[str, Any], attempt: int) -> None:
        self._dispatcher = dispatcher
        self._lease = lease
        self.key: str = row["key"]
        self.attempt = attempt
        self._saved: dict[str, Any] = json.loads(row["checkpoint"]) if row["checkpoint"] else {}

    @property
    def saved(self) -> Mapping[str, Any]:
        return dict(self._saved)

    def save(self, state: Mapping[str, Any]) -> None:
        data = dict(state)
        now = utcnow()
        with self._dispatcher.db.write() as conn:
            ok = store.update_leased(conn, self._lease, now=now, checkpoint=json.dumps(data, sort_keys=True),
                                     lease_expires=now + self._dispatcher.settings.lease)
        if not ok:
            raise LeaseLost(f"delivery {self._lease.delivery_id}: lease lost, checkpoint not saved")
        self._saved = data
        faults.point("after_save")  # committed: a crash here falls between two steps of the flow

    def heartbeat(self) -> None:
        now = utcnow()
        with self._dispatcher.db.write() as conn:
            ok = store.renew(conn, self._lease, until=now + self._dispatcher.settings.lease, now=now)
        if not ok:
            raise LeaseLost(f"delivery {self._lease.delivery_id}: lease lost")


@dataclass
class Outcome:
    """What the run of one delivery ended in, for `run --once` and tests."""

    delivery_id: int
    state: State | None  # None: the lease was lost and nothing was recorded
    error: str | None = None


@dataclass(frozen=True)
class DispatchEvent:
    """What observers (metrics) hear: a recorded transition, or an error an adapter raised."""

    kind: str  # "recorded" or "error"
    row: Mapping[str, Any]
    event: str | None = None
    state: State | None = None
    at: datetime | None = None
    latency: float | None = None  # seconds from the request leaving to the answer recorded
    error_class: str | None = None
    wait: float | None = None  # the platform's own wait, for rate limits


@dataclass(frozen=True)
class _Go:
    """A delivery cleared to go out: its adapter, its message, the attempt it will be."""

    adapter: BaseAdapter
    message: Message
    attempt: int


@dataclass
class _InFlight:
    lease: store.Lease
    account: str
    future: Future[Outcome] | None = None
    lost: bool = field(default=False)
    sending_at: float | None = None  # monotonic time the request was about to leave


def _transport(settings: Settings) -> HTTPAdapter:
    """The connection pools all adapters share: up to `concurrency` kept-alive connections per
    host (urllib3's pools are thread-safe), for as many hosts as the accounts name."""
    hosts = max(10, len(settings.accounts))
    return HTTPAdapter(pool_connections=hosts, pool_maxsize=max(10, settings.concurrency))


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        owner: str | None = None,
        on_settled: Callable[[Any, RowMapping, datetime], None] | None = None,
        adapter_override: Callable[[AccountSettings], BaseAdapter] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.owner = owner or new_owner()
        self.on_settled = on_settled  # e.g. make a repeat's next occurrence
        self.adapter_override = adapter_override  # `--dry-run`: every account becomes an outbox
        self.on_free: Callable[[], None] | None = None  # the daemon's "dispatch again now"
        self.executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="siar-send")
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, _InFlight] = {}
        self._adapters: dict[str, BaseAdapter] = {}
        self._transport = _transport(settings)
        self.outcomes: list[Outcome] = []
        self.observers: list[Callable[[DispatchEvent], None]] = []

    def reload(self, settings: Settings) -> None:
        """New settings (SIGHUP): adapters are rebuilt on next use; sends in flight keep theirs."""
        self.settings = settings
        self._adapters = {}
        self._transport = _transport(settings)  # the old one stays with the sends still using it

    # --- adapters ---------------------------------------------------------------------------

    def adapter_for(self, name: str) -> BaseAdapter:
        adapter = self._adapters.get(name)
        if adapter is None:
            account = self.settings.accounts.get(name)
            if account is None:
                raise KeyError(name)
            if self.adapter_override is not None:
                adapter = self.adapter_override(account)
            else:
                cls = adapter_class(account.platform)
                config = account.adapter_config(self.settings.state_dir, self.settings.http_timeout.total_seconds())
                session = CountingSession()
                # Every account's session sends through one connection pool: 500 accounts on one
                # platform reuse a few kept-alive (TLS) connections instead of opening 500.
                session.mount("https://", self._transport)
                session.mount("http://", self._transport)
                adapter = cls(config, session)
            self._adapters[name] = adapter
        return adapter

    def message_for(self, row: Mapping[str, Any]) -> Message:
        content = Content.from_dict(json.loads(row["message"]))
        return content.to_message(row["post_id"], self.settings.media_dir, self.settings.media_url)

    # --- claiming -----------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._inflight)

    def dispatch(self, now: datetime | None = None) -> int:
        """Claim what is ready and hand it to the workers; returns how many were started."""
        if self.stopping.is_set():
            return 0
        with self._lock:
            free = self.settings.concurrency - len(self._inflight)
            mine = [f.account for f in self._inflight.values()]
        if free <= 0:
            return 0
        now = now or utcnow()
        with self.db.write() as conn:
            rows = store.claim_batch(
                conn, owner=self.owner, now=now, lease=self.settings.lease, limit=free, exclude_accounts=mine
            )
        for row in rows:
            lease = store.Lease(int(row["id"]), self.owner, int(row["claim_token"]))
            flight = _InFlight(lease=lease, account=row["account"])
            with self._lock:
                self._inflight[lease.delivery_id] = flight
            flight.future = self.executor.submit(self._run, row, lease)
        return len(rows)

    def next_wake(self) -> datetime | None:
        """The earliest time something waiting could become claimable."""
        now = utcnow()
        with self.db.read() as conn:
            ready = store.next_ready_time(conn, now)
            pacing = conn.execute(_NEXT_PACING, {"after": now}).scalar()
        times = [t for t in (ready, pacing) if t is not None]
        return min(times) if times else None

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for every send in flight; True when none is left."""
        with self._lock:
            futures = [f.future for f in self._inflight.values() if f.future is not None]
        if futures:
            wait(futures, timeout=timeout)
        return self.busy == 0

    def stop(self, grace: float) -> bool:
        """Stop claiming; let sends in flight finish for up to `grace` seconds."""
        self.stopping.set()
        finished = self.drain(timeout=grace)
        self.executor.shutdown(wait=False, cancel_futures=True)
        return finished

    # --- one delivery -------------------------------------------------------------------------

    def _run(self, row: RowMapping, lease: store.Lease) -> Outcome:
        bound = log.bind(delivery=row["id"], post=row["post_id"], account=row["account"], platform=row["platform"])
        try:
            outcome = self._send(row, lease, bound)
        except Exception as exc:  # a bug or a database fault: say so, never take the worker down
            fault = fault_name(exc)
            extra: dict[str, Any] = ({"fault": fault, "note": "what it reached is settled when its lease runs out"}
                                     if fault else {"exc_info": exc})
            bound.error("delivery.crashed", error=redact(f"{type(exc).__name__}: {exc}"), **extra)
            outcome = Outcome(int(row["id"]), None, redact(str(exc)))
        finally:
            with self._lock:
                self._inflight.pop(lease.delivery_id, None)
        self.outcomes.append(outcome)
        if self.on_free is not None and not self.stopping.is_set():
            self.on_free()
        return outcome

    def _send(self, row: RowMapping, lease: store.Lease, bound: Any) -> Outcome:
        faults.point("after_claim")
        now = utcnow()
        verdict = self._verdict(row, lease, bound, now)
        if isinstance(verdict, _Go):
            # The common case in one statement: `sending` is marked and the post read back with
            # it; as it was when this delivery was made, that is committed at once (the check and
            # the mark are atomic). A post that changed meanwhile undoes the mark.
            try:
                with self.db.write() as conn:
                    post = store.mark_sending(conn, lease, row, now=now, attempt=verdict.attempt,
                                              lease_expires=now + self.settings.lease)
                    drift = post_drift_from(post, row, self.settings)
                    if drift is not None:
                        raise _Undo
            except _Undo:
                pass
            if drift is None:
                return self._sending(row, lease, bound, verdict, post is not None)
        else:
            with self.db.read() as conn:
                drift = post_drift(conn, row, self.settings)
        # Its post changed or went while it was out, or a check stops it: the post as the files
        # say now decides (a removed post is cancelled, not held as late).
        if drift is not None and drift.state is not None:
            return self._record(row, lease, bound, drift.state, drift.event, hold_reason=drift.hold_reason,
                                detail=drift.detail, **drift.values)
        if drift is not None:
            row = {**row, **drift.values}  # type: ignore[assignment]  # goes out as the post says now
            verdict = self._verdict(row, lease, bound, now)
        if not isinstance(verdict, _Go):
            return verdict()
        with self.db.write() as conn:
            if drift is not None:
                store.fenced(conn, lease, drift.event, now=now, row=row, detail=drift.detail, **drift.values)
            ok = store.mark_sending(conn, lease, row, now=now, attempt=verdict.attempt,
                                    lease_expires=now + self.settings.lease) is not None
        return self._sending(row, lease, bound, verdict, ok)

    def _verdict(self, row: Mapping[str, Any], lease: store.Lease, bound: Any,
                 now: datetime) -> _Go | Callable[[], Outcome]:
        """May it go out now? `_Go` with its adapter and message, or what to record instead."""
        if now > row["deadline"]:
            return lambda: self._record(row, lease, bound, State.HELD, "held", hold_reason=HoldReason.EXPIRED,
                                        detail={"reason": HoldReason.EXPIRED.value,
                                                "late_by_s": round((now - row["due_at"]).total_seconds(), 1)})
        window = next((b for b in self.settings.blackouts if b.covers(row["account"], now)), None)
        if window is not None:
            return lambda: self._blackout(row, lease, bound, window)
        try:
            adapter = self.adapter_for(row["account"])
            message = self.message_for(row)
        except KeyError:
            return lambda: self._pause(row, lease, bound,
                                       f"account {row['account']!r} is not configured in siar.toml")
        except Exception as exc:  # unusable account settings: nothing can go out on it
            error = f"account settings: {exc}"
            return lambda: self._pause(row, lease, bound, error)
        missing = [m.file for m in message.media if not m.path.is_file()]
        if missing:
            return lambda: self._record(row, lease, bound, State.FAILED, "failed",
                                        error=f"media file missing at send time: {', '.join(missing)}")
        return _Go(adapter, message, int(row["attempts"]) + 1)

    def _sending(self, row: Mapping[str, Any], lease: store.Lease, bound: Any, go: _Go, ok: bool) -> Outcome:
        """`sending` is committed (ok) or the lease was lost: make the request, record its end."""
        delivery_id = int(row["id"])
        adapter, message, attempt = go.adapter, go.message, go.attempt
        if not ok:
            bound.warning("delivery.lease_lost", step="sending")
            return Outcome(delivery_id, None)
        # Debug only: the outcome's line (published, retry, failed …) names the attempt too, and
        # under a burst a second JSON line per delivery was a measurable share of the CPU.
        bound.debug("delivery.sending", attempt=attempt)
        faults.point("after_sending")
        job = DbJob(self, lease, row, attempt)
        sent_before = getattr(adapter.http, "sent", 0)
        with self._lock:
            flight = self._inflight.get(delivery_id)
            if flight is not None:
                flight.sending_at = time.monotonic()
        try:
            receipt = adapter.publish(message, job)
        except LeaseLost:
            bound.warning("delivery.lease_lost", step="publish")
            return Outcome(delivery_id, None)
        except Exception as exc:
            self._emit(DispatchEvent("error", row, error_class=type(exc).__name__,
                                     wait=getattr(exc, "retry_after", None)))
            may_have_sent = getattr(adapter.http, "sent", 0) > sent_before
            return self._failed_attempt(row, lease, bound, adapter, message, job, attempt, exc, may_have_sent)
        faults.point("after_publish")
        return self._published(row, lease, bound, receipt, attempt)

    def _failed_attempt(self, row: RowMapping, lease: store.Lease, bound: Any, adapter: BaseAdapter,
                        message: Message, job: DbJob, attempt: int, exc: Exception,
                        may_have_sent: bool) -> Outcome:
        """The adapter raised: the error's type says what happens next (DESIGN.md §5)."""
        if isinstance(exc, RateLimited) and exc.retry_after:
            with self.db.write() as conn:
                store.set_account(conn, row["account"], not_before=utcnow() + timedelta(seconds=exc.retry_after))
        if isinstance(exc, Transient):
            return self._retry(row, lease, bound, attempt, exc)
        if isinstance(exc, AuthExpired):
            return self._pause(row, lease, bound, str(exc), attempt=attempt, http_status=exc.http_status)
        if isinstance(exc, Rejected):
            return self._record(row, lease, bound, State.FAILED, "failed", attempt=attempt,
                                http_status=exc.http_status, error=str(exc))
        if isinstance(exc, MaybeSent):
            return self._reconcile(row, lease, bound, adapter, message, job, str(exc), attempt)
        error = f"{type(exc).__name__}: {exc}"
        bound.error("delivery.adapter_error", error=redact(error), exc_info=exc, sent=may_have_sent)
        if may_have_sent:  # an unexpected error after a request left: the platform may have acted
            return self._reconcile(row, lease, bound, adapter, message, job, error, attempt)
        return self._record(row, lease, bound, State.FAILED, "failed", attempt=attempt,
                            error=f"adapter failed before sending: {error}")

    # --- recording ----------------------------------------------------------------------------

    def _record(
        self, row: Mapping[str, Any], lease: store.Lease, bound: Any, state: State, event: str, *,
        attempt: int | None = None, http_status: int | None = None, error: str | None = None,
        hold_reason: HoldReason | None = None, detail: dict[str, Any] | None = None,
        also: Callable[[Connection], None] | None = None, **values: Any,
    ) -> Outcome:
        """Record a transition (fenced, audited); `also` runs in the same transaction if it held."""
        now = utcnow()
        error = redact(error)
        with self.db.write() as conn:
            ok = store.fenced(
                conn, lease, event, now=now, state=state, attempt=attempt, http_status=http_status,
                error=error, detail=detail, row=row, hold_reason=hold_reason.value if hold_reason else None,
                last_error=error, **values,
            )
            if ok and also is not None:
                also(conn)
            if ok and state not in READY and self.on_settled is not None:
                self.on_settled(conn, row, now)
        if not ok:
            bound.warning("delivery.lease_lost", step=event)
            return Outcome(int(row["id"]), None)
        with self._lock:
            flight = self._inflight.get(lease.delivery_id)
            started = flight.sending_at if flight is not None else None
        self._emit(DispatchEvent("recorded", row, event=event, state=state, at=now,
                                 latency=time.monotonic() - started if started is not None else None))
        level = "info" if state in (State.PUBLISHED, State.RETRYING) else "warning"
        context = {"attempt": attempt, "http_status": http_status, "error": error, **(detail or {})}
        getattr(bound, level)(f"delivery.{event}", state=state.value,
                              **{k: v for k, v in context.items() if v is not None})
        return Outcome(int(row["id"]), state, error)

    def _blackout(self, row: RowMapping, lease: store.Lease, bound: Any, window: Blackout) -> Outcome:
        """Inside a blackout window: cancelled, or held until the window ends (then released)."""
        detail = {"reason": HoldReason.BLACKOUT.value, "blackout": window.reason, "until": window.end.isoformat()}
        if window.action == "cancel":
            return self._record(row, lease, bound, State.CANCELLED, "cancelled", detail=detail)
        # The window, not the platform, made it late: measure lateness from the window's end.
        deadline = max(row["deadline"], window.end + (row["deadline"] - row["due_at"]))
        return self._record(row, lease, bound, State.HELD, "held", hold_reason=HoldReason.BLACKOUT, detail=detail,
                            ready_at=window.end, deadline=deadline)

    def _emit(self, event: DispatchEvent) -> None:
        for observer in self.observers:
            try:
                observer(event)
            except Exception as exc:  # an observer must never break a send
                log.error("dispatch.observer_failed", error=f"{type(exc).__name__}: {exc}")

    def _published(self, row: RowMapping, lease: store.Lease, bound: Any, receipt: Receipt, attempt: int,
                   event: str = "published", reconciled: str | None = None) -> Outcome:
        now = utcnow()
        # Only text is stored: a receipt an adapter filled from a malformed answer must not make
        # the record itself fail (the row would stay `sending`, reconciled again and again).
        url = receipt.url if isinstance(receipt.url, str) and receipt.url else None
        detail = {"url": url} if url else {}
        if reconciled:  # found on the platform by `lookup`: the audit says so, not just "published"
            detail["reconciled"] = reconciled
        return self._record(row, lease, bound, State.PUBLISHED, event, attempt=attempt, detail=detail or None,
                            also=lambda conn: self._pace(conn, row["account"], now),
                            platform_id=str(receipt.platform_id), url=url, published_at=now)

    def _pace(self, conn: Connection, name: str, now: datetime) -> None:
        """min_interval and max_per_day: push the account's next claim out as far as they say."""
        account = self.settings.accounts.get(name)
        waits: list[datetime] = []
        if account is not None and account.min_interval:
            waits.append(now + account.min_interval)
        if account is not None and account.max_per_day:
            recent = store.published_since(conn, name, now - timedelta(days=1))
            if len(recent) >= account.max_per_day:
                waits.append(recent[-account.max_per_day] + timedelta(days=1))
        store.set_account(conn, name, last_published_at=now, **({"not_before": max(waits)} if waits else {}))

    def _retry(self, row: RowMapping, lease: store.Lease, bound: Any, attempt: int, exc: Transient) -> Outcome:
        now = utcnow()
        decision = retry.after_transient(
            self.settings.retry, attempts=attempt, now=now, deadline=row["deadline"], platform_wait=exc.retry_after
        )
        detail = {"why": decision.why}
        if exc.retry_after is not None:
            detail["platform_wait_s"] = round(exc.retry_after, 3)
        if decision.state is State.RETRYING:
            detail["ready_at"] = decision.ready_at.isoformat() if decision.ready_at else None
            return self._record(row, lease, bound, State.RETRYING, "retry", attempt=attempt,
                                http_status=exc.http_status, error=str(exc), detail=detail,
                                ready_at=decision.ready_at)
        if decision.state is State.HELD:
            detail["reason"] = HoldReason.EXPIRED.value
            return self._record(row, lease, bound, State.HELD, "held", attempt=attempt, http_status=exc.http_status,
                                error=str(exc), hold_reason=HoldReason.EXPIRED, detail=detail)
        return self._record(row, lease, bound, State.FAILED, "failed", attempt=attempt,
                            http_status=exc.http_status, error=f"{exc} ({decision.why})", detail=detail)

    def _pause(self, row: RowMapping, lease: store.Lease, bound: Any, error: str, *, attempt: int | None = None,
               http_status: int | None = None) -> Outcome:
        outcome = self._record(row, lease, bound, State.PAUSED, "paused", attempt=attempt,
                               http_status=http_status, error=error)
        if outcome.state is State.PAUSED:
            with self.db.write() as conn:
                store.set_account(conn, row["account"], paused=True, paused_reason=redact(error))
            bound.error("account.paused", reason=redact(error))
        return outcome

    def _reconcile(self, row: RowMapping, lease: store.Lease, bound: Any, adapter: BaseAdapter | None,
                   message: Message | None, job: DbJob, why: str, attempt: int | None) -> Outcome:
        """The request may have reached the platform: ask it, or hand the case to a person."""
        if adapter is not None and message is not None and has_lookup(adapter):
            try:
                receipt = adapter.lookup(message, job)
            except LeaseLost:
                return Outcome(int(row["id"]), None)
            except Exception as exc:
                return self._record(row, lease, bound, State.UNKNOWN, "unknown", attempt=attempt,
                                    error=f"{why}; looking it up failed too: {type(exc).__name__}: {exc}")
            if receipt is not None:
                return self._published(row, lease, bound, receipt, attempt or int(row["attempts"]),
                                       event="published", reconciled=redact(why))
            if (attempt or int(row["attempts"])) >= self.settings.retry.attempts:
                return self._record(row, lease, bound, State.FAILED, "failed", attempt=attempt,
                                    error=f"{why}; not found on the platform and no attempts left")
            return self._record(row, lease, bound, State.PENDING, "reconciled", attempt=attempt, error=why,
                                detail={"found": False}, ready_at=utcnow())
        return self._record(row, lease, bound, State.UNKNOWN, "unknown", attempt=attempt, error=why)

    # --- leases -------------------------------------------------------------------------------

    def _end_blackouts(self, now: datetime) -> int:
        released = 0
        with self.db.write() as conn:
            rows = conn.execute(select(D).where(D.c.state == State.HELD.value,
                                                D.c.hold_reason == HoldReason.BLACKOUT.value,
                                                D.c.ready_at <= now)).mappings().all()
            for row in rows:
                result = conn.execute(D.update().where(D.c.id == row["id"], D.c.state == row["state"],
                                                       D.c.claim_token == row["claim_token"])
                                      .values(state=State.PENDING.value, hold_reason=None, updated_at=now))
                if result.rowcount == 1:
                    released += 1
                    audit.append(conn, "released", post_id=row["post_id"], delivery_id=row["id"],
                                 account=row["account"], platform=row["platform"], at=now,
                                 detail={"reason": "blackout window ended"})
        return released

    def renew_leases(self) -> None:
        """Keep this process's leases alive while their sends run (long uploads, slow platforms)."""
        now = utcnow()
        with self._lock:
            flights = list(self._inflight.values())
        if not flights:
            return
        with self.db.write() as conn:
            for flight in flights:
                if not store.renew(conn, flight.lease, until=now + self.settings.lease, now=now):
                    flight.lost = True

    def _not_live(self, rows: list[RowMapping]) -> list[RowMapping]:
        """Leave out leases this process holds for a send its worker is still making: a clock
        stepped forward makes them look expired, but taking them over would send twice."""
        with self._lock:
            live = set(self._inflight)
        return [r for r in rows if not (r["lease_owner"] == self.owner and r["id"] in live)]

    def reap(self, now: datetime | None = None) -> int:
        """Give every expired lease a way out: claimed → pending; sending → reconciliation.
        Also release what a blackout window held, once the window has ended."""
        now = now or utcnow()
        handled = self._end_blackouts(now)
        with self.db.write() as conn:
            for row in self._not_live(store.expired_leases(conn, now, State.CLAIMED)):
                taken = store.take_over(conn, row, owner=self.owner, now=now, lease=self.settings.lease)
                if taken and store.fenced(conn, taken, "released", now=now, state=State.PENDING, row=row,
                                          detail={"reason": "lease expired before sending"}):
                    handled += 1
        with self.db.write() as conn:
            stale = [(row, store.take_over(conn, row, owner=self.owner, now=now, lease=self.settings.lease))
                     for row in self._not_live(store.expired_leases(conn, now, State.SENDING))]
        for row, taken in stale:
            if taken is None:
                continue
            handled += 1
            bound = log.bind(delivery=row["id"], post=row["post_id"], account=row["account"])
            bound.warning("delivery.reconciling", reason="lease expired while sending")
            try:
                adapter: BaseAdapter | None = self.adapter_for(row["account"])
                message: Message | None = self.message_for(row)
            except Exception:
                adapter, message = None, None
            job = DbJob(self, taken, {**row, "claim_token": taken.token}, int(row["attempts"]))
            try:
                self._reconcile(row, taken, bound, adapter, message, job,
                                "the daemon stopped while sending (crash or kill)", int(row["attempts"]))
            except Exception as exc:  # one delivery's failure must not hold up the others' reconciliation
                fault = fault_name(exc)
                bound.error("delivery.reconcile_failed", error=redact(f"{type(exc).__name__}: {exc}"),
                            **({"fault": fault} if fault else {"exc_info": exc}))
        return handled
