"""The audit log: `siar audit verify` on a real run and after each kind of tampering, one chain
under concurrent writers, and every event committed or rolled back with the change it records."""

from __future__ import annotations

import json

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.pool import NullPool

from publisher import audit, operator, store
from publisher.db import Database
from publisher.models import utcnow
from publisher.states import State
from tests.conftest import Workspace, fresh_postgres_schema
from tests.support.commands import delivery, events, os_user
from tests.support.fakeserver import Answer, FakeServer
from tests.support.process import execute, run_siar, siar_env

SETTINGS = """
[daemon]
timezone = "Asia/Jakarta"
lease = "3s"
http_timeout = "1s"

[retry]
attempts = 3
first_delay = "1s"
max_delay = "2s"

[accounts.latihan]
platform = "outbox"

[accounts.arsip]
platform = "outbox"
"""


def _ready(workspace: Workspace, post_id: str) -> bool:
    row = delivery(workspace, post_id)
    ready = datetime.fromisoformat(row["ready_at"]).replace(tzinfo=timezone.utc)
    return row["state"] == "retrying" and ready <= utcnow()


def _env(workspace: Workspace) -> dict[str, str]:
    return siar_env(SIAR_DATABASE=workspace.postgres) if workspace.postgres else siar_env()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def real_run(request, tmp_path_factory) -> Iterator[tuple[Workspace, subprocess.CompletedProcess[str]]]:
    """Several posts sent by `siar run --once` twice (one retried), then a cancel and a resolve;
    once per backend (like `siar_database`, but one run shared by the module's tests)."""
    with ExitStack() as stack:
        workspace = Workspace(tmp_path_factory.mktemp("audit") / "config")
        if request.param == "postgres":
            workspace.postgres = stack.enter_context(fresh_postgres_schema())
        yield _real_run(workspace, _env(workspace))


def _real_run(workspace: Workspace, env: dict[str, str]) -> tuple[Workspace, subprocess.CompletedProcess[str]]:
    with FakeServer() as server:
        server.route("POST", "/hook", Answer(503, "busy"), Answer(200, {"id": "w-1"}))
        server.route("POST", "/slow", Answer(200, {"id": "late"}, delay=2.5))
        workspace.write_settings(SETTINGS + f"""
[accounts.hook]
platform = "webhook"
url = "{server.url}/hook"

[accounts.hook-slow]
platform = "webhook"
url = "{server.url}/slow"
""")
        workspace.post("satu.toml", 'to = ["latihan", "arsip"]\ntext = "Satu"\n')
        workspace.post("dua.toml", 'to = ["hook"]\ntext = "Dua"\n')
        workspace.post("tiga.toml", 'to = ["hook-slow"]\ntext = "Tiga"\n')
        workspace.post("nanti.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan", "arsip"]\ntext = "Nanti"\n')

        assert run_siar(workspace.root, "run", "--once", env=env).returncode == 1  # tiga is unknown
        # The retry of `dua` goes out in a second run, or already in the first if it became due
        # while that run waited for `tiga`'s timeout.
        deadline = time.time() + 10
        while delivery(workspace, "dua")["state"] != "published" and not _ready(workspace, "dua"):
            assert time.time() < deadline, delivery(workspace, "dua")
            time.sleep(0.1)
        if delivery(workspace, "dua")["state"] != "published":
            assert run_siar(workspace.root, "run", "--once", env=env).returncode == 0
        assert [e["event"] for e in events(workspace, post_id="dua")] == [
            "created", "claimed", "attempt", "retry", "claimed", "attempt", "published"]
    assert run_siar(workspace.root, "cancel", "nanti", env=env).returncode == 0
    unknown = delivery(workspace, "tiga")
    resolve = run_siar(workspace.root, "resolve", str(unknown["id"]), "--published", "https://x.example/3", env=env)
    assert resolve.returncode == 0
    verify = run_siar(workspace.root, "audit", "verify", env=env)
    return workspace, verify


