"""Harvester's gRPC edge: the relay's DispatchService."""
