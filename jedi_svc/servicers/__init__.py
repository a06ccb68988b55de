"""JEDI's gRPC edge: TaskService and DatasetService, who may call them, and the only
conversion between panda.jedi.v1 messages and JEDI's types."""

__all__ = ["access", "convert", "dataset_servicer", "task_servicer"]
