"""Harvester's rows into typed records (instances, queue configurations, commands), and the lock
that makes one instance's calls take their turns. Shared by the harvester repositories."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from sqlalchemy import Connection, select

from panda_runtime.service.db import aware
from server_svc.domain.harvester import HarvesterCommand, HarvesterInstance, QueueConfig
from server_svc.store.tables import harvester_commands, harvester_instances, harvester_queue_configs

__all__ = [
    "COMMAND_COLUMNS", "CONFIG_COLUMNS", "INSTANCE_COLUMNS", "command_from_row", "config_from_row",
    "instance_from_row", "lock_instance",
]

INSTANCE_COLUMNS = tuple(str(column.name) for column in harvester_instances.columns)
CONFIG_COLUMNS = tuple(str(column.name) for column in harvester_queue_configs.columns)
COMMAND_COLUMNS = tuple(str(column.name) for column in harvester_commands.columns)
assert {f.name for f in fields(HarvesterInstance)} == {*INSTANCE_COLUMNS, "queues", "worker_counts"}
assert {f.name for f in fields(QueueConfig)} == {*CONFIG_COLUMNS, "worker_counts"}
assert {f.name for f in fields(HarvesterCommand)} == set(COMMAND_COLUMNS)


def instance_from_row(row: Mapping[Any, Any], queues: list[str]) -> HarvesterInstance:
    values = {name: row[name] for name in INSTANCE_COLUMNS}
    values["register_time"], values["heartbeat_time"] = aware(row["register_time"]), aware(row["heartbeat_time"])
    return HarvesterInstance(**values, queues=queues)


def config_from_row(row: Mapping[Any, Any]) -> QueueConfig:
    values = {name: row[name] for name in CONFIG_COLUMNS}
    values["update_time"] = aware(row["update_time"])
    return QueueConfig(**values)


def command_from_row(row: Mapping[Any, Any]) -> HarvesterCommand:
    values = {name: row[name] for name in COMMAND_COLUMNS}
    values["create_time"], values["update_time"] = aware(row["create_time"]), aware(row["update_time"])
    return HarvesterCommand(**values)


def instance_queues(conn: Connection, harvester_ids: list[str]) -> dict[str, list[str]]:
    """The queues each instance provisions, sorted."""
    found: dict[str, list[str]] = {harvester_id: [] for harvester_id in harvester_ids}
    if harvester_ids:
        rows = conn.execute(
            select(harvester_queue_configs.c.harvester_id, harvester_queue_configs.c.queue_id)
            .where(harvester_queue_configs.c.harvester_id.in_(harvester_ids))
            .order_by(harvester_queue_configs.c.queue_id)
        )
        for harvester_id, queue_id in rows:
            found[harvester_id].append(queue_id)
    return found


def lock_instance(conn: Connection, harvester_id: str, sqlite: bool) -> HarvesterInstance | None:
    """The instance, its row locked for the transaction (PostgreSQL; SQLite's BEGIN IMMEDIATE
    holds the only write lock already), or None when it was never registered."""
    query = select(harvester_instances).where(harvester_instances.c.harvester_id == harvester_id)
    row = conn.execute(query if sqlite else query.with_for_update()).first()
    if row is None:
        return None
    return instance_from_row(row._mapping, instance_queues(conn, [harvester_id])[harvester_id])
