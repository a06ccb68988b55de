"""The server's tables and the repositories that read and write them, returning typed records.
They decide nothing: a change of a job is the domain's to decide."""

__all__ = ["actions", "commands", "dispatch", "events", "job_rows", "jobs", "queue_store", "storage_store",
           "submission", "tables", "watchdog"]
