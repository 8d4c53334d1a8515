"""In-process engine fixtures: a migrated database, a syncer and a dispatcher on a workspace."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from adapters.base import BaseAdapter, Job, Limits, Message, Receipt
from publisher.db import Database
from publisher.dispatch import CountingSession, Dispatcher
from publisher.store import A, D
from publisher.sync import Syncer


class ScriptedAdapter(BaseAdapter):
    """An adapter whose answers a test scripts: a Receipt, or an exception to raise, per attempt."""

    platform = "scripted"
    limits = Limits(media_max=10)

    def __init__(self, script: list[Any], lookup_answer: Any = "no-lookup") -> None:
        super().__init__({"name": "scripted"}, CountingSession())
        self.script = script
        self.calls: list[tuple[Message, str, int]] = []
        self.lookups = 0
        self._lookup_answer = lookup_answer

    def publish(self, message: Message, job: Job) -> Receipt:
        self.calls.append((message, job.key, job.attempt))
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(message, job)
        return answer

    def whoami(self) -> str:
        return "scripted"


class LookupAdapter(ScriptedAdapter):
    def lookup(self, message: Message, job: Job) -> Receipt | None:
        self.lookups += 1
        if isinstance(self._lookup_answer, BaseException):
            raise self._lookup_answer
        return self._lookup_answer


@dataclass
class Engine:
    workspace: Any
    settings: Any
    db: Database
    syncer: Syncer
    adapters: dict[str, ScriptedAdapter] = field(default_factory=dict)
    _dispatchers: list[Dispatcher] = field(default_factory=list)

    def dispatcher(self, owner: str = "test-owner", **kwargs: Any) -> Dispatcher:
        override: Callable[..., BaseAdapter] | None = None
        if self.adapters:
            override = lambda account: self.adapters[account.name]  # noqa: E731
        kwargs.setdefault("on_settled", self.syncer.on_settled)
        dispatcher = Dispatcher(self.db, self.settings, owner=owner, adapter_override=override, **kwargs)
        self._dispatchers.append(dispatcher)
        return dispatcher

    def run_until_idle(self, dispatcher: Dispatcher) -> None:
        while dispatcher.dispatch() or dispatcher.busy:
            dispatcher.drain()

    def deliveries(self, **where: Any) -> list[Any]:
        query = select(D).order_by(D.c.id)
        for key, value in where.items():
            query = query.where(D.c[key] == value)
        with self.db.read() as conn:
            return list(conn.execute(query).mappings())

    def one(self, **where: Any) -> Any:
        rows = self.deliveries(**where)
        assert len(rows) == 1, rows
        return rows[0]

    def account(self, name: str) -> Any:
        with self.db.read() as conn:
            return conn.execute(select(A).where(A.c.name == name)).mappings().one()

    def events(self, **where: Any) -> list[dict[str, Any]]:
        from publisher.audit import EVENTS

        query = select(EVENTS).order_by(EVENTS.c.seq)
        for key, value in where.items():
            query = query.where(EVENTS.c[key] == value)
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def event_names(self, delivery_id: int) -> list[str]:
        return [e["event"] for e in self.events(delivery_id=delivery_id)]

    def close(self) -> None:
        for dispatcher in self._dispatchers:
            dispatcher.stop(1)
        self.db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str | None:
    """Every in-process engine test runs on both backends, so they cannot drift apart."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return None


@pytest.fixture
def engine(workspace: Any, backend: str | None) -> Iterator[Callable[[], Engine]]:
    made: list[Engine] = []

    def build() -> Engine:
        settings = workspace.settings()
        if backend is not None:
            settings = dataclasses.replace(settings, database=backend)
        db = Database(settings.database)
        db.migrate()
        built = Engine(workspace, settings, db, Syncer(db, settings))
        made.append(built)
        return built

    yield build
    for built in made:
        built.close()
