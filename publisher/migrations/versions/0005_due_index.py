"""due index: the ready deliveries alone, in claim order (ready_at, id)

The batch claim wants the first few ready deliveries in (ready_at, id) order that pass its
per-account checks. ix_delivery_ready (state, ready_at) serves `state IN (pending, retrying)` as
two ranges, so PostgreSQL read every due delivery, checked each and sorted them all for every
claim: with 10,000 due at once a claim took about 50 ms of server time and held the burst back.
This partial index holds only the ready ones, already in claim order: a claim walks it from the
front and stops when its batch is full. PostgreSQL only: SQLite's planner, without statistics,
keeps to ix_delivery_ready (its in-process sort is cheap), and there the index only cost memory.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""
from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

READY = text("state IN ('pending', 'retrying')")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_delivery_due", "delivery", ["ready_at", "id"], unique=False, postgresql_where=READY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_delivery_due", table_name="delivery")
