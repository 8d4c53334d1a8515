"""Platform faults, each platform with its own signals (issue 4, item 4), table-driven.

Every row points a real adapter (through `api_base`) at that platform's local fake, makes one step
misbehave as the platform does, and checks where the delivery ends against what the fake made:

- `server_error`: the platform's 5xx (its own error body) on the step that makes the post: retried
  with jittered backoff, never more than `[retry] attempts` requests, then failed; nothing made.
- `timeout_after_create`: the platform makes the post, then answers after `http_timeout`;
  `reset_after_create`: it makes the post, then drops the connection (TCP reset). The answer is
  lost, not the post: published exactly once where the adapter can ask (lookup), else `unknown`
  with the post made once — never sent again. `garbled_after_create`: it makes the post and
  answers 200 with a body that is not what it documents: the same (a success is never `failed`).
- `half_open`: the connection is taken but nothing is done and nothing answered in time;
  `reset_before_create`: dropped before acting. Published once (asked, then sent again) where the
  platform can be asked, else `unknown` with nothing sent twice.
- `rate_limit`: the platform's own limit signal (429 + reset headers, Graph body codes and usage
  headers, Telegram's retry_after, YouTube's quota, LinkedIn's daily throttle): retrying, its
  ready_at (and the account's pause) no earlier than the platform's reset, jittered across
  deliveries; when the limit lifts it is published once.
- `expired_token`: the account is paused, its other deliveries wait, nothing is sent.
- `too_large` (413) and `invalid` (the platform's 422/validation answer): failed at once, one request.

In-process (Daemon + Dispatcher + the real adapters and HTTP stack, on the fake servers) rather than
`siar run --once`: ~110 rows run in seconds instead of minutes, and a retry's wait can be checked
and then skipped (ready_at moved to now). The process boundary is what the kill tests exercise.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from publisher.daemon import Daemon
from publisher.settings import load_settings
from publisher.store import A, D
from tests.conftest import Workspace
from tests.e2e.fakeplatforms import (
    atproto_error,
    graph_error,
    graph_session_expired,
    linkedin_daily_throttle,
    mastodon_validation_failed,
    telegram_error,
    x_problem,
    youtube_error,
    youtube_quota_exceeded,
)
from tests.faults.fleet import IRREVERSIBLE, LOOKUP, MEDIA_URL, RECIPIENTS, Fleet
from tests.support.fakeserver import Answer, Seen

pytestmark = pytest.mark.slow

ATTEMPTS = 3
TIMEOUT = 0.5
SETTINGS = f"""
[daemon]
timezone = "Asia/Jakarta"
media_url = "{MEDIA_URL}"
lease = "5s"
http_timeout = "{int(TIMEOUT * 1000)}ms"
shutdown_grace = "2s"

