"""Harvester: provisions pilots ("workers") on the resource behind each queue through a plugin
(local processes, Slurm, HTCondor, Kubernetes), follows them until they end and cleans up after
them, and stands between the server and pilots that have no route to it (a gRPC relay, or files
in a shared access point).

Whoever starts it (`panda serve harvester`, `panda up`, the tests) uses `harvester_svc.main`
and `harvester_svc.settings`, nothing else."""
