"""Tables owned by the server. Only server_svc reads or writes them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from panda_runtime.service.db import Id, Time, new_metadata

__all__ = [
    "harvester_commands", "harvester_instances", "harvester_queue_configs", "harvester_workers", "job_events",
    "job_files", "jobs", "metadata", "pilot_commands", "pilots", "queues", "storage_elements",
]

metadata = new_metadata()

# The configured storage elements: queues and job files name one by its id.
storage_elements = Table(
    "storage_elements",
    metadata,
    Column("storage_element_id", String(64), primary_key=True),
    Column("url", String(1024), nullable=False),
    # Queues and VOs allowed to use it (JSON lists); empty: all.
    Column("queues", JSON, nullable=False),
    Column("vos", JSON, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("create_time", Time, nullable=False),
    Column("update_time", Time, nullable=False),
)

queues = Table(
    "queues",
    metadata,
    Column("queue_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("max_cores", Integer, nullable=False, default=0),
    Column("max_memory_mb", BigInteger, nullable=False, default=0),
    Column("max_walltime_seconds", BigInteger, nullable=False, default=0),
    Column("max_disk_mb", BigInteger, nullable=False, default=0),
    # The id of its storage element ("" for none).
    Column("storage_element", String(1024), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("create_time", Time, nullable=False),
    Column("update_time", Time, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", Id, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("owner", String(256), nullable=False, default=""),
    Column("vo", String(64), nullable=False, default="", server_default=""),
    Column("task_id", BigInteger, nullable=False, default=0),
    Column("priority", Integer, nullable=False, default=0),
    Column("attempt", Integer, nullable=False, default=1),
    Column("max_attempts", Integer, nullable=False),
    Column("command", JSON, nullable=False),
    Column("environment", JSON, nullable=False),
    Column("cores", Integer, nullable=False),
    Column("memory_mb", BigInteger, nullable=False),
    Column("walltime_seconds", BigInteger, nullable=False),
    Column("disk_mb", BigInteger, nullable=False, default=0),
    Column("label", String(256), nullable=False, default=""),
    Column("error_code", Integer, nullable=False, default=0),
    Column("error_diag", Text, nullable=False, default=""),
    Column("exit_code", Integer, nullable=False, default=0),
    Column("log_tail", Text, nullable=False, default=""),
    Column("pilot_id", String(256), nullable=False, default=""),
    Column("node", String(256), nullable=False, default=""),
    Column("max_rss_mb", BigInteger, nullable=False, default=0),
    Column("cpu_seconds", Float, nullable=False, default=0.0),
    # Set when a kill was asked for a job a pilot holds; the job ends cancelled.
    Column("kill_requested", Boolean, nullable=False, default=False),
    Column("request_id", String(64), nullable=True),
    # The caller who sent request_id (its key, not anyone else's) and the digest of its request.
    Column("request_caller", String(256), nullable=True),
    Column("request_digest", String(32), nullable=True),
    Column("create_time", Time, nullable=False),
    Column("update_time", Time, nullable=False),
    # When the job entered its current state: what the watchdogs measure.
    Column("state_time", Time, nullable=False),
    Column("start_time", Time, nullable=True),
    Column("end_time", Time, nullable=True),
    Column("heartbeat_time", Time, nullable=True),
    # The harvester worker of the pilot the job was last sent to (its Hello's worker_id); NULL
    # when that pilot named none. Kept when the job ends or comes back, replaced when it is sent.
    Column("worker_id", String(128), nullable=True),
    # The dispatcher's claim: activated jobs of a queue, best first. Only activated jobs are in
    # it, so the state changes after activation write nothing to it.
    Index("ix_jobs_dispatch", "queue", text("priority DESC"), "job_id",
          postgresql_where=text("state = 'activated'"), sqlite_where=text("state = 'activated'")),
    Index("ix_jobs_state_time", "state", "state_time"),
    Index("ix_jobs_task_id", "task_id"),
    Index("ix_jobs_owner", "owner"),
    Index("ix_jobs_request_id", "request_id"),
    Index("ix_jobs_pilot_id", "pilot_id"),
    # What the monitor reads (migration 0010): pages sorted by a field, keyset on (field, id);
    # counts in a time window of update_time, with or without a state.
    Index("ix_jobs_state_update_time", "state", "update_time"),
    Index("ix_jobs_update_time", "update_time", "job_id"),
    Index("ix_jobs_create_time", "create_time", "job_id"),
    Index("ix_jobs_queue", "queue", "job_id"),
    Index("ix_jobs_priority", "priority", "job_id"),
    Index("ix_jobs_error_code", "error_code", "job_id"),
    # A worker's jobs (migration 0012); only the jobs sent to a harvester's pilots are in it.
    Index("ix_jobs_worker_id", "worker_id", postgresql_where=text("worker_id IS NOT NULL"),
          sqlite_where=text("worker_id IS NOT NULL")),
)

job_files = Table(
    "job_files",
    metadata,
    Column("file_id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False),
    # With lfn, the file's identity: an output name is taken once per scope.
    Column("scope", String(128), nullable=False, default="", server_default=""),
    Column("lfn", String(1024), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("adler32", String(8), nullable=False, default=""),
    Column("storage_element", String(1024), nullable=False, default=""),
    Column("attempt", Integer, nullable=False, default=0),
    Index("ix_job_files_job_id", "job_id"),
    Index("ix_job_files_scope_lfn", "scope", "lfn"),
)

# Every state change, in order: the jobs' history and the WatchJobs log (its id is the cursor).
job_events = Table(
    "job_events",
    metadata,
    Column("cursor", Id, primary_key=True, autoincrement=True),
    Column("job_id", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("previous_state", String(16), nullable=False, default=""),
    Column("time", Time, nullable=False),
    Column("error_code", Integer, nullable=False, default=0),
    Column("reason", Text, nullable=False, default=""),
    Column("queue", String(64), nullable=False, default=""),
    Column("task_id", BigInteger, nullable=False, default=0),
    Index("ix_job_events_job_id", "job_id"),
)

# Commands for pilots (kill...), delivered on the stream of whichever replica holds the pilot.
pilot_commands = Table(
    "pilot_commands",
    metadata,
    Column("command_id", Id, primary_key=True, autoincrement=True),
    Column("job_id", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("pilot_id", String(256), nullable=False, default=""),
    Column("create_time", Time, nullable=False),
    Column("delivered_time", Time, nullable=True),
    Index("ix_pilot_commands_pending", "pilot_id", "delivered_time"),
)

# The pilot identities the server issued: the secret a pilot resumes its identity with (as a
# digest), the token subject it was issued to, and when the pilot was last heard on a stream
# (written in batches, every few seconds: what spares its jobs from the lost-heartbeat rule).
pilots = Table(
    "pilots",
    metadata,
    Column("pilot_id", String(256), primary_key=True),
    Column("secret_digest", String(64), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("node", String(256), nullable=False, default=""),
    Column("first_seen", Time, nullable=False),
    Column("last_seen", Time, nullable=False),
    Index("ix_pilots_last_seen", "last_seen"),
)


# Harvester instances (migration 0012): an id belongs to the token subject that first registered
# it. The queues it provisions are its rows of harvester_queue_configs (one place: a queue taken
# over from a dead instance leaves nothing behind to correct).
harvester_instances = Table(
    "harvester_instances",
    metadata,
    Column("harvester_id", String(64), primary_key=True),
    Column("subject", String(256), nullable=False),
    Column("version", String(64), nullable=False, default=""),
    Column("host", String(256), nullable=False, default=""),
    Column("register_time", Time, nullable=False),
    Column("heartbeat_time", Time, nullable=False),
)

# How each queue is provisioned: one instance per queue, replaced at each registration.
harvester_queue_configs = Table(
    "harvester_queue_configs",
    metadata,
    Column("queue_id", String(64), primary_key=True),
    Column("harvester_id", String(64), ForeignKey("harvester_instances.harvester_id"), nullable=False),
    Column("online", Boolean, nullable=False),
    Column("map_type", String(16), nullable=False),
    Column("queue_limit_workers", Integer, nullable=False),
    Column("max_workers", Integer, nullable=False),
    Column("max_new_workers_per_cycle", Integer, nullable=False),
    Column("queue_limit_jobs", Integer, nullable=False),
    Column("jobs_per_worker", Integer, nullable=False),
    Column("cores", Integer, nullable=False),
    Column("memory_mb", BigInteger, nullable=False),
    Column("walltime_seconds", BigInteger, nullable=False),
    Column("disk_mb", BigInteger, nullable=False),
    Column("plugin", String(16), nullable=False),
    # name -> JSON text
    Column("plugin_parameters", JSON, nullable=False),
    Column("messenger", String(16), nullable=False),
    Column("worker_queued_timeout_seconds", Integer, nullable=False),
    Column("worker_heartbeat_timeout_seconds", Integer, nullable=False),
    Column("update_time", Time, nullable=False),
    Index("ix_harvester_queue_configs_harvester_id", "harvester_id", "queue_id"),
)

# Workers as their instances report them. Lists are newest first (create_time: when the server
# first heard of one, then the id), by queue, state or instance; live workers are counted by
# state for each instance and queue from ix_harvester_workers_counts alone.
harvester_workers = Table(
    "harvester_workers",
    metadata,
    Column("worker_id", String(128), primary_key=True),
    Column("harvester_id", String(64), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("plugin", String(16), nullable=False),
    Column("batch_id", String(256), nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("node", String(256), nullable=False, default=""),
    Column("cores", Integer, nullable=False, default=0),
    Column("memory_mb", BigInteger, nullable=False, default=0),
    Column("walltime_seconds", BigInteger, nullable=False, default=0),
    Column("disk_mb", BigInteger, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    Column("exit_code", Integer, nullable=False, default=0),
    Column("submit_time", Time, nullable=True),
    Column("start_time", Time, nullable=True),
    Column("end_time", Time, nullable=True),
    Column("create_time", Time, nullable=False),
    Column("update_time", Time, nullable=False),
    Index("ix_harvester_workers_create_time", "create_time", "worker_id"),
    Index("ix_harvester_workers_queue", "queue", "create_time", "worker_id"),
    Index("ix_harvester_workers_state", "state", "create_time", "worker_id"),
    Index("ix_harvester_workers_harvester_id", "harvester_id", "create_time", "worker_id"),
    Index("ix_harvester_workers_counts", "state", "harvester_id", "queue"),
)

# Commands operators queued for instances, kept until done (and after, as their record).
harvester_commands = Table(
    "harvester_commands",
    metadata,
    Column("command_id", Id, primary_key=True, autoincrement=True),
    Column("harvester_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("worker_id", String(128), nullable=False, default=""),
    Column("queue_id", String(64), nullable=False, default=""),
    # The QueueLimits fields given (set_queue_limits), by name.
    Column("limits", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("result", Text, nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Column("issuer", String(256), nullable=False),
    Column("create_time", Time, nullable=False),
    Column("update_time", Time, nullable=False),
    Index("ix_harvester_commands_harvester_id", "harvester_id", "command_id"),
    Index("ix_harvester_commands_open", "harvester_id", "state"),
)
