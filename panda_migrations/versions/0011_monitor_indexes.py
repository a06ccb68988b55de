"""monitor indexes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 01:00:00

Indexes for what the web monitor asks of the jobs table: pages sorted by a field (keyset on
the field and the id, so a page is an index range, not a sort of every match), and counts in a
time window of update_time, with or without a state. Measured with bench/monitor_queries.py on
100,000 jobs (figures in bench/README.md).

update_time is now indexed, so an update that changes only it (a heartbeat) is no longer a
heap-only (HOT) update on PostgreSQL: it writes an entry in every index of the table, as a
change of state already did.

An index that already exists (built beforehand with CREATE INDEX CONCURRENTLY, under its name)
is left as it is.
"""

from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# name -> columns; the same in server_svc/store/tables.py.
INDEXES = {
    'ix_jobs_state_update_time': ['state', 'update_time'],
    'ix_jobs_update_time': ['update_time', 'job_id'],
    'ix_jobs_create_time': ['create_time', 'job_id'],
    'ix_jobs_queue': ['queue', 'job_id'],
    'ix_jobs_priority': ['priority', 'job_id'],
    'ix_jobs_error_code': ['error_code', 'job_id'],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, 'jobs', columns, unique=False, if_not_exists=True)


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.drop_index(name, table_name='jobs')
