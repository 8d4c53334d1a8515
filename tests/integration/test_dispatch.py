"""Dispatch: every state transition of DESIGN.md §4, checked in the database and the audit log."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from adapters.base import AuthExpired, MaybeSent, RateLimited, Receipt, Rejected, Transient
from publisher import store
from publisher.models import utcnow
from tests.integration.conftest import LookupAdapter, ScriptedAdapter

D = store.D
OK = Receipt("post-123", "https://example.go.id/p/123")


def due_post(workspace, name="p", accounts=("latihan",), text="Halo"):
    to = ", ".join(f'"{a}"' for a in accounts)
    workspace.post(f"{name}.toml", f'to = [{to}]\ntext = "{text}"\n')


def make_due(e, **values):
    """Move every delivery's time into the past (and its deadline after now) unless told otherwise."""
    now = utcnow()
    defaults = {"due_at": now - timedelta(seconds=1), "ready_at": now - timedelta(seconds=1),
                "deadline": now + timedelta(hours=1)}
    with e.db.write() as conn:
        conn.execute(update(D).values(**{**defaults, **values}))


def test_a_due_delivery_is_claimed_sent_and_published_with_its_receipt(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([OK])
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    row = e.one(post_id="p")
    assert (row["state"], row["platform_id"], row["url"], row["attempts"]) == ("published", "post-123", OK.url, 1)
    assert row["lease_owner"] is None and row["published_at"] is not None
    assert e.event_names(row["id"]) == ["created", "claimed", "attempt", "published"]
    message, key, attempt = e.adapters["latihan"].calls[0]
    assert (message.text, key, attempt) == ("Halo", row["key"], 1)


def test_nothing_is_sent_before_its_time(workspace, engine):
    workspace.post("nanti.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Nanti"\n')
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([OK])
    e.syncer.run()
    assert e.dispatcher().dispatch() == 0
    assert e.adapters["latihan"].calls == []
    assert e.one(post_id="nanti")["state"] == "pending"


def test_sending_is_committed_before_the_request_leaves(workspace, engine):
    due_post(workspace)
    e = engine()
    seen = {}

    def look(message, job):
        seen["state"] = e.one(post_id="p")["state"]
        return OK

    e.adapters["latihan"] = ScriptedAdapter([look])
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    assert seen["state"] == "sending"


def test_a_transient_error_schedules_a_retry_with_backoff(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([Transient("HTTP 503", http_status=503)])
    e.syncer.run()
    before = utcnow()
    e.run_until_idle(e.dispatcher())
    row = e.one(post_id="p")
    assert row["state"] == "retrying"
    # first_delay is 1s: the jittered wait after attempt 1 lies within [0.5s, 1s].
    assert before + timedelta(seconds=0.5) <= row["ready_at"] <= utcnow() + timedelta(seconds=1)
    retry = e.events(delivery_id=row["id"])[-1]
    assert (retry["event"], retry["http_status"], retry["attempt"]) == ("retry", 503, 1)


def test_attempts_used_up_end_in_failed(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([Transient("HTTP 502", http_status=502)])
    e.syncer.run()
    d = e.dispatcher()
    for _ in range(3):  # attempts = 3 in the test settings
        make_due(e)
        e.run_until_idle(d)
    row = e.one(post_id="p")
    assert (row["state"], row["attempts"]) == ("failed", 3)
    assert "gave up after 3 attempts" in row["last_error"]
    assert len(e.adapters["latihan"].calls) == 3


def test_a_platform_wait_longer_than_the_backoff_wins_and_paces_the_account(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([RateLimited("HTTP 429", retry_after=120, http_status=429)])
    e.syncer.run()
    before = utcnow()
    e.run_until_idle(e.dispatcher())
    row = e.one(post_id="p")
    assert row["state"] == "retrying"
    assert row["ready_at"] >= before + timedelta(seconds=120)
    assert e.account("latihan")["not_before"] >= before + timedelta(seconds=120)
    assert json.loads(e.events(delivery_id=row["id"])[-1]["detail"])["platform_wait_s"] == 120


def test_a_retry_that_would_start_after_the_deadline_is_held_as_expired(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([RateLimited("HTTP 429", retry_after=7200, http_status=429)])
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    row = e.one(post_id="p")
    assert (row["state"], row["hold_reason"]) == ("held", "expired")


def test_a_delivery_overdue_beyond_max_lateness_at_claim_time_is_held_not_sent(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([OK])
    e.syncer.run()
    make_due(e, due_at=utcnow() - timedelta(hours=3), deadline=utcnow() - timedelta(hours=2))
    e.run_until_idle(e.dispatcher())
    row = e.one(post_id="p")
    assert (row["state"], row["hold_reason"]) == ("held", "expired")
    assert e.adapters["latihan"].calls == []
    assert json.loads(e.events(delivery_id=row["id"])[-1]["detail"])["reason"] == "expired"


def test_rejected_credentials_pause_the_delivery_and_the_account(workspace, engine):
    due_post(workspace, "a")
    due_post(workspace, "b", text="Kedua")
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([AuthExpired("HTTP 401: token expired", http_status=401), OK])
    e.syncer.run()
    d = e.dispatcher()
    e.run_until_idle(d)
    assert e.one(post_id="a")["state"] == "paused"
    assert e.one(post_id="b")["state"] == "pending"  # waits behind the paused account
    assert e.account("latihan")["paused"] is True
    assert len(e.adapters["latihan"].calls) == 1


def test_a_refused_post_fails_for_good(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([Rejected("HTTP 422: too long", http_status=422)])
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    row = e.one(post_id="p")
    assert (row["state"], row["http_status"], row["last_error"]) == ("failed", 422, "HTTP 422: too long")


def test_no_answer_without_a_lookup_leaves_the_delivery_unknown(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([MaybeSent("no answer within 5s")])
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    assert e.one(post_id="p")["state"] == "unknown"


def test_no_answer_with_a_lookup_that_finds_the_post_settles_it_published(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = LookupAdapter([MaybeSent("no answer")], lookup_answer=OK)
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    row = e.one(post_id="p")
    assert (row["state"], row["platform_id"]) == ("published", "post-123")
    assert e.adapters["latihan"].lookups == 1


def test_no_answer_with_a_lookup_that_finds_nothing_sends_again(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = LookupAdapter([MaybeSent("no answer"), OK], lookup_answer=None)
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    row = e.one(post_id="p")
    assert row["state"] == "published"
    assert "reconciled" in e.event_names(row["id"])
    assert len(e.adapters["latihan"].calls) == 2


def test_an_unexpected_error_after_a_request_left_is_unknown_not_resent(workspace, engine):
    due_post(workspace)
    e = engine()

    def explode(message, job):
        adapter = e.adapters["latihan"]
        adapter.http.sent += 1  # a request went out...
        raise KeyError("data")  # ...and the answer could not be read

    e.adapters["latihan"] = ScriptedAdapter([explode])
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    assert e.one(post_id="p")["state"] == "unknown"


def test_an_unexpected_error_before_any_request_fails_without_guessing(workspace, engine):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([ValueError("bug before sending")])
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    row = e.one(post_id="p")
    assert row["state"] == "failed"
    assert "before sending" in row["last_error"]


def test_per_account_deliveries_go_one_at_a_time_in_due_order_and_accounts_in_parallel(workspace, engine):
    workspace.post("a1.toml", 'to = ["latihan"]\ntext = "A1"\n')
    workspace.post("a2.toml", 'to = ["latihan"]\ntext = "A2"\n')
    workspace.post("b1.toml", 'to = ["arsip"]\ntext = "B1"\n')
    e = engine()
    e.syncer.run()
    now = utcnow()
    with e.db.write() as conn:
        for post, age in (("a1", 30), ("a2", 20), ("b1", 10)):
            conn.execute(update(D).where(D.c.post_id == post).values(ready_at=now - timedelta(seconds=age)))
        claimed = store.claim_batch(conn, owner="o", now=now, lease=timedelta(seconds=30), limit=10)
    assert sorted(r["post_id"] for r in claimed) == ["a1", "b1"]  # a2 waits behind a1
    with e.db.write() as conn:
        assert store.claim_batch(conn, owner="o2", now=now, lease=timedelta(seconds=30), limit=10) == []


def test_a_worker_that_lost_its_lease_changes_nothing(workspace, engine):
    due_post(workspace)
    e = engine()
    e.syncer.run()
    now = utcnow()
    with e.db.write() as conn:
        (row,) = store.claim_batch(conn, owner="slow", now=now, lease=timedelta(seconds=1), limit=1)
    stale = store.Lease(row["id"], "slow", row["claim_token"])
    later = now + timedelta(seconds=5)
    with e.db.write() as conn:
        (expired,) = store.expired_leases(conn, later, store.State.CLAIMED)
        fresh = store.take_over(conn, expired, owner="other", now=later, lease=timedelta(seconds=30))
    assert fresh is not None and fresh.token == stale.token + 1
    with e.db.write() as conn:
        assert not store.fenced(conn, stale, "published", now=later, state=store.State.PUBLISHED, row=row)
    after = e.one(post_id="p")
    assert (after["state"], after["lease_owner"]) == ("claimed", "other")
    assert "published" not in e.event_names(row["id"])


def test_an_expired_claim_goes_back_to_pending(workspace, engine):
    due_post(workspace)
    e = engine()
    e.syncer.run()
    with e.db.write() as conn:
        store.claim_batch(conn, owner="dead", now=utcnow(), lease=timedelta(seconds=1), limit=1)
    assert e.dispatcher(owner="alive").reap() == 0  # the lease still holds
    assert e.dispatcher(owner="alive").reap(now=utcnow() + timedelta(seconds=5)) == 1
    row = e.one(post_id="p")
    assert (row["state"], row["lease_owner"]) == ("pending", None)
    assert e.event_names(row["id"])[-1] == "released"


@pytest.mark.parametrize(("adapter", "expected"), [
    (lambda: LookupAdapter([OK], lookup_answer=OK), "published"),
    (lambda: LookupAdapter([OK], lookup_answer=None), "pending"),
    (lambda: ScriptedAdapter([OK]), "unknown"),
], ids=["lookup-finds-it", "lookup-finds-nothing", "no-lookup"])
def test_a_delivery_left_sending_by_a_dead_daemon_is_reconciled_never_blindly_resent(workspace, engine, adapter,
                                                                                      expected):
    due_post(workspace)
    e = engine()
    e.adapters["latihan"] = adapter()
    e.syncer.run()
    now = utcnow()
    with e.db.write() as conn:
        (row,) = store.claim_batch(conn, owner="dead", now=now, lease=timedelta(seconds=1), limit=1)
        lease = store.Lease(row["id"], "dead", row["claim_token"])
        store.fenced(conn, lease, "attempt", now=now, state=store.State.SENDING, row=row, attempts=1,
                     lease_expires=now + timedelta(seconds=1))
    e.dispatcher(owner="alive").reap(now=now + timedelta(seconds=5))
    after = e.one(post_id="p")
    assert after["state"] == expected
    assert e.adapters["latihan"].calls == []  # reconciliation never publishes


def test_min_interval_paces_an_account(workspace, engine):
    workspace.add_settings('\n[accounts.pelan]\nplatform = "outbox"\nmin_interval = "10m"\n')
    workspace.post("a.toml", 'to = ["pelan"]\ntext = "A"\n')
    workspace.post("b.toml", 'to = ["pelan"]\ntext = "B"\n')
    e = engine()
    e.syncer.run()
    e.run_until_idle(e.dispatcher())
    states = sorted(r["state"] for r in e.deliveries())
    assert states == ["pending", "published"]
    assert e.account("pelan")["not_before"] >= utcnow() + timedelta(minutes=9)


def test_accounts_on_one_platform_share_kept_alive_connections(workspace, engine):
    """500 regional accounts on one platform must not open 500 connections (and TLS handshakes):
    every account's session sends through the dispatcher's one pool, each with its own headers."""
    from tests.support.fakeserver import Answer, FakeServer

    with FakeServer() as server:
        for account in ("kota", "kabupaten", "provinsi"):
            server.route("POST", f"/{account}", Answer(200, {"id": f"w-{account}"}))
        workspace.write_settings("[daemon]\nconcurrency = 1\n" + "".join(
            f'\n[accounts.{a}]\nplatform = "webhook"\nurl = "{server.url}/{a}"\nsecret = "rahasia-{a}"\n'
            for a in ("kota", "kabupaten", "provinsi")))
        due_post(workspace, accounts=("kota", "kabupaten", "provinsi"))
        e = engine()
        e.syncer.run()
        make_due(e)
        e.run_until_idle(e.dispatcher())
        posts = server.requests
    assert sorted(r.path for r in posts) == ["/kabupaten", "/kota", "/provinsi"]
    assert [r.state for r in e.deliveries()] == ["published"] * 3
    assert len({r.client_port for r in posts}) == 1  # one connection, kept alive across accounts
    assert len({r.header("X-Siar-Signature") for r in posts}) == 3  # each signed with its own secret


def test_a_post_changed_while_its_delivery_was_out_undoes_the_sending_mark_and_goes_out_as_it_is_now(
        workspace, engine):
    """`sending` is marked and the post read back in one statement; a changed post rolls the
    mark back (no `attempt` in the audit for it) before the delivery takes the new content."""
    due_post(workspace, text="Halo")
    e = engine()
    e.adapters["latihan"] = ScriptedAdapter([OK])
    e.syncer.run()
    with e.db.write() as conn:
        store.claim_batch(conn, owner="dead", now=utcnow(), lease=timedelta(seconds=1), limit=1)
    due_post(workspace, text="Halo, jadwal diperbarui")
    e.syncer.run()  # the delivery is out: sync leaves it as it is
    row = e.one(post_id="p")
    assert (row["state"], json.loads(row["message"])["text"]) == ("claimed", "Halo")
    e.dispatcher(owner="alive").reap(now=utcnow() + timedelta(seconds=5))

    e.run_until_idle(e.dispatcher(owner="alive"))

    row = e.one(post_id="p")
    assert row["state"] == "published"
    assert [message.text for message, _key, _attempt in e.adapters["latihan"].calls] == ["Halo, jadwal diperbarui"]
    assert e.event_names(row["id"]) == ["created", "claimed", "released", "claimed", "updated", "attempt", "published"]
