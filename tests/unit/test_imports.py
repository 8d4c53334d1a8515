"""Memory: a daemon on SQLite loads no PostgreSQL code (its dialect, psycopg) and no Alembic
unless the schema needs migrating. Each is megabytes of a small daemon's footprint (bench
`footprint`); naming a PostgreSQL option on a model once cost 2.5 MB this way."""

from __future__ import annotations

import subprocess
import sys

NOT_ON_SQLITE = ("sqlalchemy.dialects.postgresql", "psycopg", "alembic")


def test_the_modules_a_sqlite_daemon_runs_on_load_nothing_of_postgresql_or_alembic() -> None:
    probe = (
        "import sys\n"
        "import publisher.cli, publisher.daemon, publisher.dispatch, publisher.models, publisher.store, publisher.sync\n"
        f"print([m for m in {NOT_ON_SQLITE!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
