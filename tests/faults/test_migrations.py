"""Migrations (issue 4, item 10): a database built from the migrations matches the models, and a
database made by an earlier release upgrades revision by revision with its data intact.

The data is written at the first revision with plain SQL in that revision's columns — what a
database from the first release holds — and checked after every later revision, so the test keeps
working, unchanged, as revisions are added. At the head, the current code must be able to use it:
the audit chain verifies, the old receipts are readable, and the waiting delivery goes out.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, DateTime, Integer, String, Text, column, select, table, text
from sqlmodel import SQLModel

from adapters.base import Receipt
from publisher import audit
from publisher.db import Database
from publisher.dispatch import Dispatcher
from publisher.migrate import alembic_config, current, for_this_backend, upgrade
from publisher.posts import PostSpec
from tests.integration.conftest import ScriptedAdapter, backend  # noqa: F401 (fixture)


@pytest.fixture
def url(backend, tmp_path) -> str:
    return backend or f"sqlite:///{tmp_path / 'siar.db'}"


def revisions(db: Database) -> list[str]:
    """Every revision, oldest first (one line of history: no branches)."""
    script = ScriptDirectory.from_config(alembic_config(db.engine))
    assert len(script.get_heads()) == 1, "migrations must form one line, with one head"
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def model_diffs(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "compare_server_default": True,
            "include_object": for_this_backend(conn.dialect.name)})
        return compare_metadata(context, SQLModel.metadata)


def test_a_database_built_from_the_migrations_matches_the_models(url):
    db = Database(url)
    try:
        db.migrate()
        assert model_diffs(db) == []
        assert current(db.engine) == revisions(db)[-1]
        db.migrate()  # again: nothing to do, nothing broken
        assert current(db.engine) == revisions(db)[-1]
        assert model_diffs(db) == []
    finally:
        db.dispose()


# --- the first release's data, in the first revision's columns ------------------------------------

NOW = datetime.now(timezone.utc).replace(microsecond=0)

POSTS = table("post", column("id", String), column("path", String), column("content_hash", String),
              column("fingerprint", String), column("spec", Text), column("removed", Boolean),
              column("created_at", DateTime), column("updated_at", DateTime))
DELIVERIES = table(
    "delivery", *(column(n, String) for n in ("post_id", "account", "platform", "occurrence", "key", "state",
                                              "hold_reason", "message", "message_hash", "lease_owner",
                                              "checkpoint", "platform_id", "url", "last_error")),
    *(column(n, Integer) for n in ("id", "attempts", "claim_token", "http_status")),
    *(column(n, DateTime) for n in ("due_at", "ready_at", "deadline", "lease_expires", "created_at",
                                    "updated_at", "published_at")),
)
ACCOUNTS = table("account", column("name", String), column("platform", String), column("paused", Boolean),
                 column("paused_reason", String), column("not_before", DateTime),
                 column("last_published_at", DateTime))
EVENTS = table("audit_event", *(column(n, String) for n in ("post_id", "account", "platform", "event",
                                                            "platform_id", "error", "actor", "detail",
                                                            "prev_hash", "hash")),
               *(column(n, Integer) for n in ("seq", "delivery_id", "attempt", "http_status")),
               column("at", DateTime))
HEAD = table("audit_head", column("id", Integer), column("seq", Integer), column("hash", String))
DAEMONS = table("daemon", column("owner", String), column("host", String), column("pid", Integer),
                column("started_at", DateTime), column("seen_at", DateTime), column("last_sync_at", DateTime),
                column("stopped_at", DateTime))


def naive(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(tzinfo=None)


def spec_json(post_id: str, to: list[str], text_: str, at: datetime) -> str:
    return json.dumps({
        "id": post_id, "path": f"{post_id}.toml", "at": at.isoformat(), "to": to,
        "content": {"text": text_, "link": None, "title": None, "media": []}, "variants": {},
        "repeat": None, "until": None, "max_lateness": None, "allow_repeat": False,
    }, sort_keys=True)


def message(text_: str) -> str:
    return json.dumps({"link": None, "media": [], "text": text_, "title": None}, sort_keys=True,
                      separators=(",", ":"))


def first_release_data() -> dict[str, list[dict[str, Any]]]:
    due_old, due_now = NOW - timedelta(days=2), NOW - timedelta(minutes=1)
    posts = [
        {"id": "terbit", "text": "Sudah terbit", "to": ["latihan"], "at": due_old},
        {"id": "menunggu", "text": "Menunggu giliran", "to": ["latihan"], "at": due_now},
        {"id": "ditahan", "text": "Terlambat", "to": ["hook"], "at": due_old},
    ]
    data: dict[str, list[dict[str, Any]]] = {"post": [], "delivery": [], "account": [], "daemon": []}
    for p in posts:
        data["post"].append({"id": p["id"], "path": f"{p['id']}.toml", "content_hash": f"hash-{p['id']}",
                             "fingerprint": f"fp-{p['id']}", "spec": spec_json(p["id"], p["to"], p["text"], p["at"]),
                             "removed": False, "created_at": naive(due_old), "updated_at": naive(due_old)})
    base = {"occurrence": "", "lease_owner": None, "lease_expires": None, "checkpoint": None, "last_error": None,
            "http_status": None, "platform_id": None, "url": None, "published_at": None, "hold_reason": None,
            "message_hash": "mh", "created_at": naive(due_old), "updated_at": naive(due_old)}
    data["delivery"] = [
        {**base, "id": 1, "post_id": "terbit", "account": "latihan", "platform": "outbox", "key": "siar-k1",
         "state": "published", "message": message("Sudah terbit"), "attempts": 1, "claim_token": 1,
         "due_at": naive(due_old), "ready_at": naive(due_old), "deadline": naive(due_old + timedelta(hours=1)),
         "platform_id": "siar-k1", "url": "file:///var/lib/siar/outbox/latihan/siar-k1.json",
         "published_at": naive(due_old + timedelta(seconds=1))},
        {**base, "id": 2, "post_id": "menunggu", "account": "latihan", "platform": "outbox", "key": "siar-k2",
         "state": "pending", "message": message("Menunggu giliran"), "attempts": 0, "claim_token": 0,
         "due_at": naive(due_now), "ready_at": naive(due_now), "deadline": naive(due_now + timedelta(hours=1))},
        {**base, "id": 3, "post_id": "ditahan", "account": "hook", "platform": "webhook", "key": "siar-k3",
         "state": "held", "hold_reason": "expired", "message": message("Terlambat"), "attempts": 2, "claim_token": 2,
         "due_at": naive(due_old), "ready_at": naive(due_old), "deadline": naive(due_old + timedelta(hours=1)),
         "last_error": "HTTP 503: busy", "http_status": 503},
    ]
    data["account"] = [
        {"name": "latihan", "platform": "outbox", "paused": False, "paused_reason": None, "not_before": None,
         "last_published_at": naive(due_old + timedelta(seconds=1))},
        {"name": "hook", "platform": "webhook", "paused": True, "paused_reason": "HTTP 401: token expired",
         "not_before": naive(NOW + timedelta(minutes=5)), "last_published_at": None},
    ]
    data["daemon"] = [{"owner": "host:1:abc", "host": "host", "pid": 1, "started_at": naive(due_old),
                       "seen_at": naive(due_old), "last_sync_at": naive(due_old), "stopped_at": naive(due_old)}]
    return data


def first_release_events() -> list[dict[str, Any]]:
    """A hash chain as the first release wrote it (the hash covers the same fields today)."""
    plan = [
        ("created", "terbit", 1, "latihan", "outbox", None, None, {"due_at": "x", "occurrence": ""}),
        ("claimed", "terbit", 1, "latihan", "outbox", 1, None, {"owner": "host:1:abc"}),
        ("attempt", "terbit", 1, "latihan", "outbox", 1, None, None),
        ("published", "terbit", 1, "latihan", "outbox", 1, "siar-k1", {"url": "file:///x"}),
        ("created", "menunggu", 2, "latihan", "outbox", None, None, None),
        ("created", "ditahan", 3, "hook", "webhook", None, None, None),
        ("held", "ditahan", 3, "hook", "webhook", 2, None, {"reason": "expired"}),
    ]
    events, prev = [], ""
    for seq, (event, post, delivery, account, platform, attempt, pid, detail) in enumerate(plan, start=1):
        row = {"seq": seq, "at": NOW - timedelta(days=2) + timedelta(seconds=seq), "post_id": post,
               "delivery_id": delivery, "account": account, "platform": platform, "event": event,
               "attempt": attempt, "http_status": None, "platform_id": pid, "error": None, "actor": "daemon",
               "detail": json.dumps(detail, sort_keys=True) if detail else None}
        row["hash"] = audit.chain_hash(prev, row)
        row["prev_hash"] = prev
        prev = row["hash"]
        events.append(row)
    return events


def write_first_release(db: Database) -> None:
    data, events = first_release_data(), first_release_events()
    with db.engine.begin() as conn:
        for name, rows in (("account", ACCOUNTS), ("post", POSTS), ("delivery", DELIVERIES), ("daemon", DAEMONS)):
            conn.execute(rows.insert(), data[name])
        conn.execute(EVENTS.insert(), [{**e, "at": naive(e["at"])} for e in events])
        conn.execute(HEAD.update().where(HEAD.c.id == 1).values(seq=events[-1]["seq"], hash=events[-1]["hash"]))


def read_back(db: Database) -> dict[str, list[dict[str, Any]]]:
    """The first revision's columns of every table, as they read now."""
    tables = {"account": (ACCOUNTS, "name"), "post": (POSTS, "id"), "delivery": (DELIVERIES, "id"),
              "daemon": (DAEMONS, "owner"), "audit_event": (EVENTS, "seq"), "audit_head": (HEAD, "id")}
    with db.engine.connect() as conn:
        return {name: [dict(r) for r in conn.execute(select(t).order_by(t.c[key])).mappings()]
                for name, (t, key) in tables.items()}


