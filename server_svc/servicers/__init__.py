"""The gRPC edge: the servicers (who is calling, is the request well formed), the access table,
and `convert`, the only place that turns protobuf into domain types and back."""

__all__ = ["access", "convert", "dispatch_servicer", "job_servicer", "queue_servicer", "storage_servicer"]
