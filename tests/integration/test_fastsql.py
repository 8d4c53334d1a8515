"""`Fast` statements: the same rows and values as SQLAlchemy's own execution, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from publisher.db import Database
from publisher.fastsql import Fast
from publisher.models import UTCDateTime

META = MetaData()
T = Table(
    "fast_probe", META,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False, unique=True),
    Column("at", UTCDateTime()),
    Column("n", Integer, nullable=False, default=0),
)  # fmt: skip

INSERT = Fast(insert(T))
RENAME = Fast(update(T).where(T.c.id == bindparam("w_id")))
BUMP = Fast(update(T).where(T.c.name == bindparam("w_name")).values(n=T.c.n + 1))
NAME_OF = Fast(select(T.c.name, T.c.n).where(T.c.id == bindparam("w_id")))
FIRST = Fast(select(T.c.name).where(T.c.id == 1))  # a constant in the WHERE: bound at compile time

WHEN = datetime(2026, 11, 27, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=7)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else f"sqlite:///{tmp_path}/f.db"
    database = Database(url)
    META.create_all(database.engine)
    yield database
    database.dispose()


def test_insert_update_select_convert_values_as_sqlalchemy_does(db: Database) -> None:
    with db.write() as conn:
        INSERT.many(conn, [{"id": 1, "name": "a", "at": WHEN, "n": 0}, {"id": 2, "name": "b", "at": None, "n": 5}])
        assert RENAME.run(conn, {"w_id": 2, "name": "bb", "at": WHEN + timedelta(days=1)}).rowcount == 1
        assert RENAME.run(conn, {"w_id": 99, "name": "zz"}).rowcount == 0
        assert BUMP.run(conn, {"w_name": "a"}).rowcount == 1
        assert NAME_OF.run(conn, {"w_id": 1}).fetchone() == ("a", 1)
        assert FIRST.run(conn, {}).fetchone() == ("a",)
    with db.read() as conn:  # read back through SQLAlchemy: the stored values are the usual ones
        rows = {r.id: r for r in conn.execute(select(T).order_by(T.c.id))}
    assert rows[1].at == WHEN and rows[1].at.tzinfo == timezone.utc  # stored as UTC
    assert (rows[2].name, rows[2].at, rows[2].n) == ("bb", WHEN + timedelta(days=1), 5)


def test_driver_errors_are_wrapped_as_sqlalchemy_wraps_them(db: Database) -> None:
    with db.write() as conn:
        INSERT.many(conn, [{"id": 1, "name": "a", "at": None, "n": 0}])
    with pytest.raises(IntegrityError), db.write() as conn:
        INSERT.run(conn, {"id": 2, "name": "a", "at": None, "n": 0})  # name is unique
    with db.read() as conn:
        assert conn.execute(select(T.c.id)).scalars().all() == [1]  # the failed block left nothing


def test_a_failed_block_rolls_back_its_fast_writes(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as conn:
        INSERT.run(conn, {"id": 1, "name": "a", "at": None, "n": 0})
        raise RuntimeError("the block fails after its write")
    with db.read() as conn:
        assert conn.execute(select(T.c.id)).scalars().all() == []


def test_outside_a_transaction_it_begins_one_instead_of_autocommitting(db: Database) -> None:
    with db.engine.connect() as conn:
        assert not conn.in_transaction()
        INSERT.run(conn, {"id": 1, "name": "a", "at": None, "n": 0})
        assert conn.in_transaction()
        conn.rollback()
    with db.read() as conn:
        assert conn.execute(select(T.c.id)).scalars().all() == []


def test_an_in_list_is_refused_at_first_use() -> None:
    db = Database("sqlite://")
    META.create_all(db.engine)
    statement = Fast(select(T.c.id).where(T.c.name.in_(["a", "b"])))
    with db.read() as conn, pytest.raises(ValueError, match="expanding IN"):
        statement.run(conn, {})
