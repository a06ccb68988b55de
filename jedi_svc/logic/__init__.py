"""JEDI's agents and their loops, and its client of the server; domain types only."""

__all__ = [
    "agents", "commander", "generator", "metrics", "postprocessor", "refiner", "server_client", "submitter",
    "watcher",
]
