"""JEDI: tasks into jobs (splitting, brokerage, scouts, retries), by agents that follow the
rules of its domain and call the server over gRPC.

Whoever starts it (`panda serve jedi`, `panda up` through the launcher, the test clusters)
uses `jedi_svc.main` (its `__all__`: `run`, `serve`, `SERVICE_NAMES`) and `jedi_svc.settings`,
nothing else."""
