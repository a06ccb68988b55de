"""Alembic environment: one migration history for every service's tables."""

from __future__ import annotations

from alembic import context

from harvester_svc.store.tables import metadata as harvester_metadata
from iam_svc.store.tables import metadata as iam_metadata
from jedi_svc.store.tables import metadata as jedi_metadata
from panda_runtime.service.db import make_engine
from server_svc.store.tables import metadata as server_metadata

target_metadata = [server_metadata, jedi_metadata, iam_metadata, harvester_metadata]


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url
    engine = make_engine(url, pool_size=1)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