@pytest.mark.slow
def test_audit_verify_passes_on_a_real_run_with_retries_a_cancel_and_a_resolve(real_run):
    workspace, verify = real_run
    everything = events(workspace)
    kinds = [e["event"] for e in everything]
    for kind in ("created", "claimed", "attempt", "retry", "published", "unknown", "cancelled", "resolved"):
        assert kind in kinds
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert {e["actor"] for e in everything if e["event"] in ("cancelled", "resolved")} == {os_user()}
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.strip() == f"audit chain intact: {len(everything)} events verified"


@pytest.fixture
def copied(real_run, tmp_path) -> Iterator[Workspace]:
    """The real run's configuration and database, copied for one test to tamper with."""
    source, _verify = real_run
    shutil.copytree(source.root, tmp_path / "config")
    workspace = Workspace(tmp_path / "config")
    if source.postgres is None:
        yield workspace
        return
    with fresh_postgres_schema() as url:
        _copy_schema(source.postgres, url)
        workspace.postgres = url
        yield workspace


def _copy_schema(source_url: str, target_url: str) -> None:
    source = create_engine(source_url, poolclass=NullPool)
    with source.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        tables = inspect(conn).get_table_names()
    source.dispose()
    target = create_engine(target_url, poolclass=NullPool)
    with target.begin() as conn:
        for table in tables:
            conn.execute(text(f'CREATE TABLE "{table}" (LIKE "{schema}"."{table}" INCLUDING ALL)'))
            conn.execute(text(f'INSERT INTO "{table}" SELECT * FROM "{schema}"."{table}"'))
    target.dispose()


def _sql(workspace: Workspace, statement: str, **params: object) -> None:
    execute(workspace.database, statement, **params)


def _middle(workspace: Workspace) -> int:
    """A `cancelled` event, which names the person: the row a forger would most like to change."""
    return events(workspace, event="cancelled")[0]["seq"]


TAMPERING = {
    "a changed actor": (lambda ws, k: _sql(ws, "UPDATE audit_event SET actor = 'daemon' WHERE seq = :k", k=k),
                        0, "its content does not match its hash (edited)"),
    "a changed error": (lambda ws, k: _sql(ws, "UPDATE audit_event SET error = 'nothing' WHERE seq = :k", k=k),
                        0, "its content does not match its hash (edited)"),
    "a deleted row in the middle": (lambda ws, k: _sql(ws, "DELETE FROM audit_event WHERE seq = :k", k=k),
                                    0, "missing (the next event found is"),
    "a changed prev_hash": (lambda ws, k: _sql(ws, "UPDATE audit_event SET prev_hash = :h WHERE seq = :k",
                                               h="0" * 64, k=k),
                            0, "its prev_hash does not match the event before it"),
    # A forger who recomputes the edited row's own hash still breaks the link to the next one.
    "an edit with its hash recomputed": (None, 1, "its prev_hash does not match the event before it"),
}


@pytest.mark.slow
# SQLite only: finding an edit is the same code over the same rows on PostgreSQL, where the test
# below shows it finding deleted rows.
@pytest.mark.parametrize("real_run", ["sqlite"], indirect=True)
@pytest.mark.parametrize("how", list(TAMPERING))
def test_audit_verify_fails_naming_the_first_broken_row_after_tampering(copied, how):
    workspace = copied
    seq = _middle(workspace)
    tamper, offset, reason = TAMPERING[how]
    if tamper is None:
        row = dict(events(workspace, seq=seq)[0])
        row["actor"] = "daemon"
        row["at"] = datetime.fromisoformat(row["at"]).replace(tzinfo=timezone.utc)
        _sql(workspace, "UPDATE audit_event SET actor = 'daemon', hash = :h WHERE seq = :k",
             h=audit.chain_hash(row["prev_hash"], row), k=seq)
    else:
        tamper(workspace, seq)

    result = run_siar(workspace.root, "audit", "verify", env=_env(workspace))

    assert result.returncode == 1
    assert f"audit chain BROKEN at audit event {seq + offset}: {reason}" in result.stdout


