"""What the harvester APIs do, over the harvester stores: each call in the database's threads,
with the server's clock and its heartbeat interval for instances."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from panda_runtime.service.db import DbRunner
from panda_runtime.service.db import now as utc_now
from panda_runtime.service.errors import ServiceError
from panda_runtime.service.principals import Principal
from server_svc.domain.harvester import (
    HarvesterCommand,
    HarvesterInstance,
    LimitValue,
    QueueConfig,
    QueueLoad,
    is_alive,
)
from server_svc.domain.harvester_workers import Worker, WorkerReport
from server_svc.settings import ServerSettings
from server_svc.store.harvester_store import HarvesterStore
from server_svc.store.worker_store import WorkerStore

__all__ = ["HarvesterOperations"]


class HarvesterOperations:
    def __init__(self, settings: ServerSettings, db: DbRunner, store: HarvesterStore, workers: WorkerStore) -> None:
        self._db = db
        self._store = store
        self._workers = workers
        self.heartbeat_interval_seconds = settings.harvester_heartbeat_interval_seconds

    def alive(self, instance: HarvesterInstance) -> bool:
        return is_alive(instance.heartbeat_time, utc_now(), self.heartbeat_interval_seconds)

    # -- instances --------------------------------------------------------------------------------

    async def register(self, harvester_id: str, version: str, host: str, configs: Sequence[QueueConfig],
                       caller: Principal) -> HarvesterInstance:
        now = utc_now()
        instance = HarvesterInstance(harvester_id, caller.subject, version, host, [], now, now)
        return await self._db.run(self._store.register, instance, configs, caller, self.heartbeat_interval_seconds)

    async def heartbeat(self, harvester_id: str, caller: Principal) -> list[HarvesterCommand]:
        return await self._db.run(self._store.heartbeat, harvester_id, caller, utc_now())

    async def report(self, harvester_id: str, reports: Sequence[WorkerReport],
                     caller: Principal) -> list[ServiceError | None]:
        return await self._db.run(self._workers.report, harvester_id, reports, caller, utc_now())

    async def complete(self, harvester_id: str, results: Sequence[tuple[int, bool, str]], caller: Principal) -> None:
        await self._db.run(self._store.complete_commands, harvester_id, results, caller, utc_now())

    async def queue_loads(self, queue_ids: Sequence[str]) -> list[QueueLoad]:
        return await self._db.run(self._store.queue_loads, queue_ids)

    # -- operators --------------------------------------------------------------------------------

    async def kill_worker(self, worker_id: str, reason: str, issuer: str) -> HarvesterCommand:
        return await self._db.run(self._store.kill_worker, worker_id, reason, issuer, utc_now())

    async def set_queue_limits(self, queue_id: str, limits: Mapping[str, LimitValue], issuer: str) -> HarvesterCommand:
        return await self._db.run(self._store.set_queue_limits, queue_id, limits, issuer, utc_now())

    # -- reads ------------------------------------------------------------------------------------

    async def get_worker(self, worker_id: str) -> Worker:
        return await self._db.run(self._workers.get, worker_id)

    async def list_workers(self, *, queue: str, states: Collection[str], harvester_id: str,
                           after: tuple[datetime, str] | None, limit: int) -> tuple[list[Worker], int]:
        return await self._db.run(self._workers.list_workers, queue=queue, states=states, harvester_id=harvester_id,
                                  after=after, limit=limit)

    async def get_instance(self, harvester_id: str) -> HarvesterInstance:
        return await self._db.run(self._store.get_instance, harvester_id)

    async def list_instances(self, *, after: str, limit: int) -> list[HarvesterInstance]:
        return await self._db.run(self._store.list_instances, after=after, limit=limit)

    async def get_config(self, queue_id: str) -> QueueConfig:
        return await self._db.run(self._store.get_config, queue_id)

    async def list_configs(self, *, harvester_id: str, after: str, limit: int) -> list[QueueConfig]:
        return await self._db.run(self._store.list_configs, harvester_id=harvester_id, after=after, limit=limit)

    async def list_commands(self, harvester_id: str, *, before: int, limit: int) -> list[HarvesterCommand]:
        return await self._db.run(self._store.list_commands, harvester_id, before=before, limit=limit)
