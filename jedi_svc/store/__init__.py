"""JEDI's tables and the repositories that read and write them, returning typed records."""

__all__ = [
    "command_store", "common", "dataset_store", "generation_store", "postprocess_store", "records", "refine_store",
    "steps", "tables", "task_store", "watch_store",
]