[retry]
attempts = {ATTEMPTS}
first_delay = "2s"
max_delay = "4s"
"""
FIRST_DELAY = 2.0
PLATFORMS = ("webhook", "facebook", "instagram", "threads", "x", "youtube", "whatsapp", "telegram",
             "mastodon", "bluesky", "linkedin")
PAGE = "104512345678901"
SOON = 30  # seconds to a platform's reset, for the limits that name one


# --- each platform's own answers -------------------------------------------------------------------


def server_error(platform: str) -> Answer:
    return {
        "webhook": Answer(503, "Service Unavailable"),
        "facebook": graph_error(500, 2, "An unexpected error has occurred. Please retry your request later.",
                                is_transient=True),
        "instagram": graph_error(500, 1, "An unknown error occurred", is_transient=True),
        "threads": graph_error(500, 1, "An unknown error occurred", is_transient=True),
        "x": x_problem(503, "Service Unavailable", "Service Unavailable"),
        "youtube": youtube_error(503, "backendError", "Backend Error", domain="global"),
        "whatsapp": graph_error(500, 131000, "Something went wrong", kind="OAuthException"),
        "telegram": telegram_error(502, "Bad Gateway"),
        "mastodon": Answer(503, {"error": "Service Unavailable"}),
        "bluesky": atproto_error(500, "InternalServerError", "Internal Server Error"),
        "linkedin": Answer(500, {"status": 500, "message": "Internal Server Error"}),
    }[platform]


def next_midnight(zone: str) -> float:
    now = datetime.now(ZoneInfo(zone))
    return (now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).timestamp()


@dataclasses.dataclass
class Limit:
    answer: Answer
    reset: Any  # the epoch the platform names; or a function of the request's arrival; None: no reset given


def rate_limit(platform: str) -> Limit:
    reset = int(time.time()) + SOON
    iso = datetime.fromtimestamp(reset, timezone.utc).isoformat().replace("+00:00", ".000Z")
    usage = {PAGE: [{"type": "pages", "call_count": 100, "total_cputime": 40, "total_time": 40,
                     "estimated_time_to_regain_access": 1}]}
    graph = graph_error(400, 4, "(#4) Application request limit reached", is_transient=True,
                        headers={"X-Business-Use-Case-Usage": json.dumps(usage)})
    return {
        "webhook": Limit(Answer(429, {"error": "slow down"},
                                headers={"Retry-After": email.utils.formatdate(reset, usegmt=True)}), reset),
        "facebook": Limit(graph, lambda seen: seen.at + 60),
        "instagram": Limit(graph, lambda seen: seen.at + 60),
        "threads": Limit(dataclasses.replace(graph), lambda seen: seen.at + 60),
        "x": Limit(x_problem(429, "Too Many Requests", "Too Many Requests", headers={
            "x-rate-limit-limit": "100", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}), reset),
        "youtube": Limit(youtube_quota_exceeded(), next_midnight("America/Los_Angeles")),
        "whatsapp": Limit(graph_error(429, 130429, "(#130429) Rate limit hit", error_data={
            "messaging_product": "whatsapp", "details": "Cloud API message throughput has been reached."}), None),
        "telegram": Limit(telegram_error(429, f"Too Many Requests: retry after {SOON}", retry_after=SOON),
                          lambda seen: seen.at + SOON),
        "mastodon": Limit(Answer(429, {"error": "Too many requests"}, headers={
            "X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": iso}), reset),
        "bluesky": Limit(atproto_error(429, "RateLimitExceeded", "Rate Limit Exceeded", headers={
            "ratelimit-limit": "5000", "ratelimit-remaining": "0", "ratelimit-reset": str(reset),
            "ratelimit-policy": "5000;w=3600"}), reset),
        "linkedin": Limit(linkedin_daily_throttle(), next_midnight("UTC")),
    }[platform]


def expired_token(platform: str) -> tuple[str, Answer]:
    """(step, answer): the platform's own word for credentials it no longer takes."""
    return {
        "webhook": ("hook", Answer(401, {"error": "signature rejected"})),
        "facebook": ("feed", graph_session_expired()),
        "instagram": ("media", graph_session_expired()),
        "threads": ("threads", graph_error(400, 190, "Error validating access token: Session has expired.")),
        "x": ("tweets", x_problem(401, "Unauthorized", "Unauthorized")),
        "youtube": ("token", Answer(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})),
        "whatsapp": ("messages", graph_error(401, 190, "Error validating access token: Session has expired.")),
        "telegram": ("send", telegram_error(401, "Unauthorized")),
        "mastodon": ("statuses", Answer(401, {"error": "The access token is invalid"})),
        "bluesky": ("createSession", Answer(401, {"error": "AuthenticationRequired",
                                                  "message": "Invalid identifier or password"})),
        "linkedin": ("posts", Answer(401, {"status": 401, "serviceErrorCode": 65601, "code": "REVOKED_ACCESS_TOKEN",
                                           "message": "The token used in the request has been revoked by the user"})),
    }[platform]


