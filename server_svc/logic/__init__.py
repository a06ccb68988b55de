"""Orchestration and long-running loops, in domain types: the dispatch hub, the watchdog loop,
the job-count metrics, and what the job, queue and storage element APIs do over the stores."""

__all__ = ["dispatch_hub", "job_metrics", "jobs", "queues", "storage", "watchdog"]