@pytest.mark.slow
def test_audit_verify_fails_naming_the_missing_event_when_the_last_rows_are_deleted(copied):
    workspace = copied
    last = len(events(workspace))
    _sql(workspace, "DELETE FROM audit_event WHERE seq >= :k", k=last - 1)

    result = run_siar(workspace.root, "audit", "verify", env=_env(workspace))

    assert result.returncode == 1
    assert f"audit chain BROKEN at audit event {last - 1}: missing: the chain ends at {last - 2}" in result.stdout
    assert f"recorded tip is {last}" in result.stdout


# --- in-process: concurrency and transactions ----------------------------------------------------


def test_the_chain_stays_single_and_valid_with_concurrent_writers(workspace, backend):
    url = backend or workspace.settings().database
    first, second = Database(url), Database(url)  # as two processes would
    first.migrate()
    threads_each, per_thread = 4, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads_each * 2)

    def writer(db: Database, name: str) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with db.write() as conn:
                    audit.append(conn, "note", actor=name, detail={"i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(db, f"{tag}-{n}"))
               for tag, db in (("a", first), ("b", second)) for n in range(threads_each)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with first.read() as conn:
            count, broken = audit.verify(conn)
            written = conn.execute(select(audit.EVENTS.c.seq, audit.EVENTS.c.actor, audit.EVENTS.c.detail)
                                   .order_by(audit.EVENTS.c.seq)).all()
    finally:
        first.dispose()
        second.dispose()

    assert errors == []
    total = threads_each * 2 * per_thread
    assert (count, broken) == (total, None)
    assert [r.seq for r in written] == list(range(1, total + 1))
    for actor in {r.actor for r in written}:  # each writer's events in its own order
        assert [r.detail for r in written if r.actor == actor] == [f'{{"i": {i}}}' for i in range(per_thread)]


def test_an_event_with_quotes_backslashes_and_any_script_is_stored_as_given_and_verifies(workspace, backend):
    """On PostgreSQL the events travel as one quoted literal: nothing in them may change it."""
    url = backend or workspace.settings().database
    db = Database(url)
    db.migrate()
    error = "it's a \\ back\\slash, a 'quote', 100% %s, Aksara Jawa ꦲꦏ꧀ꦱꦫ, emoji 🇮🇩, tab\tend"
    try:
        with db.write() as conn:
            audit.append(conn, "note", actor="operator", error=error, detail={"why": error})
        with db.read() as conn:
            (stored,) = [e for e in audit.events(conn) if e["event"] == "note"]
            assert audit.verify(conn)[1] is None
    finally:
        db.dispose()
    assert stored["error"] == error
    assert json.loads(stored["detail"]) == {"why": error}


def _pending(engine_factory, workspace):
    workspace.post("p.toml", 'at = 2099-01-01T08:00:00\nto = ["latihan"]\ntext = "Halo"\n')
    e = engine_factory()
    e.syncer.run()
    return e, e.one(post_id="p")


def test_a_transition_rolled_back_leaves_no_audit_event(workspace, engine):
    e, row = _pending(engine, workspace)
    before = e.events()

    with pytest.raises(RuntimeError):
        with e.db.write() as conn:
            (change,) = operator.cancel(conn, str(row["id"]), actor="someone")
            assert change.after == "cancelled"  # done, inside the transaction
            raise RuntimeError("the process dies before the commit")

    assert e.one(post_id="p")["state"] == "pending"
    assert e.events() == before
    with e.db.read() as conn:
        assert audit.verify(conn) == (len(before), None)
        assert conn.execute(select(audit.HEAD.c.seq)).scalar() == len(before)


def test_a_failed_audit_append_rolls_the_transition_back_with_it(workspace, engine, monkeypatch):
    e, row = _pending(engine, workspace)
    before = e.events()

    def broken(*_args, **_kwargs):
        raise OSError("disk full while writing the audit event")

    # The event's canonical form is made on both paths (SQLite hashes it here, PostgreSQL sends
    # it to siar_audit_append with the commit).
    monkeypatch.setattr(audit, "canonical_prefix", broken)
    with pytest.raises(OSError):
        with e.db.write() as conn:
            operator.cancel(conn, str(row["id"]))
    lease = store.Lease(row["id"], "nobody", row["claim_token"])
    with pytest.raises(OSError):
        with e.db.write() as conn:
            conn.execute(store.D.update().where(store.D.c.id == row["id"]).values(lease_owner="nobody"))
            store.fenced(conn, lease, "failed", now=utcnow(), state=State.FAILED, row=row, error="x")
    monkeypatch.undo()

    after = e.one(post_id="p")
    assert (after["state"], after["lease_owner"]) == ("pending", None)
    assert e.events() == before
    with e.db.read() as conn:
        assert audit.verify(conn) == (len(before), None)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_postgres_a_failed_server_side_append_rolls_the_transition_back(workspace, engine, monkeypatch):
    """The append runs on the server with the commit: if it fails there, nothing of the
    transaction stays, and the error is a database error like any other (fault names work)."""
    from sqlalchemy.exc import DBAPIError

    e, row = _pending(engine, workspace)
    before = e.events()
    monkeypatch.setattr(audit, "_APPEND_CALL", "SELECT siar_audit_append_missing(%s::jsonb)")
    with pytest.raises(DBAPIError, match="siar_audit_append_missing"):
        with e.db.write() as conn:
            operator.cancel(conn, str(row["id"]))
    monkeypatch.undo()
    assert e.one(post_id="p")["state"] == "pending"
    assert e.events() == before
    with e.db.write() as conn:  # the pool's connection is fit for the next transaction
        operator.cancel(conn, str(row["id"]))
    assert e.one(post_id="p")["state"] == "cancelled"
    with e.db.read() as conn:
        assert audit.verify(conn) == (len(before) + 1, None)


def test_an_audit_event_becomes_visible_only_with_the_change_it_records(workspace, engine):
    """Read through a second connection while the write is open: neither the change nor its event
    is visible before the commit, and both are after it."""
    e, row = _pending(engine, workspace)
    other = Database(e.settings.database)
    seen_inside: list[tuple[str, int]] = []

    def look() -> tuple[str, int]:
        with other.read() as conn:
            state = conn.execute(select(store.D.c.state).where(store.D.c.id == row["id"])).scalar()
            count = len(conn.execute(select(audit.EVENTS.c.seq).where(audit.EVENTS.c.event == "cancelled")).all())
        return state, count

    try:
        with e.db.write() as conn:
            operator.cancel(conn, str(row["id"]), actor="someone")
            seen_inside.append(look())
        assert seen_inside == [("pending", 0)]
        assert look() == ("cancelled", 1)
    finally:
        other.dispose()
    assert [ev["actor"] for ev in e.events(event="cancelled")] == ["someone"]


def test_the_canonical_form_is_the_sorted_json_of_every_field_with_seq_last():
    """PostgreSQL's siar_audit_append appends `,"seq":N}` to what Python sends: that is only the
    same as hashing the whole event if "seq" sorts after every other field."""
    import json as _json

    row = audit.event("published", post_id="ulang-tahun-kota", delivery_id=7, account="pemkot_x", platform="x",
                      attempt=2, http_status=201, platform_id="1790", error=None,
                      detail={"url": "https://x.com/i/1790", "catatan": "Selamat ulang tahun, Kota! 🎉"})
    row["seq"] = 12345
    whole = {name: (row[name].isoformat() if name == "at" else row[name]) for name in audit.FIELDS}
    assert audit.canonical(row) == _json.dumps(whole, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert sorted(audit.FIELDS)[-1] == "seq"
