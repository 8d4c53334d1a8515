"""claim index: (account, state, ready_at, id) in place of (account, state)

The batch claim asks, per due delivery, whether its account has one in flight and whether an
earlier one of the account is due; with ready_at (and id) in the index both are answered from the
index alone, reading only the account's deliveries in flight or due.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_account_ready", ["account", "state", "ready_at", "id"], unique=False)
        batch_op.drop_index("ix_delivery_account_state")


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_account_state", ["account", "state"], unique=False)
        batch_op.drop_index("ix_delivery_account_ready")
