"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 12:52:06.723052
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import publisher.models


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('paused_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('not_before', publisher.models.UTCDateTime(), nullable=True),
    sa.Column('last_published_at', publisher.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('audit_event',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', publisher.models.UTCDateTime(), nullable=False),
    sa.Column('post_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('platform_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_post_id'), ['post_id'], unique=False)

    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('daemon',
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('host', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', publisher.models.UTCDateTime(), nullable=False),
    sa.Column('seen_at', publisher.models.UTCDateTime(), nullable=False),
    sa.Column('last_sync_at', publisher.models.UTCDateTime(), nullable=True),
    sa.Column('stopped_at', publisher.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('owner')
    )
    op.create_table('post',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('spec', sa.Text(), nullable=False),
    sa.Column('removed', sa.Boolean(), nullable=False),
    sa.Column('created_at', publisher.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', publisher.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_post_fingerprint'), ['fingerprint'], unique=False)
        batch_op.create_index(batch_op.f('ix_post_path'), ['path'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('post_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('occurrence', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('hold_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('due_at', publisher.models.UTCDateTime(), nullable=False),
    sa.Column('ready_at', publisher.models.UTCDateTime(), nullable=False),
    sa.Column('deadline', publisher.models.UTCDateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('message_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('lease_owner', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('lease_expires', publisher.models.UTCDateTime(), nullable=True),
    sa.Column('claim_token', sa.Integer(), nullable=False),
    sa.Column('checkpoint', sa.Text(), nullable=True),
    sa.Column('platform_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('created_at', publisher.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', publisher.models.UTCDateTime(), nullable=False),
    sa.Column('published_at', publisher.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['post_id'], ['post.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key'),
    sa.UniqueConstraint('post_id', 'account', 'occurrence', name='uq_delivery_occurrence')
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_account_state', ['account', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_post_id'), ['post_id'], unique=False)
        batch_op.create_index('ix_delivery_ready', ['state', 'ready_at'], unique=False)

    # The audit chain's tip exists from the start, so concurrent first appends lock one row.
    op.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '')")


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_ready')
        batch_op.drop_index(batch_op.f('ix_delivery_post_id'))
        batch_op.drop_index('ix_delivery_account_state')

    op.drop_table('delivery')
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_post_path'))
        batch_op.drop_index(batch_op.f('ix_post_fingerprint'))

    op.drop_table('post')
    op.drop_table('daemon')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_post_id'))
        batch_op.drop_index(batch_op.f('ix_audit_event_delivery_id'))

    op.drop_table('audit_event')
    op.drop_table('account')
