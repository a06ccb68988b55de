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

__all__ = ["job_events", "job_files", "jobs", "metadata", "pilot_commands", "pilots", "queues", "storage_elements"]

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
