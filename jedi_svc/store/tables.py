"""Tables owned by JEDI. Only jedi_svc reads or writes them; what it needs from the server it
asks over gRPC."""

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
    UniqueConstraint,
)

from panda_runtime.service.db import Id, Time, new_metadata

__all__ = ["commands", "contents", "datasets", "files", "jobs", "metadata", "task_events", "tasks", "watch_cursors"]

metadata = new_metadata()

tasks = Table(
    "jedi_tasks",
    metadata,
    Column("task_id", Id, primary_key=True, autoincrement=True),
    Column("task_name", String(256), nullable=False),
    Column("owner", String(256), nullable=False),
    Column("vo", String(64), nullable=False, default="", server_default=""),
    Column("working_group", String(256), nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("state_reason", Text, nullable=False, default=""),
    # The state to go back to after PENDING or PAUSED.
    Column("resume_state", String(16), nullable=False, default=""),
    # The parameters as submitted (TaskParams as JSON) and the split they resolved to.
    Column("params", JSON, nullable=False),
    Column("split_kind", String(8), nullable=False),
    Column("split_value", Float, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("queues", JSON, nullable=False),
    Column("excluded_queues", JSON, nullable=False),
    # What each new job asks for (the scouts change memory and walltime).
    Column("cores", Integer, nullable=False),
    Column("memory_mb", BigInteger, nullable=False),
    Column("walltime_seconds", BigInteger, nullable=False),
    Column("disk_mb", BigInteger, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("scout_jobs", Integer, nullable=False),
    Column("max_failure_rate", Float, nullable=False),
    Column("output_dataset_id", BigInteger, nullable=True),
    # Scouts: True once their measurements were applied (or when there are none).
    Column("scouted", Boolean, nullable=False, default=False),
    Column("scout_report", JSON, nullable=False),
    # Ended job attempts, for the failure rate.
    Column("jobs_finished", Integer, nullable=False, default=0),
    Column("jobs_failed", Integer, nullable=False, default=0),
    # Counters for job serial numbers and submission batches (request ids).
    Column("next_serial", Integer, nullable=False, default=1),
    Column("next_batch", Integer, nullable=False, default=1),
    # Not before this time: brokerage of a pending task, and the like.
    Column("wait_until", Time, nullable=True),
    Column("request_id", String(64), nullable=True),
    # The caller who sent request_id (its key, not anyone else's) and the digest of its request.
    Column("request_caller", String(256), nullable=True),
    Column("request_digest", String(32), nullable=True),
    # Random, made at submission: part of the request ids of the task's job batches.
    Column("token", String(32), nullable=False),
    Column("create_time", Time, nullable=False),
    Column("update_time", Time, nullable=False),
    Column("start_time", Time, nullable=True),
    Column("end_time", Time, nullable=True),
    Index("ix_jedi_tasks_state", "state"),
    Index("ix_jedi_tasks_owner", "owner"),
    Index("ix_jedi_tasks_request_id", "request_id"),
)

# Every state change and notable decision of a task: its history and the WatchTasks log.
task_events = Table(
    "jedi_task_events",
    metadata,
    Column("cursor", Id, primary_key=True, autoincrement=True),
    Column("task_id", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("previous_state", String(16), nullable=False, default=""),
    Column("time", Time, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Index("ix_jedi_task_events_task_id", "task_id"),
)

datasets = Table(
    "jedi_datasets",
    metadata,
    Column("dataset_id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("owner", String(256), nullable=False, default=""),
    Column("task_id", BigInteger, nullable=False, default=0),
    Column("request_id", String(64), nullable=True),
    # The caller who sent request_id (its key, not anyone else's) and the digest of its request.
    Column("request_caller", String(256), nullable=True),
    Column("request_digest", String(32), nullable=True),
    Column("create_time", Time, nullable=False),
    Column("update_time", Time, nullable=False),
    # The scope its files are registered in (an output dataset: its task owner's).
    Column("scope", String(128), nullable=False, default="", server_default=""),
    UniqueConstraint("name", name="uq_jedi_datasets_name"),
    Index("ix_jedi_datasets_request_id", "request_id"),
)

files = Table(
    "jedi_files",
    metadata,
    Column("file_id", Id, primary_key=True, autoincrement=True),
    Column("dataset_id", Id, ForeignKey("jedi_datasets.dataset_id", ondelete="CASCADE"), nullable=False),
    # With lfn, the file's identity.
    Column("scope", String(128), nullable=False, default="", server_default=""),
    Column("lfn", String(1024), nullable=False),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("adler32", String(8), nullable=False, default=""),
    Column("events", BigInteger, nullable=False, default=0),
    Column("storage_elements", JSON, nullable=False),
    # Output files: the server job that made them.
    Column("job_id", BigInteger, nullable=False, default=0),
    Column("create_time", Time, nullable=False),
    UniqueConstraint("dataset_id", "lfn", name="uq_jedi_files_dataset_id_lfn"),
)

# A task's inputs cut into chunks (a file, or a range of its events): PanDA's dataset contents.
contents = Table(
    "jedi_contents",
    metadata,
    Column("content_id", Id, primary_key=True, autoincrement=True),
    Column("task_id", BigInteger, nullable=False),
    Column("file_id", BigInteger, nullable=False),
    Column("first_event", BigInteger, nullable=False, default=0),
    # 0: the whole file.
    Column("n_events", BigInteger, nullable=False, default=0),
    # The job of the first split this chunk goes to; retried chunks run one per job.
    Column("split_group", Integer, nullable=False),
    # ready, running, finished, failed, cancelled
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    # The JEDI job (jedi_jobs.row_id) of the latest attempt.
    Column("job_row", BigInteger, nullable=False, default=0),
    Column("error_code", Integer, nullable=False, default=0),
    Column("error_diag", Text, nullable=False, default=""),
    Index("ix_jedi_contents_task_status", "task_id", "status"),
)

# Jobs JEDI generated: a batch is stored first (state submitting), then sent to the server
# with a request id made of the task and batch number, so a crash in between cannot create a
# job twice; the server's job id is recorded when the call returns.
jobs = Table(
    "jedi_jobs",
    metadata,
    Column("row_id", Id, primary_key=True, autoincrement=True),
    Column("task_id", BigInteger, nullable=False),
    Column("serial", Integer, nullable=False),
    Column("batch", Integer, nullable=False),
    Column("job_id", BigInteger, nullable=True),
    # submitting, then the server's job state names.
    Column("state", String(16), nullable=False),
    Column("scout", Boolean, nullable=False, default=False),
    Column("queue", String(64), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("content_ids", JSON, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("output_lfn", String(1024), nullable=False),
    # The server event last applied to this job (events older than it are ignored).
    Column("last_cursor", BigInteger, nullable=False, default=0),
    Column("error_code", Integer, nullable=False, default=0),
    Column("error_diag", Text, nullable=False, default=""),
    Column("max_rss_mb", BigInteger, nullable=False, default=0),
    Column("walltime_used", Float, nullable=False, default=0.0),
    Column("cpu_seconds", Float, nullable=False, default=0.0),
    Column("create_time", Time, nullable=False),
    Column("end_time", Time, nullable=True),
    Index("ix_jedi_jobs_task_state", "task_id", "state"),
    Index("ix_jedi_jobs_job_id", "job_id"),
    Index("ix_jedi_jobs_task_batch", "task_id", "batch"),
)

# Commands whose work reaches the server (kill, finish, reassign): done by an agent, so a
# restart finishes what was accepted.
commands = Table(
    "jedi_commands",
    metadata,
    Column("command_id", Id, primary_key=True, autoincrement=True),
    Column("task_id", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("args", JSON, nullable=False),
    Column("create_time", Time, nullable=False),
    Column("done_time", Time, nullable=True),
    Index("ix_jedi_commands_pending", "done_time"),
)

# Where JEDI is in the server's job event log (one row, name "server").
watch_cursors = Table(
    "jedi_watch_cursors",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("cursor", BigInteger, nullable=False),
    Column("update_time", Time, nullable=False),
)
