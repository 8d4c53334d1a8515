"""The batch claim's cost follows the batch, not how many deliveries are due: PostgreSQL walks
ix_delivery_due from the front and stops when the batch is full.

Checked in the plan PostgreSQL runs (EXPLAIN ANALYZE of the very statement and parameters the
claim sent), counting rows, never timing them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Iterator

import pytest
from sqlalchemy import event, text

from publisher import store
from publisher.db import Database
from publisher.models import utcnow
from publisher.sync import RESTAT_AFTER_ROWS

pytestmark = pytest.mark.postgres

ACCOUNTS = 100
POSTS = 20  # 2,000 deliveries, all due at once, as a national burst makes them
LIMIT = 16


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _burst(workspace) -> None:
    names = [f"kab{i:03d}" for i in range(ACCOUNTS)]
    workspace.add_settings("".join(f'\n[accounts.{name}]\nplatform = "outbox"\n' for name in names))
    targets = ", ".join(f'"{n}"' for n in names)
    for i in range(POSTS):
        workspace.post(f"serentak{i:02d}.toml", f'to = [{targets}]\ntext = "Siaran serentak {i}"\n')


def _claim_plan(db) -> tuple[int, list[dict[str, Any]]]:
    """Claim once, capturing what was sent; then EXPLAIN ANALYZE the same, rolled back."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("UPDATE delivery SET state") and "lease_owner" in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.write() as conn:
            claimed = store.claim_batch(conn, owner="test", now=utcnow(), lease=timedelta(minutes=1), limit=LIMIT)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    (statement, parameters), = sent
    with db.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        plan = cursor.fetchone()[0]
        conn.rollback()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return len(claimed), list(_nodes(plan[0]["Plan"]))


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_claim_among_thousands_due_reads_only_the_front_of_the_due_index(workspace, engine):
    _burst(workspace)
    e = engine()
    report = e.syncer.run()
    due = ACCOUNTS * POSTS
    assert report.deliveries == due >= RESTAT_AFTER_ROWS

    # The sync had the table analysed (by hand: autovacuum's would be last_autoanalyze).
    with e.db.read() as conn:
        analysed = conn.execute(text(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relid = 'delivery'::regclass")).scalar()
    assert analysed is not None

    with e.db.read() as conn:
        definition = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_delivery_due'")).scalar()
    assert "(ready_at, id) WHERE" in definition and "'pending'" in definition and "'retrying'" in definition

    claimed, nodes = _claim_plan(e.db)
    assert claimed == LIMIT
    assert any(node.get("Index Name") == "ix_delivery_due" for node in nodes), [n["Node Type"] for n in nodes]
    assert not any(node["Node Type"] == "Sort" for node in nodes)
    # The walk stopped with the batch: it read the batch and what the checks turned away (here,
    # the accounts already claimed), not the 2,000 due.
    read = max(node["Actual Rows"] * node.get("Actual Loops", 1) for node in nodes
               if node.get("Index Name") == "ix_delivery_due")
    assert read <= 2 * LIMIT, read

    # Later claims, with the first batch in flight, still stop early: an account with one
    # delivery out is skipped, not a reason to read the rest.
    claimed, nodes = _claim_plan(e.db)
    assert claimed == LIMIT
    assert max(node["Actual Rows"] for node in nodes) < due // 4


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_the_claim_is_never_a_prepared_statement_that_could_keep_a_generic_plan(workspace, engine):
    _burst(workspace)
    e = engine()
    e.syncer.run()
    e.db.dispose()
    one = Database(e.db.url, pool_size=1)  # every claim on one connection, as a busy daemon's
    try:
        for _ in range(8):  # psycopg prepares what ran five times
            with one.write() as conn:
                assert store.claim_batch(conn, owner="test", now=utcnow(), lease=timedelta(minutes=1), limit=2)
            with one.read() as conn:  # a statement that did run often: prepared as before
                conn.execute(text("SELECT count(*) FROM delivery WHERE state = 'claimed'")).scalar()
        with one.read() as conn:
            prepared = conn.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
    finally:
        one.dispose()
    assert any("count(*)" in statement for statement in prepared), prepared
    assert not any("lease_owner" in statement for statement in prepared), prepared
