"""Model-based test (issue 4, item 7): sync, claim, send, crash, lease expiry, cancel, edit, retry
and resolve in any order, against a fake platform that counts what it really accepted.

Hypothesis drives a `RuleBasedStateMachine`: each rule does one thing a daemon, the clock, a
platform or a person can do; after every step the invariants are checked, and at the end of
every run the daemon is let loose with the clock far ahead to show that nothing waits forever.

The fake platform is two accounts: `latihan` can look a post up after a lost answer (as
outbox, Mastodon or Bluesky can); `arsip` cannot (its unsettled sends must become `unknown`).
A `MaybeSent` is modelled both ways: the post was accepted and the answer lost, or the request
never arrived. Invariants: at most one accepted send per delivery key unless a person answered
"not published" for a post the platform had; nothing is `published` that the platform does not
hold (unless a person said so); what reaches a platform is what the post files say at that moment
(never a removed post, an old text, an account taken out of `to`); states and lease fields agree;
a paused account always has a paused delivery a person can retry; the audit chain verifies; and
at the end, with the clock far ahead, every delivery is settled or in a person's queue.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import select

from adapters.base import (
    AuthExpired,
    BaseAdapter,
    Job,
    Limits,
    MaybeSent,
    Message,
    RateLimited,
    Receipt,
    Rejected,
    Transient,
)
from publisher import audit, operator, store
from publisher.db import Database
from publisher.dispatch import CountingSession, Dispatcher
from publisher.models import utcnow
from publisher.posts import PostSpec
from publisher.states import IN_FLIGHT, NEEDS_PERSON, READY, TERMINAL, State
from publisher.sync import Syncer
from tests.conftest import Workspace

D, A, P = store.D, store.A, store.P

LOOKS_UP, BLIND = "latihan", "arsip"
SLOTS = ("a", "b", "c")
TEXTS = ("Halo warga", "Jadwal vaksin")  # two texts over three files: copies meet the duplicate guard
ANSWERS = ("ok", "transient", "rate_limited", "auth_expired", "rejected", "maybe_accepted", "maybe_lost")
LEASE_EXPIRED = timedelta(minutes=5)  # the test settings' lease is 30s
FAR_AHEAD = timedelta(days=2)
SETTLED = {s.value for s in (*TERMINAL, *NEEDS_PERSON)}


class FakePlatform:
    """What the platforms really hold: one count per idempotency key, for every accepted publish.

    Every request that arrives is also compared with the post as the database has it at that
    moment: a removed post, an account taken out of `to`, or text the post no longer has is a
    wrong send, even when it is the first one.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.accepted: Counter[str] = Counter()
        self.wrong: list[str] = []

    def arrive(self, account: str, message: Message, key: str) -> None:
        with self.db.read() as conn:
            post = conn.execute(select(P.c.spec, P.c.removed).where(P.c.id == message.post_id)).one()
        spec = PostSpec.from_json(post.spec)
        if post.removed:
            self.wrong.append(f"{key}: post {message.post_id!r} was sent after its file was removed")
        elif account not in spec.to:
            self.wrong.append(f"{key}: post {message.post_id!r} was sent to {account}, no longer in its `to`")
        elif message.text != spec.content_for(account).text:
            self.wrong.append(f"{key}: sent {message.text!r} but the post now says {spec.content_for(account).text!r}")

    def accept(self, key: str) -> Receipt:
        self.accepted[key] += 1
        return Receipt(f"id-{key}", f"https://platform.test/{key}")


class ModelAdapter(BaseAdapter):
    """Answers each publish as the rule chose (success when nothing was chosen)."""

    platform = "scripted"
    limits = Limits(media_max=10)

    def __init__(self, name: str, fake: FakePlatform) -> None:
        super().__init__({"name": name}, CountingSession())
        self.fake = fake
        self.answers: list[str] = []

    def publish(self, message: Message, job: Job) -> Receipt:
        answer = self.answers.pop(0) if self.answers else "ok"
        if answer != "maybe_lost":
            self.fake.arrive(self.name, message, job.key)
        if answer == "ok":
            return self.fake.accept(job.key)
        if answer == "transient":
            raise Transient("HTTP 503", http_status=503)
        if answer == "rate_limited":
            raise RateLimited("HTTP 429", retry_after=2, http_status=429)
        if answer == "auth_expired":
            raise AuthExpired("HTTP 401: token expired", http_status=401)
        if answer == "rejected":
            raise Rejected("HTTP 422: refused", http_status=422)
        if answer == "maybe_accepted":
            self.fake.accept(job.key)
            raise MaybeSent("connection reset after the platform created the post")
        assert answer == "maybe_lost", answer
        raise MaybeSent("connection reset before the request arrived")

    def whoami(self) -> str:
        return self.name


