"""storage elements and scopes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 09:00:00

Storage elements become configured objects: a table of them (id, URL, the queues and VOs that
may use each), and queues and job files name one by its id instead of holding a URL. Each URL a
queue held becomes an element named after the (first, by id) queue that held it, open to every
queue and VO as the URL was; job files that held that URL name the element, and so do JEDI's
replicas and the job batches it stored but has not sent. A job file whose URL no queue held (a job
chose it) names none: its pilot refuses to stage it; such a replica is dropped.

Files are known by (scope, lfn): job files, JEDI's datasets and their files get a scope, the
owner's user scope (`user.<owner>`) for what exists already, and job files are found by (scope,
lfn) instead of lfn alone. Files already on a storage element stay where they are
(`<element>/<lfn>`); the README says where they go (`<element>/<scope>/<lfn>`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_elements = sa.table(
    'storage_elements',
    sa.column('storage_element_id', sa.String), sa.column('url', sa.String), sa.column('queues', sa.JSON),
    sa.column('vos', sa.JSON), sa.column('description', sa.Text), sa.column('create_time', sa.DateTime(timezone=True)),
    sa.column('update_time', sa.DateTime(timezone=True)),
)
_queues = sa.table('queues', sa.column('queue_id', sa.String), sa.column('storage_element', sa.String))
_files = sa.table('job_files', sa.column('storage_element', sa.String))


def _remap_jedi(conn: sa.Connection, element_of: Mapping[str, str]) -> None:
    """JEDI's replicas (jedi_files.storage_elements, few distinct lists) and the files of the job
    batches it stored and has not sent (jedi_jobs.spec) named as `element_of` says; a name it
    does not know is dropped."""
    distinct = conn.execute(sa.text("SELECT DISTINCT CAST(storage_elements AS TEXT) FROM jedi_files")).scalars()
    for old in list(distinct):
        new = json.dumps([element_of[se] for se in json.loads(old) if se in element_of])
        conn.execute(sa.text("UPDATE jedi_files SET storage_elements = :new WHERE CAST(storage_elements AS TEXT) = :old")
                     .bindparams(sa.bindparam('new', type_=sa.JSON), sa.bindparam('old')),
                     {'new': json.loads(new), 'old': old})
    stored = conn.execute(sa.text("SELECT row_id, CAST(spec AS TEXT) FROM jedi_jobs WHERE state = 'submitting'")).all()
    for row_id, text in stored:
        spec: dict[str, Any] = json.loads(text)
        for file in spec.get('files', []):
            if file.get('storage_element'):
                file['storage_element'] = element_of.get(file['storage_element'], '')
        conn.execute(sa.text("UPDATE jedi_jobs SET spec = :spec WHERE row_id = :row_id")
                     .bindparams(sa.bindparam('spec', type_=sa.JSON)), {'spec': spec, 'row_id': row_id})


def _add_scope(table: str) -> None:
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column('scope', sa.String(length=128), server_default='', nullable=False))


def upgrade() -> None:
    op.create_table(
        'storage_elements',
        sa.Column('storage_element_id', sa.String(length=64), nullable=False),
        sa.Column('url', sa.String(length=1024), nullable=False),
        sa.Column('queues', sa.JSON(), nullable=False),
        sa.Column('vos', sa.JSON(), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('storage_element_id', name=op.f('pk_storage_elements')),
    )
    conn = op.get_bind()
    held = conn.execute(sa.select(_queues.c.queue_id, _queues.c.storage_element)
                        .where(_queues.c.storage_element != '').order_by(_queues.c.queue_id)).all()
    element_of: dict[str, str] = {}
    for queue_id, url in held:
        element_of.setdefault(url, queue_id)
    now = datetime.now(UTC)
    if element_of:
        op.bulk_insert(_elements, [
            {'storage_element_id': element_id, 'url': url, 'queues': [], 'vos': [], 'create_time': now,
             'update_time': now, 'description': f'the storage element of queue {element_id} before 0008'}
            for url, element_id in element_of.items()
        ])
    for url, element_id in element_of.items():
        conn.execute(sa.update(_queues).where(_queues.c.storage_element == url).values(storage_element=element_id))
        conn.execute(sa.update(_files).where(_files.c.storage_element == url).values(storage_element=element_id))
    # What is left is a URL a job chose itself: no configured element holds it.
    conn.execute(sa.update(_files).where(_files.c.storage_element.like('%://%')).values(storage_element=''))
    _remap_jedi(conn, element_of)

    for table in ('job_files', 'jedi_datasets', 'jedi_files'):
        _add_scope(table)
    op.execute("UPDATE job_files SET scope = 'user.' || (SELECT owner FROM jobs WHERE jobs.job_id = job_files.job_id)")
    op.execute("UPDATE jedi_datasets SET scope = 'user.' || owner")
    op.execute("UPDATE jedi_files SET scope ="
               " (SELECT scope FROM jedi_datasets d WHERE d.dataset_id = jedi_files.dataset_id)")
    with op.batch_alter_table('job_files') as batch:
        batch.drop_index('ix_job_files_lfn')
        batch.create_index('ix_job_files_scope_lfn', ['scope', 'lfn'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('job_files') as batch:
        batch.drop_index('ix_job_files_scope_lfn')
        batch.create_index('ix_job_files_lfn', ['lfn'], unique=False)
    # Dropped in place: SQLite's batch mode would copy the tables anew, and dropping a parent
    # table's old copy would take its children's rows with it (ON DELETE CASCADE).
    for table in ('jedi_files', 'jedi_datasets', 'job_files'):
        op.execute(f"ALTER TABLE {table} DROP COLUMN scope")
    conn = op.get_bind()
    url_of = dict(conn.execute(sa.select(_elements.c.storage_element_id, _elements.c.url)).all())
    for element_id, url in url_of.items():
        conn.execute(sa.update(_queues).where(_queues.c.storage_element == element_id).values(storage_element=url))
        conn.execute(sa.update(_files).where(_files.c.storage_element == element_id).values(storage_element=url))
    _remap_jedi(conn, url_of)
    op.drop_table('storage_elements')
