"""harvester registry

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-20 09:00:00

The server's registry of harvester: its instances (each owned by the token subject that first
registered it), how each provisions its queues (one instance per queue), the workers they
report, and the commands operators queue for them. Jobs gain `worker_id`: the worker of the
pilot a job was last sent to (NULL for a pilot that named none, and for every job sent before),
in a partial index that holds only the jobs that have one, so the jobs of other pilots cost it
nothing. Adding the column is a change of the catalogue alone on both databases (a nullable
column without a default): the jobs table is not rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

# name -> columns; the same in server_svc/store/tables.py.
WORKER_INDEXES = {
    'ix_harvester_workers_create_time': ['create_time', 'worker_id'],
    'ix_harvester_workers_queue': ['queue', 'create_time', 'worker_id'],
    'ix_harvester_workers_state': ['state', 'create_time', 'worker_id'],
    'ix_harvester_workers_harvester_id': ['harvester_id', 'create_time', 'worker_id'],
    'ix_harvester_workers_counts': ['state', 'harvester_id', 'queue'],
}


def upgrade() -> None:
    op.create_table(
        'harvester_instances',
        sa.Column('harvester_id', sa.String(length=64), nullable=False),
        sa.Column('subject', sa.String(length=256), nullable=False),
        sa.Column('version', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=256), nullable=False),
        sa.Column('register_time', _TIME, nullable=False),
        sa.Column('heartbeat_time', _TIME, nullable=False),
        sa.PrimaryKeyConstraint('harvester_id', name=op.f('pk_harvester_instances')),
    )
    op.create_table(
        'harvester_queue_configs',
        sa.Column('queue_id', sa.String(length=64), nullable=False),
        sa.Column('harvester_id', sa.String(length=64), nullable=False),
        sa.Column('online', sa.Boolean(), nullable=False),
        sa.Column('map_type', sa.String(length=16), nullable=False),
        sa.Column('queue_limit_workers', sa.Integer(), nullable=False),
        sa.Column('max_workers', sa.Integer(), nullable=False),
        sa.Column('max_new_workers_per_cycle', sa.Integer(), nullable=False),
        sa.Column('queue_limit_jobs', sa.Integer(), nullable=False),
        sa.Column('jobs_per_worker', sa.Integer(), nullable=False),
        sa.Column('cores', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.BigInteger(), nullable=False),
        sa.Column('walltime_seconds', sa.BigInteger(), nullable=False),
        sa.Column('disk_mb', sa.BigInteger(), nullable=False),
        sa.Column('plugin', sa.String(length=16), nullable=False),
        sa.Column('plugin_parameters', sa.JSON(), nullable=False),
        sa.Column('messenger', sa.String(length=16), nullable=False),
        sa.Column('worker_queued_timeout_seconds', sa.Integer(), nullable=False),
        sa.Column('worker_heartbeat_timeout_seconds', sa.Integer(), nullable=False),
        sa.Column('update_time', _TIME, nullable=False),
        sa.ForeignKeyConstraint(['harvester_id'], ['harvester_instances.harvester_id'],
                                name=op.f('fk_harvester_queue_configs_harvester_id_harvester_instances')),
        sa.PrimaryKeyConstraint('queue_id', name=op.f('pk_harvester_queue_configs')),
    )
    op.create_index('ix_harvester_queue_configs_harvester_id', 'harvester_queue_configs',
                    ['harvester_id', 'queue_id'], unique=False)
    op.create_table(
        'harvester_workers',
        sa.Column('worker_id', sa.String(length=128), nullable=False),
        sa.Column('harvester_id', sa.String(length=64), nullable=False),
        sa.Column('queue', sa.String(length=64), nullable=False),
        sa.Column('plugin', sa.String(length=16), nullable=False),
        sa.Column('batch_id', sa.String(length=256), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('node', sa.String(length=256), nullable=False),
        sa.Column('cores', sa.Integer(), nullable=False),
        sa.Column('memory_mb', sa.BigInteger(), nullable=False),
        sa.Column('walltime_seconds', sa.BigInteger(), nullable=False),
        sa.Column('disk_mb', sa.BigInteger(), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('exit_code', sa.Integer(), nullable=False),
        sa.Column('submit_time', _TIME, nullable=True),
        sa.Column('start_time', _TIME, nullable=True),
        sa.Column('end_time', _TIME, nullable=True),
        sa.Column('create_time', _TIME, nullable=False),
        sa.Column('update_time', _TIME, nullable=False),
        sa.PrimaryKeyConstraint('worker_id', name=op.f('pk_harvester_workers')),
    )
    for name, columns in WORKER_INDEXES.items():
        op.create_index(name, 'harvester_workers', columns, unique=False)
    op.create_table(
        'harvester_commands',
        sa.Column('command_id', _ID, autoincrement=True, nullable=False),
        sa.Column('harvester_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('worker_id', sa.String(length=128), nullable=False),
        sa.Column('queue_id', sa.String(length=64), nullable=False),
        sa.Column('limits', sa.JSON(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('result', sa.Text(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('issuer', sa.String(length=256), nullable=False),
        sa.Column('create_time', _TIME, nullable=False),
        sa.Column('update_time', _TIME, nullable=False),
        sa.PrimaryKeyConstraint('command_id', name=op.f('pk_harvester_commands')),
    )
    op.create_index('ix_harvester_commands_harvester_id', 'harvester_commands', ['harvester_id', 'command_id'],
                    unique=False)
    op.create_index('ix_harvester_commands_open', 'harvester_commands', ['harvester_id', 'state'], unique=False)
    # Not in batch mode: SQLite adds a nullable column in place, as PostgreSQL does.
    op.add_column('jobs', sa.Column('worker_id', sa.String(length=128), nullable=True))
    op.create_index('ix_jobs_worker_id', 'jobs', ['worker_id'], unique=False,
                    postgresql_where=sa.text('worker_id IS NOT NULL'), sqlite_where=sa.text('worker_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_jobs_worker_id', table_name='jobs')
    # Dropped in place, as 0009 does: SQLite's batch mode would copy the jobs table anew.
    op.execute("ALTER TABLE jobs DROP COLUMN worker_id")
    op.drop_table('harvester_commands')
    op.drop_table('harvester_workers')
    op.drop_table('harvester_queue_configs')
    op.drop_table('harvester_instances')
