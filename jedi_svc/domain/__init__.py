"""JEDI's rules: pure types and functions, no I/O (each tested without a database)."""

__all__ = [
    "brokerage", "chunks", "commands", "cursors", "datasets", "fairshare", "generation", "jobs", "outcomes",
    "planning", "postprocessing", "progress", "refining", "scouts", "splitting", "states", "task_spec", "tasks",
    "templates",
]
