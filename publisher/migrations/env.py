"""Alembic environment: runs against the engine or connection handed over by publisher.migrate."""

from __future__ import annotations

from alembic import context

import publisher.models  # noqa: F401  (registers the tables on the metadata)
from publisher.migrate import for_this_backend
from sqlmodel import SQLModel

config = context.config
target_metadata = SQLModel.metadata


def run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=for_this_backend(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    with config.attributes["engine"].connect() as conn:
        run(conn)
        conn.commit()
