"""Tables owned by harvester. Only harvester_svc reads or writes them. An instance keeps its
workers here before it tells the batch system or the server anything, so a restart finds every
worker it ever submitted."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Index, Integer, String, Table, Text

from panda_runtime.service.db import Id, Time, new_metadata

__all__ = ["harvester_limits", "harvester_workers", "metadata"]

metadata = new_metadata()

harvester_workers = Table(
    "harvester_svc_workers",
    metadata,
    # The number in the worker's id, "{harvester_id}-{number}".
    Column("number", Id, primary_key=True, autoincrement=True),
    Column("worker_id", String(128), nullable=False, unique=True),
    Column("harvester_id", String(64), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("plugin", String(32), nullable=False),
    # Empty until the batch system took it.
    Column("batch_id", String(128), nullable=False, server_default=""),
    Column("state", String(16), nullable=False),
    Column("node", String(256), nullable=False, server_default=""),
    Column("error", Text, nullable=False, server_default=""),
    Column("exit_code", Integer, nullable=True),
    Column("cores", Integer, nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("walltime_seconds", Integer, nullable=False),
    Column("access_point", Text, nullable=False),
    Column("submit_time", Time, nullable=False),
    Column("start_time", Time, nullable=True),
    Column("end_time", Time, nullable=True),
    Column("update_time", Time, nullable=False),
    # Why it is to be killed (a command, a timeout); empty: it is not.
    Column("kill_reason", Text, nullable=False, server_default=""),
    # The batch system was told to kill it.
    Column("killed", Boolean, nullable=False, server_default="0"),
    # What it left behind was removed (it ended).
    Column("cleaned", Boolean, nullable=False, server_default="0"),
    # Bumped by every change; the server has been told up to reported_version.
    Column("version", Integer, nullable=False, server_default="1"),
    Column("reported_version", Integer, nullable=False, server_default="0"),
    Index("ix_harvester_svc_workers_live", "harvester_id", "cleaned", "queue"),
)

# Limits an operator set on a queue (SetQueueLimits), over the configuration file's.
harvester_limits = Table(
    "harvester_svc_limits",
    metadata,
    Column("harvester_id", String(64), primary_key=True),
    Column("queue", String(64), primary_key=True),
    Column("limits", JSON, nullable=False),
    Column("update_time", Time, nullable=False),
)
