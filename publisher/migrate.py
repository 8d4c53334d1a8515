"""Alembic, driven from code: no alembic.ini to ship, the scripts live in publisher/migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

from publisher.db import MIGRATION_LOCK

SCRIPTS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        # Two daemons starting together: the second waits here, then finds nothing to do.
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                conn.commit()
    else:
        command.upgrade(config, revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def for_this_backend(dialect_name: str):  # type: ignore[no-untyped-def]
    """Alembic `include_object`: leave out what the models declare for another backend only
    (`Index(...).ddl_if(dialect=...)`, as ix_delivery_due), which Alembic would otherwise see
    as missing there."""

    def include(obj, _name, _type, _reflected, _compare_to) -> bool:  # type: ignore[no-untyped-def]
        ddl_if = getattr(obj, "_ddl_if", None)
        return ddl_if is None or ddl_if.dialect is None or ddl_if.dialect == dialect_name

    return include