def test_every_revision_upgrades_the_first_releases_data_intact_and_the_head_can_use_it(url, workspace):
    db = Database(url)
    try:
        steps = revisions(db)
        upgrade(db.engine, steps[0])
        write_first_release(db)
        before = read_back(db)
        assert len(before["delivery"]) == 3 and len(before["audit_event"]) == 7
        for revision in steps[1:]:
            upgrade(db.engine, revision)
            assert current(db.engine) == revision
            assert read_back(db) == before, f"data changed by the upgrade to {revision}"
        db.migrate()  # what the daemon does at start: nothing left to do
        assert current(db.engine) == steps[-1]
        assert model_diffs(db) == []

        # The current code reads and uses what the first release wrote.
        with db.read() as conn:
            checked, broken = audit.verify(conn)
            specs = [PostSpec.from_json(s) for s in conn.execute(text("SELECT spec FROM post")).scalars()]
        assert (checked, broken) == (7, None)
        assert {s.id for s in specs} == {"terbit", "menunggu", "ditahan"}
        settings = workspace.settings()
        adapter = ScriptedAdapter([lambda message, job: Receipt(f"new-{job.key}")])
        dispatcher = Dispatcher(db, settings, owner="after-upgrade", adapter_override=lambda account: adapter)
        try:
            while dispatcher.dispatch() or dispatcher.busy:
                dispatcher.drain()
        finally:
            dispatcher.stop(1)
        assert [(m.post_id, m.text, key) for m, key, _a in adapter.calls] == [("menunggu", "Menunggu giliran", "siar-k2")]
        with db.read() as conn:
            rows = {r["id"]: r for r in conn.execute(text("SELECT * FROM delivery")).mappings()}
            checked, broken = audit.verify(conn)
        assert rows[1]["state"] == "published" and rows[1]["platform_id"] == "siar-k1"  # the old receipt kept
        assert rows[2]["state"] == "published" and rows[2]["platform_id"] == "new-siar-k2"
        assert (rows[3]["state"], rows[3]["hold_reason"]) == ("held", "expired")  # nobody's decision undone
        assert broken is None and checked > 7  # the chain goes on from the old tip
    finally:
        db.dispose()


def test_the_schema_head_the_database_layer_knows_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    from publisher.db import SCHEMA_HEAD
    from publisher.migrate import SCRIPTS

    assert ScriptDirectory(str(SCRIPTS)).get_current_head() == SCHEMA_HEAD
