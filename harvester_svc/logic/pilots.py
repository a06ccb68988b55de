"""What a worker runs: the pilot's command and environment, made from harvester's settings."""

from __future__ import annotations

import sys

from harvester_svc.domain.queue_config import QueueConfig
from harvester_svc.domain.workers import WorkerRecord, WorkerSpec
from harvester_svc.settings import HarvesterSettings

__all__ = ["PilotLaunch"]


class PilotLaunch:
    def __init__(self, settings: HarvesterSettings) -> None:
        self._settings = settings
        self._server = settings.harvester_pilot_server or settings.server_address

    def environment(self, worker_id: str) -> dict[str, str]:
        """The pilot's own credentials (never harvester's), where the server is, who its worker is."""
        settings = self._settings
        environment = {
            "PANDA_SERVER": self._server,
            "PANDA_WORKER_ID": worker_id,
            "PANDA_CLIENT_ID": settings.harvester_pilot_client_id if not settings.harvester_pilot_token_file else "",
            "PANDA_CLIENT_SECRET": settings.harvester_pilot_client_secret
            if not settings.harvester_pilot_token_file else "",
            "PANDA_TOKEN": "",
            "PANDA_TOKEN_FILE": settings.harvester_pilot_token_file,
        }
        if settings.iam_issuer:
            environment["PANDA_IAM_ISSUER"] = settings.iam_issuer
        return environment

    def command(self, config: QueueConfig, worker_id: str, access_point: str) -> tuple[str, ...]:
        resources = config.resources
        return (
            sys.executable, "-m", "pilot_agent", "--queue", config.name, "--server", self._server,
            "--worker-id", worker_id, "--workdir", f"{access_point}/work", "--cores", str(resources.cores),
            "--memory-mb", str(resources.memory_mb), "--lifetime", str(resources.walltime_seconds),
            "--idle-timeout", str(self._settings.harvester_pilot_idle_seconds),
        )

    def spec(self, config: QueueConfig, worker: WorkerRecord) -> WorkerSpec:
        return WorkerSpec(
            worker_id=worker.worker_id, queue_id=worker.queue, access_point=worker.access_point,
            cores=worker.cores, memory_mb=worker.memory_mb, walltime_seconds=worker.walltime_seconds,
            pilot_command=self.command(config, worker.worker_id, worker.access_point),
            environment=self.environment(worker.worker_id), parameters=config.submitter.parameters,
        )
