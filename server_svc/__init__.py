"""The job server: the job lifecycle, dispatch to pilots over one stream each, the watchdogs,
the queue registry.

Whoever starts it (`panda serve server`, `panda up` through the launcher, the test clusters)
uses `server_svc.main` (its `__all__`: `run`, `serve`, `SERVICE_NAMES`) and
`server_svc.settings`, nothing else."""
