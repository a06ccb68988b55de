"""The server's rules, with no I/O: the job state machine, what a submitted job starts as, how a
pilot's update applies, the retry policy, the watchdogs, what users may do to jobs, queues'
limits, storage elements, and handing jobs to pilots. Each rule is a function over the
typed records here."""

__all__ = ["dispatch", "error_codes", "job_specs", "jobs", "pilot_updates", "queues", "retry", "states",
           "storage", "submission", "user_actions", "watchdog"]
