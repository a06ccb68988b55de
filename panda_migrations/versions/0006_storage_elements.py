"""storage elements

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 09:00:00

Storage elements become configured objects: a table of them (id, URL, the queues and VOs that
may use each), and queues and job files name one by its id instead of holding a URL. Each URL a
queue held becomes an element named after the (first, by id) queue that held it, open to every
queue and VO as the URL was; job files that held that URL name the element. A job file whose URL
no queue held (a job chose it) names none: its pilot refuses to stage it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
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
             'update_time': now, 'description': f'the storage element of queue {element_id} before 0006'}
            for url, element_id in element_of.items()
        ])
    for url, element_id in element_of.items():
        conn.execute(sa.update(_queues).where(_queues.c.storage_element == url).values(storage_element=element_id))
        conn.execute(sa.update(_files).where(_files.c.storage_element == url).values(storage_element=element_id))
    # What is left is a URL a job chose itself: no configured element holds it.
    conn.execute(sa.update(_files).where(_files.c.storage_element.like('%://%')).values(storage_element=''))


def downgrade() -> None:
    conn = op.get_bind()
    for element_id, url in conn.execute(sa.select(_elements.c.storage_element_id, _elements.c.url)).all():
        conn.execute(sa.update(_queues).where(_queues.c.storage_element == element_id).values(storage_element=url))
        conn.execute(sa.update(_files).where(_files.c.storage_element == element_id).values(storage_element=url))
    op.drop_table('storage_elements')
