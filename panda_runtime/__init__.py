"""Shared runtime of PanDA mesh, in two halves: `panda_runtime.client` for every caller (the
pilot, the command line, services calling each other) and `panda_runtime.service` for the
services themselves (database, gRPC server, token check). Settings are common to both.
Services import this package and generated stubs, never each other."""
