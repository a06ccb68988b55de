"""What a worker runs: the pilot's command and environment, made from harvester's settings and
the queue's messenger. A pilot of the `grpc` messenger talks to the server with the pilot
robot's credentials; one of the `relay` messenger talks to harvester's relay with its worker's
relay token, and never holds a credential of the server's; one of the `shared_files` messenger
talks to nobody: files in its access point are its stream, and it holds no credential at all."""

from __future__ import annotations

import sys

from harvester_svc.domain.queue_config import MessengerType, QueueConfig
from harvester_svc.domain.relay_tokens import relay_token
from harvester_svc.domain.workers import WorkerRecord, WorkerSpec
from harvester_svc.logic.file_messenger import messenger_address
from harvester_svc.settings import HarvesterSettings

__all__ = ["PilotLaunch"]


class PilotLaunch:
    def __init__(self, settings: HarvesterSettings, relay_key: bytes) -> None:
        self._settings = settings
        self._relay_key = relay_key
        self._server = settings.harvester_pilot_server or settings.server_address
        self._relay = settings.harvester_relay_address or settings.harvester_address

    def address(self, config: QueueConfig, access_point: str) -> str:
        if config.messenger == MessengerType.SHARED_FILES:
            return messenger_address(access_point)
        return self._relay if config.messenger == MessengerType.RELAY else self._server

    def environment(self, config: QueueConfig, worker_id: str, access_point: str) -> dict[str, str]:
        settings = self._settings
        environment = {"PANDA_SERVER": self.address(config, access_point), "PANDA_WORKER_ID": worker_id}
        if config.messenger == MessengerType.SHARED_FILES:  # it talks to nobody: no credential at all
            return {**environment, "PANDA_TOKEN": "", "PANDA_TOKEN_FILE": "", "PANDA_CLIENT_ID": "",
                    "PANDA_CLIENT_SECRET": ""}
        if config.messenger == MessengerType.RELAY:
            return {**environment, "PANDA_TOKEN": relay_token(self._relay_key, worker_id), "PANDA_TOKEN_FILE": "",
                    "PANDA_CLIENT_ID": "", "PANDA_CLIENT_SECRET": ""}
        token_file = settings.harvester_pilot_token_file
        environment.update({
            "PANDA_TOKEN": "",
            "PANDA_TOKEN_FILE": token_file,
            "PANDA_CLIENT_ID": "" if token_file else settings.harvester_pilot_client_id,
            "PANDA_CLIENT_SECRET": "" if token_file else settings.harvester_pilot_client_secret,
        })
        if settings.iam_issuer:
            environment["PANDA_IAM_ISSUER"] = settings.iam_issuer
        return environment

    def command(self, config: QueueConfig, worker_id: str, access_point: str) -> tuple[str, ...]:
        resources = config.resources
        command = (
            sys.executable, "-m", "pilot_agent", "--queue", config.name, "--server",
            self.address(config, access_point), "--worker-id", worker_id, "--workdir", f"{access_point}/work",
            "--cores", str(resources.cores), "--memory-mb", str(resources.memory_mb),
            "--lifetime", str(resources.walltime_seconds),
            "--idle-timeout", str(self._settings.harvester_pilot_idle_seconds),
        )
        # A push worker runs the jobs harvester fetched for it, and then it is done.
        return (*command, "--max-jobs", str(config.n_jobs_per_worker)) if config.map_type.is_push else command

    def spec(self, config: QueueConfig, worker: WorkerRecord) -> WorkerSpec:
        return WorkerSpec(
            worker_id=worker.worker_id, queue_id=worker.queue, access_point=worker.access_point,
            cores=worker.cores, memory_mb=worker.memory_mb, walltime_seconds=worker.walltime_seconds,
            pilot_command=self.command(config, worker.worker_id, worker.access_point),
            environment=self.environment(config, worker.worker_id, worker.access_point),
            parameters=config.submitter.parameters,
        )