class LookupModelAdapter(ModelAdapter):
    def lookup(self, message: Message, job: Job) -> Receipt | None:
        if self.fake.accepted[job.key]:
            return Receipt(f"id-{job.key}", f"https://platform.test/{job.key}")
        return None


@lru_cache(maxsize=1)
def _template_database() -> bytes:
    """A migrated, empty SQLite database, built once: each example starts from a copy."""
    folder = _scratch("siar-model-template-")
    try:
        db = Database(f"sqlite:///{folder / 'siar.db'}")
        db.migrate()
        db.dispose()
        return (folder / "siar.db").read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _scratch(prefix: str) -> Path:
    """A scratch folder, in memory where the system has one: a run commits thousands of small
    transactions, each fsynced (`synchronous=FULL`)."""
    shm = Path("/dev/shm")
    memory = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=memory))


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class DeliveryModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = _scratch("siar-model-")
        self.workspace = Workspace(self.tmp / "config")
        self.workspace.state.mkdir()
        (self.workspace.state / "siar.db").write_bytes(_template_database())
        # A post that stays: removing the others is then never a "suddenly empty" folder.
        self.workspace.post("tetap.toml", 'at = 2099-01-01T08:00:00Z\nto = ["latihan", "arsip"]\ntext = "Tetap"\n')
        self.settings = self.workspace.settings()
        self.db = Database(self.settings.database)
        self.syncer = Syncer(self.db, self.settings, actor="model")
        self.fake = FakePlatform(self.db)
        self.adapters: dict[str, ModelAdapter] = {
            LOOKS_UP: LookupModelAdapter(LOOKS_UP, self.fake),
            BLIND: ModelAdapter(BLIND, self.fake),
        }
        self.dispatcher = Dispatcher(
            self.db, self.settings, owner="model-daemon", on_settled=self.syncer.on_settled,
            adapter_override=lambda account: self.adapters[account.name],
        )
        self.t0 = utcnow().replace(microsecond=0)
        self.mtime = 0  # each write gets a later mtime, so sync always sees it
        self.stale: list[store.Lease] = []  # leases of crashed workers
        self.crashes = 0
        # A person may answer "not published" for a post the platform has: a resend is then theirs.
        self.allowed_extra: Counter[str] = Counter()
        self.resolved_published: set[int] = set()  # published on a person's word, not the platform's

    # --- helpers -----------------------------------------------------------------------------

    def rows(self) -> list[Any]:
        with self.db.read() as conn:
            return list(conn.execute(select(D).order_by(D.c.id)).mappings())

    def pick(self, index: int) -> Any | None:
        rows = self.rows()
        return rows[index % len(rows)] if rows else None

    # --- the files and sync ------------------------------------------------------------------

    @rule(slot=st.sampled_from(SLOTS), text=st.sampled_from(TEXTS),
          to=st.sampled_from([(LOOKS_UP,), (BLIND,), (LOOKS_UP, BLIND)]),
          when=st.sampled_from(["now", "past", "later", "repeat", "broken"]))
    def write_post(self, slot: str, text: str, to: tuple[str, ...], when: str) -> None:
        """A new post, or an edit of one (content, targets, time), or a file broken by an edit."""
        targets = ", ".join(f'"{name}"' for name in to)
        body = f'to = [{targets}]\ntext = "{text}"\n'
        if when == "past":
            body += f"at = {_iso(self.t0 - timedelta(minutes=5))}\n"
        elif when == "later":
            body += f"at = {_iso(self.t0 + timedelta(minutes=20))}\n"
        elif when == "repeat":
            body += f'repeat = "*/15 * * * *"\nuntil = {_iso(self.t0 + timedelta(minutes=50))}\n'
        elif when == "broken":
            body += "warna = [\n"
        path = self.workspace.root / "posts" / f"{slot}.toml"
        path.write_text(body)
        self.mtime += 1
        os.utime(path, ns=(0, 1_000_000_000_000_000_000 + self.mtime * 1_000_000_000))
        self.syncer.run()  # the daemon syncs every few seconds: the file is the desired state

    @rule(slot=st.sampled_from(SLOTS))
    def remove_post(self, slot: str) -> None:
        (self.workspace.root / "posts" / f"{slot}.toml").unlink(missing_ok=True)
        self.syncer.run()

    # --- the daemon and the platform -----------------------------------------------------------

    @rule(first=st.sampled_from(ANSWERS), second=st.sampled_from(ANSWERS), ahead=st.sampled_from([0, 10, 3600]))
    def send(self, first: str, second: str, ahead: int) -> None:
        """One dispatch pass (at most one send per account); each account's platform answers as chosen."""
        self.adapters[LOOKS_UP].answers = [first]
        self.adapters[BLIND].answers = [second]
        self.dispatcher.dispatch(now=utcnow() + timedelta(seconds=ahead))
        assert self.dispatcher.drain(timeout=30)
        for adapter in self.adapters.values():
            adapter.answers = []

    @rule(stage=st.sampled_from(["claimed", "sending", "sending_accepted"]))
    def crash(self, stage: str) -> None:
        """A daemon claims, maybe commits `sending`, maybe gets its post accepted, then dies."""
        now = utcnow() + timedelta(seconds=10)
        self.crashes += 1
        owner = f"crashed-{self.crashes}"
        with self.db.write() as conn:
            claimed = store.claim_batch(conn, owner=owner, now=now, lease=self.settings.lease, limit=1)
        if not claimed:
            return
        row = claimed[0]
        lease = store.Lease(int(row["id"]), owner, int(row["claim_token"]))
        self.stale.append(lease)
        if stage == "claimed":
            return
        attempt = int(row["attempts"]) + 1
        with self.db.write() as conn:
            assert store.fenced(conn, lease, "attempt", now=now, state=State.SENDING, attempt=attempt, row=row,
                                attempts=attempt, lease_expires=now + self.settings.lease)
        if stage == "sending_accepted":
            self.fake.accept(row["key"])

    @rule(expired=st.booleans())
    def reap(self, expired: bool) -> None:
        """The lease reaper, now or once every lease taken so far has run out; then the crashed
        workers that were only frozen wake up."""
        self.dispatcher.reap(now=utcnow() + (LEASE_EXPIRED if expired else timedelta(0)))
        self._zombies_wake()

    def _zombies_wake(self) -> None:
        """A frozen worker comes back and records `published`: once its lease was taken over,
        its write must change nothing."""
        for lease in list(self.stale):
            with self.db.write() as conn:
                row = conn.execute(select(D).where(D.c.id == lease.delivery_id)).mappings().one()
                if (row["lease_owner"], row["claim_token"]) == (lease.owner, lease.token):
                    continue  # still its own lease: nobody took over yet
                assert not store.fenced(conn, lease, "published", now=utcnow(), state=State.PUBLISHED, row=row,
                                        platform_id="zombie", published_at=utcnow())
                after = conn.execute(select(D).where(D.c.id == lease.delivery_id)).mappings().one()
                assert dict(after) == dict(row)
            self.stale.remove(lease)

    # --- a person ------------------------------------------------------------------------------

    @rule(index=st.integers(0, 30))
    def cancel(self, index: int) -> None:
        row = self.pick(index)
        if row is not None:
            with self.db.write() as conn:
                operator.cancel(conn, str(row["id"]), actor="person")

    @rule(index=st.integers(0, 30))
    def retry(self, index: int) -> None:
        row = self.pick(index)
        if row is not None:
            with self.db.write() as conn:
                operator.retry(conn, self.settings, str(row["id"]), actor="person")

    @rule(index=st.integers(0, 30), truthful=st.booleans())
    def resolve(self, index: int, truthful: bool) -> None:
        """A person answers for a delivery, having looked at the platform (or got it wrong)."""
        row = self.pick(index)
        if row is None:
            return
        there = self.fake.accepted[row["key"]] > 0
        says_published = there if truthful else not there
        with self.db.write() as conn:
            change = operator.resolve(conn, self.settings, str(row["id"]),
                                      published_url="https://platform.test/by-hand" if says_published else None,
                                      actor="person")
        if change.after is None:
            assert row["state"] != State.UNKNOWN.value or change.note
            return
        if says_published:
            self.resolved_published.add(int(row["id"]))
        elif there:
            self.allowed_extra[row["key"]] += 1

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def never_twice(self) -> None:
        """At most one accepted send per delivery key (post, account, occurrence), unless a
        person said "not published" while the platform had it."""
        for key, count in self.fake.accepted.items():
            assert count <= 1 + self.allowed_extra[key], f"{key} accepted {count} times"

    @invariant()
    def what_goes_out_is_what_the_files_say(self) -> None:
        """A change synced while a delivery was out (claimed, sending, unknown) still applies once
        it is back in line: no old text, no removed post, no account taken out of `to`."""
        assert not self.fake.wrong, self.fake.wrong

    @invariant()
    def published_means_the_platform_has_it(self) -> None:
        for row in self.rows():
            if row["state"] == State.PUBLISHED.value and row["id"] not in self.resolved_published:
                assert self.fake.accepted[row["key"]] >= 1, f"delivery {row['id']} published but never accepted"

    @invariant()
    def states_and_leases_are_consistent(self) -> None:
        valid = {s.value for s in State}
        in_flight = {s.value for s in IN_FLIGHT}
        for row in self.rows():
            where = f"delivery {row['id']} ({row['state']})"
            assert row["state"] in valid, where
            if row["state"] in in_flight:
                assert row["lease_owner"] is not None and row["lease_expires"] is not None, where
            else:
                assert row["lease_owner"] is None and row["lease_expires"] is None, where
            assert (row["hold_reason"] is not None) == (row["state"] == State.HELD.value), where
            assert (row["published_at"] is not None) == (row["state"] == State.PUBLISHED.value), where
            assert 0 <= row["attempts"] <= self.settings.retry.attempts, where
            assert row["key"] == store.delivery_key(row["post_id"], row["account"], row["occurrence"]), where

    @invariant()
    def a_paused_account_has_a_paused_delivery_a_person_can_retry(self) -> None:
        """Else `siar retry` reaches nothing that resumes it, and its deliveries wait forever."""
        with self.db.read() as conn:
            paused = set(conn.execute(select(A.c.name).where(A.c.paused.is_(True))).scalars())
            holding = set(conn.execute(select(D.c.account).where(D.c.state == State.PAUSED.value)).scalars())
        assert paused <= holding, f"accounts paused with no paused delivery: {sorted(paused - holding)}"

    @invariant()
    def the_audit_chain_verifies(self) -> None:
        with self.db.read() as conn:
            _, broken = audit.verify(conn)
        assert broken is None, str(broken)

    # --- the end of every run: nothing waits forever ------------------------------------------

    def teardown(self) -> None:
        try:
            self._everything_finds_a_way_out()
        finally:
            self.dispatcher.stop(5)
            self.db.dispose()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _everything_finds_a_way_out(self) -> None:
        """With the clock far ahead and the platforms answering, every delivery ends published,
        cancelled, or in a person's queue (failed, unknown, paused, held); only deliveries behind
        a paused account (which a person sees and can retry) may still wait."""
        far = utcnow() + FAR_AHEAD
        for _ in range(40):
            reaped = self.dispatcher.reap(now=far)
            started = self.dispatcher.dispatch(now=far)
            assert self.dispatcher.drain(timeout=30)
            if not reaped and not started:
                break
        with self.db.read() as conn:
            paused = set(conn.execute(select(A.c.name).where(A.c.paused.is_(True))).scalars())
        ready = {s.value for s in READY}
        for row in self.rows():
            if row["state"] in ready and (row["account"] in paused or row["ready_at"] > far):
                continue  # behind a paused account a person sees, or not due yet (`tetap`, in 2099)
            assert row["state"] in SETTLED, f"delivery {row['id']} still {row['state']} after settling"
        self.never_twice()
        self.what_goes_out_is_what_the_files_say()
        self.published_means_the_platform_has_it()
        self.states_and_leases_are_consistent()
        self.a_paused_account_has_a_paused_delivery_a_person_can_retry()
        self.the_audit_chain_verifies()


DeliveryModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("SIAR_MODEL_EXAMPLES", "60")),
    stateful_step_count=30,
    deadline=None,
    report_multiple_bugs=False,  # a failure is shrunk on its own: minutes, not many
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestDeliveryModel = DeliveryModel.TestCase