def invalid(platform: str) -> Answer:
    return {
        "webhook": Answer(422, {"error": "unprocessable post"}),
        "facebook": graph_error(400, 100, "(#100) Invalid parameter"),
        "instagram": graph_error(400, 36004, "The caption is too long", subcode=2207010),
        "threads": graph_error(400, 100, "The post was blocked", subcode=4279013),
        "x": x_problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                       "https://api.x.com/2/problems/invalid-request"),
        "youtube": youtube_error(400, "invalidTitle", "The request metadata specifies an invalid video title.",
                                 domain="youtube.video"),
        "whatsapp": graph_error(400, 131008, "(#131008) Required parameter is missing"),
        "telegram": telegram_error(400, "Bad Request: message is too long"),
        "mastodon": mastodon_validation_failed("Text character limit of 500 exceeded"),
        "bluesky": atproto_error(400, "InvalidRequest", "Invalid app.bsky.feed.post record: text too long"),
        "linkedin": Answer(422, {"status": 422, "message": "ERROR :: /commentary :: length exceeds 3000"}),
    }[platform]


# --- the rig ---------------------------------------------------------------------------------------


class Rig:
    """One platform's accounts on their fakes, and a daemon in this process dispatching to them."""

    def __init__(self, root: Path, platform: str, accounts: int = 1, posts: int = 1) -> None:
        self.platform = platform
        self.workspace = Workspace(root)
        self.fleet = Fleet(self.workspace.root)
        self.names = [f"akun{n}" for n in range(1, accounts + 1)]
        for name in self.names:
            self.fleet.add(platform, name)
        self.fleet.write(self.workspace, SETTINGS)
        for a, name in enumerate(self.names):
            for p in range(posts):
                marker = f"kf-{a + 1}{p:03d}"
                self.fleet.post(self.workspace, marker, [name], extra='max_lateness = "2d"')
        settings = load_settings(self.workspace.root, environ=dict(os.environ))
        self.daemon = Daemon(settings)
        self.daemon.dispatcher.on_free = None
        self.daemon.prepare()
        self.daemon.sync()

    @property
    def fakes(self) -> list[Any]:
        return [self.fleet.accounts[name].fake for name in self.names]

    def step(self) -> str:
        return self.fleet.accounts[self.names[0]].create

    def dispatch(self) -> None:
        dispatcher = self.daemon.dispatcher
        while dispatcher.dispatch() or dispatcher.busy:
            dispatcher.drain()

    def skip_waits(self) -> None:
        """What the clock would do: every wait is over (the waits themselves were checked before)."""
        with self.daemon.db.write() as conn:
            conn.execute(update(D).where(D.c.state.in_(("retrying", "pending")))
                         .values(ready_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
            conn.execute(update(A).values(not_before=None))
        for adapter in self.daemon.dispatcher._adapters.values():
            if hasattr(adapter, "_hold_until"):  # Graph's own usage hold, kept in the adapter
                adapter._hold_until = 0.0

    def until_settled(self, rounds: int = 8) -> None:
        for _ in range(rounds):
            self.dispatch()
            if not self.rows(state="retrying") and not self.rows(state="pending"):
                return
            self.skip_waits()

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        query = select(D).order_by(D.c.id)
        for key, value in where.items():
            query = query.where(D.c[key] == value)
        with self.daemon.db.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def row(self, marker: str) -> dict[str, Any]:
        (found,) = self.rows(post_id=marker)
        return found

    def account(self, name: str) -> dict[str, Any]:
        with self.daemon.db.read() as conn:
            return dict(conn.execute(select(A).where(A.c.name == name)).mappings().one())

    def retries(self) -> list[dict[str, Any]]:
        with self.daemon.db.read() as conn:
            rows = conn.execute(select(self._audit()).where(self._audit().c.event == "retry")
                                .order_by(self._audit().c.seq)).mappings()
            return [dict(r) for r in rows]

    @staticmethod
    def _audit() -> Any:
        from publisher.models import AuditEvent

        return AuditEvent.__table__

    def made(self, name: str, marker: str) -> dict[str, int]:
        return {part: n for (m, part), n in self.fleet.created(name, self.workspace).items() if m == marker}

    def sent(self, name: str) -> list[Seen]:
        return self.fleet.irreversible(name)

    def close(self) -> None:
        self.daemon.dispatcher.stop(2)
        self.daemon.db.dispose()
        self.fleet.close()


@pytest.fixture
def rig(tmp_path):
    made: list[Rig] = []

    def build(platform: str, accounts: int = 1, posts: int = 1) -> Rig:
        made.append(Rig(tmp_path / f"rig{len(made)}", platform, accounts, posts))
        return made[-1]

    yield build
    for each in made:
        each.close()


def utc(value: Any) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


def jitter(event: dict[str, Any]) -> float:
    """How far past its computed wait a retry was put: (ready_at − recorded) − the platform's wait."""
    detail = json.loads(event["detail"])
    waited = (utc(detail["ready_at"]) - utc(event["at"])).total_seconds()
    return waited - float(detail.get("platform_wait_s") or 0.0)


def first_marker(rig: Rig, index: int = 0) -> str:
    return f"kf-{index + 1}000"


# --- the table -------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
def test_server_errors_are_retried_with_jittered_backoff_up_to_the_attempts_then_failed(platform, rig):
    r = rig(platform, accounts=4)
    for fake in r.fakes:
        fake.fail(r.step(), server_error(platform))
    started = datetime.now(timezone.utc)
    r.dispatch()
    rows = r.rows()
    assert [row["state"] for row in rows] == ["retrying"] * 4, [row["last_error"] for row in rows]
    for row in rows:
        wait = (utc(row["ready_at"]) - started).total_seconds()
        assert FIRST_DELAY / 2 <= wait <= FIRST_DELAY + 1, wait  # the backoff, not a hot loop
    jitters = [jitter(e) for e in r.retries()]
    assert max(jitters) - min(jitters) >= 0.05, jitters  # four deliveries, four different waits
    r.until_settled()
    for index, name in enumerate(r.names):
        row = r.row(first_marker(r, index))
        assert (row["state"], row["attempts"]) == ("failed", ATTEMPTS), row["last_error"]
        assert 1 <= len(r.sent(name)) <= ATTEMPTS
        assert not r.made(name, first_marker(r, index))


AFTER_CREATE = ("timeout_after_create", "reset_after_create", "garbled_after_create")
BEFORE_CREATE = ("half_open", "reset_before_create")


@pytest.mark.parametrize("fault", AFTER_CREATE + BEFORE_CREATE)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_lost_answer_never_makes_a_second_post(platform, fault, rig):
    r = rig(platform)
    name, marker = r.names[0], first_marker(r)
    method, pattern = IRREVERSIBLE[platform]
    hit: list[Seen] = []

    def once(seen: Seen, given: Answer) -> Answer | None:
        if hit or "*/" in (seen.header("Content-Range") or ""):
            return None
        hit.append(seen)
        if fault == "timeout_after_create":
            return dataclasses.replace(given, delay=TIMEOUT * 2.5)
        if fault == "garbled_after_create":  # a success whose body cannot be read (a proxy's page)
            return Answer(200, "<html><body>OK</body></html>", headers={"Content-Type": "application/json"})
        return Answer(reset=True)

    if fault in AFTER_CREATE:
        r.fleet.intercept(name, method, pattern, once)
    elif fault == "half_open":  # taken, never acted on, never answered in time
        r.fakes[0].fail(r.step(), Answer(504, "Gateway Timeout", delay=TIMEOUT * 2.5), None)
    else:
        r.fakes[0].fail(r.step(), Answer(reset=True), None)
    r.until_settled()
    row, made = r.row(marker), r.made(name, marker)
    assert all(n == 1 for n in made.values()), f"made twice: {made}"
    if platform in LOOKUP:
        assert row["state"] == "published", row["last_error"]
        if platform == "whatsapp":  # the recipient whose send was in doubt is never sent again
            assert set(made) == set(RECIPIENTS) - ({RECIPIENTS[0]} if fault in BEFORE_CREATE else set())
        else:
            assert made == {"": 1}
    elif platform == "webhook" and fault == "garbled_after_create":
        assert row["state"] == "published" and made == {"": 1}  # any 2xx is the receiver's acknowledgement
    else:
        assert row["state"] == "unknown", (row["state"], row["last_error"])
        assert len(r.sent(name)) == 1, "an unsettled send went out again"
        assert bool(made) == (fault in AFTER_CREATE)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_rate_limit_waits_until_the_platforms_reset_jittered_then_publishes_once(platform, rig):
    r = rig(platform, accounts=4)
    limit = rate_limit(platform)
    for fake in r.fakes:
        fake.fail(r.step(), limit.answer, None)
    started = time.time()
    r.dispatch()
    for index, name in enumerate(r.names):
        row = r.row(first_marker(r, index))
        assert row["state"] == "retrying", row["last_error"]
        assert row["attempts"] == 1
        ready = utc(row["ready_at"]).timestamp()
        arrived = r.fleet.irreversible(name)[0]
        reset = limit.reset(arrived) if callable(limit.reset) else limit.reset
        if reset is not None:
            assert ready >= reset, f"ready {ready - reset:+.3f}s from the platform's reset"
            not_before = r.account(name)["not_before"]
            assert not_before is not None and utc(not_before).timestamp() >= reset - 0.001
        else:
            assert ready >= started + FIRST_DELAY / 2
    jitters = [jitter(e) for e in r.retries()]
    assert len(jitters) == 4
    assert min(jitters) >= -0.01, jitters  # never before the platform's time
    assert max(jitters) - min(jitters) >= 0.05, f"all four wait for the same instant: {jitters}"
    r.until_settled()
    for index, name in enumerate(r.names):
        marker = first_marker(r, index)
        assert r.row(marker)["state"] == "published"
        assert all(n == 1 for n in r.made(name, marker).values())


@pytest.mark.parametrize("platform", PLATFORMS)
def test_an_expired_token_pauses_the_account_and_its_other_deliveries_wait(platform, rig):
    r = rig(platform, posts=2)
    step, answer = expired_token(platform)
    r.fakes[0].fail(step, answer)
    r.until_settled(rounds=2)
    name = r.names[0]
    first, second = r.rows()
    assert (first["state"], first["attempts"]) == ("paused", 1), first["last_error"]
    assert second["state"] == "pending" and second["attempts"] == 0
    assert r.account(name)["paused"]
    assert not r.made(name, first["post_id"]) and not r.made(name, second["post_id"])
    assert len(r.sent(name)) <= 1


def test_a_bluesky_access_token_that_expired_is_refreshed_and_the_post_goes_once(rig):
    r = rig("bluesky")
    r.fakes[0].fail("createRecord", atproto_error(400, "ExpiredToken", "Token has expired"), None)
    r.until_settled(rounds=1)
    row = r.row(first_marker(r))
    assert (row["state"], row["attempts"]) == ("published", 1), row["last_error"]
    assert r.made(r.names[0], row["post_id"]) == {"": 1}


@pytest.mark.parametrize("kind", ("too_large", "invalid"))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_post_the_platform_refuses_fails_at_once_without_a_retry(platform, kind, rig):
    r = rig(platform)
    step = "insert" if platform == "youtube" and kind == "invalid" else r.step()
    answer = Answer(413, "Request Entity Too Large") if kind == "too_large" else invalid(platform)
    r.fakes[0].fail(step, answer)
    r.until_settled(rounds=2)
    row = r.row(first_marker(r))
    assert (row["state"], row["attempts"]) == ("failed", 1), (row["state"], row["last_error"])
    assert not r.made(r.names[0], row["post_id"])
    expected_status = 413 if kind == "too_large" else answer.status
    assert row["http_status"] in (expected_status, None), row["http_status"]
    limit = len(RECIPIENTS) if platform == "whatsapp" else 1
    assert len(r.sent(r.names[0])) <= limit


@pytest.mark.parametrize("later", (0, 2))
def test_mastodon_a_5xx_after_the_status_was_made_is_settled_by_its_key_within_the_hour_then_by_the_timeline(
        later, rig):
    """Mastodon made the status and answered 503. The retry resends under the same Idempotency-Key,
    which the server honours for one hour only: past it (`later` = 2 h), the adapter must find the
    status on the account's timeline instead of posting it again."""
    r = rig("mastodon")
    name, marker = r.names[0], first_marker(r)
    fake = r.fakes[0]
    made_once: list[Seen] = []
    r.fleet.intercept(name, "POST", r"/api/v1/statuses",
                      lambda seen, given: None if made_once or made_once.append(seen) else
                      Answer(503, {"error": "Service Unavailable"}))
    r.dispatch()
    assert r.row(marker)["state"] == "retrying"
    shift = timedelta(hours=later)
    fake.clock = lambda: time.time() + shift.total_seconds()
    r.daemon.dispatcher.adapter_for(name).clock = lambda: datetime.now(timezone.utc) + shift
    r.until_settled()
    assert r.row(marker)["state"] == "published"
    assert r.made(name, marker) == {"": 1}
    assert len(fake.statuses) == 1


# --- the core's safety nets under an adapter's slip ----------------------------------------------


def _engine(workspace: Workspace, adapter: Any) -> Any:
    from publisher.db import Database
    from publisher.sync import Syncer
    from tests.integration.conftest import Engine

    settings = workspace.settings()
    db = Database(settings.database)
    db.migrate()
    engine = Engine(workspace, settings, db, Syncer(db, settings))
    engine.adapters = {"latihan": adapter, "arsip": adapter}
    engine.syncer.run()
    return engine


def test_a_receipt_an_adapter_built_from_a_malformed_answer_is_stored_as_text_and_the_delivery_settles(workspace):
    """Mastodon once answered `{"id": [...], "url": {...}}` through to the record, whose write then
    failed: the delivery stayed `sending`, reconciled every lease forever (found by the canary)."""
    from adapters.base import Receipt
    from tests.integration.conftest import ScriptedAdapter

    workspace.post("p.toml", 'to = ["latihan"]\ntext = "Halo"\n')
    engine = _engine(workspace, ScriptedAdapter([Receipt(["not", "an", "id"], {"not": "a url"})]))  # type: ignore[arg-type]
    try:
        engine.run_until_idle(engine.dispatcher())
        row = engine.one(post_id="p")
        assert (row["state"], row["platform_id"], row["url"]) == ("published", "['not', 'an', 'id']", None)
    finally:
        engine.close()


def test_one_delivery_whose_reconciliation_fails_does_not_hold_up_the_others(workspace, monkeypatch):
    from publisher.dispatch import Dispatcher
    from tests.integration.conftest import LookupAdapter

    workspace.post("a.toml", 'to = ["latihan"]\ntext = "Satu"\n')
    workspace.post("b.toml", 'to = ["arsip"]\ntext = "Dua"\n')
    engine = _engine(workspace, LookupAdapter([TimeoutError("never called")], lookup_answer=None))
    try:
        past = datetime.now(timezone.utc) - timedelta(minutes=5)
        with engine.db.write() as conn:  # both were being sent by a daemon that died
            conn.execute(update(D).values(state="sending", lease_owner="dead:1:x", lease_expires=past, attempts=1,
                                          claim_token=1))
        real = Dispatcher._reconcile
        first = min(r["id"] for r in engine.deliveries())

        def reconcile(self, row, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if row["id"] == first:
                raise RuntimeError("disk I/O error while recording")
            return real(self, row, *args, **kwargs)

        monkeypatch.setattr(Dispatcher, "_reconcile", reconcile)
        engine.dispatcher().reap()
        states = {r["id"]: r["state"] for r in engine.deliveries()}
        assert states[first] == "sending"  # its lease was taken over: tried again when that one runs out
        assert [s for i, s in states.items() if i != first] == ["pending"]  # not found: safe to send again
    finally:
        engine.close()
