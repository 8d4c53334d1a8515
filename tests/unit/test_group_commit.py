"""GroupCommit: SQLite writes of one process's threads, one block at a time, sharing commits."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from publisher.db import Database


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'g.db'}")
    with database.write() as conn:
        conn.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        conn.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id))"))
        conn.execute(text("INSERT INTO parent (id) VALUES (1)"))
    yield database
    database.dispose()


def committed_items(db: Database) -> set[int]:
    """Read through a separate sqlite3 connection: only what is committed on disk shows."""
    with sqlite3.connect(db.path) as other:
        return {row[0] for row in other.execute("SELECT id FROM item")}


def wait_until_queued(db: Database, n: int) -> None:
    deadline = time.monotonic() + 10
    while db._group._queued < n:  # noqa: SLF001 - the test steers the queue
        assert time.monotonic() < deadline, "the other writer never queued"
        time.sleep(0.001)


def test_every_block_is_committed_when_write_returns_and_queued_blocks_share_commits(db: Database) -> None:
    seen_uncommitted: list[int] = []

    def writer(i: int) -> None:
        with db.write() as conn:
            conn.execute(text("INSERT INTO item (id, parent) VALUES (:i, 1)"), {"i": i})
            time.sleep(0.002)  # long enough for others to queue up behind this block
        if i not in committed_items(db):
            seen_uncommitted.append(i)

    before = db.write_counts()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(1, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = db.write_counts()
    assert committed_items(db) == set(range(1, 41))
    assert seen_uncommitted == []  # durable before the caller went on
    assert after["db_write_blocks"] - before["db_write_blocks"] == 40
    assert after["db_commits"] - before["db_commits"] < 40  # some blocks shared a commit


def test_a_block_that_raises_is_rolled_back_alone(db: Database) -> None:
    errors: list[BaseException] = []

    def good() -> None:
        with db.write() as conn:
            conn.execute(text("INSERT INTO item (id, parent) VALUES (2, 1)"))

    def bad() -> None:
        try:
            with db.write() as conn:
                conn.execute(text("INSERT INTO item (id, parent) VALUES (3, 1)"))
                wait_until_queued(db, 1)  # `good` waits behind this block, in the same batch
                raise RuntimeError("this block fails")
        except RuntimeError as exc:
            errors.append(exc)

    first = threading.Thread(target=bad)
    first.start()
    time.sleep(0.05)
    second = threading.Thread(target=good)
    second.start()
    first.join()
    second.join()
    assert [str(e) for e in errors] == ["this block fails"]
    assert committed_items(db) == {2}


def test_a_failed_commit_reaches_every_block_in_the_batch(db: Database) -> None:
    outcomes: dict[str, BaseException | None] = {}

    def run(name: str, statement: str) -> None:
        try:
            with db.write() as conn:
                if name == "violator":
                    # The foreign key is checked at COMMIT: the whole batch's commit fails.
                    conn.execute(text("PRAGMA defer_foreign_keys = ON"))
                conn.execute(text(statement))
                if name == "violator":
                    wait_until_queued(db, 1)
            outcomes[name] = None
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            outcomes[name] = exc

    violator = threading.Thread(target=run, args=("violator", "INSERT INTO item (id, parent) VALUES (5, 99)"))
    violator.start()
    time.sleep(0.05)
    innocent = threading.Thread(target=run, args=("innocent", "INSERT INTO item (id, parent) VALUES (6, 1)"))
    innocent.start()
    violator.join()
    innocent.join()
    assert isinstance(outcomes["violator"], IntegrityError)
    assert isinstance(outcomes["innocent"], IntegrityError)  # not told "committed" when it wasn't
    assert committed_items(db) == set()
    with db.write() as conn:  # the writer recovers: a new connection, a new transaction
        conn.execute(text("INSERT INTO item (id, parent) VALUES (7, 1)"))
    assert committed_items(db) == {7}
