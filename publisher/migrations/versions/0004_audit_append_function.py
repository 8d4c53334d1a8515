"""audit append on PostgreSQL: one server-side call that takes the chain's head, links and inserts

Several daemons append to one audit chain, so every append locks the single `audit_head` row
until its transaction commits. Done from Python, the lock was held across several round trips and
every wait of the appending thread for its interpreter, and the daemons queued on it. This function
does the whole append in one statement, which the daemon sends together with its COMMIT: the lock
is held only while the server works. The link is the one Python computes and `siar audit verify`
checks: hash = sha256(prev_hash + canonical JSON), where the canonical JSON's last key is "seq",
so Python sends, with each event's columns, its canonical JSON up to that key ("prefix"), and
the server adds the number it assigns.

SQLite has a single writer and no such queue: nothing changes there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APPEND = """
CREATE OR REPLACE FUNCTION siar_audit_append(events jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    tip_seq integer;
    tip_hash text;
    next_hash text;
    e record;
BEGIN
    SELECT seq, hash INTO tip_seq, tip_hash FROM audit_head WHERE id = 1 FOR UPDATE;
    FOR e IN
        SELECT r.*, x.v, x.n FROM jsonb_array_elements(events) WITH ORDINALITY AS x(v, n),
             LATERAL jsonb_populate_record(NULL::audit_event, x.v) AS r
        ORDER BY x.n
    LOOP
        tip_seq := tip_seq + 1;
        next_hash := encode(sha256(convert_to(tip_hash || (e.v ->> 'prefix') || ',"seq":' || tip_seq || '}', 'UTF8')),
                            'hex');
        INSERT INTO audit_event (seq, at, post_id, delivery_id, account, platform, event, attempt, http_status,
                                 platform_id, error, actor, detail, prev_hash, hash)
        VALUES (tip_seq, e.at, e.post_id, e.delivery_id, e.account, e.platform, e.event, e.attempt, e.http_status,
                e.platform_id, e.error, e.actor, e.detail, tip_hash, next_hash);
        tip_hash := next_hash;
    END LOOP;
    UPDATE audit_head SET seq = tip_seq, hash = tip_hash WHERE id = 1;
    RETURN tip_seq;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS siar_audit_append(jsonb)")
