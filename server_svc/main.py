"""Entry point of the job server: `panda serve server` or `python -m server_svc`."""

from __future__ import annotations

import asyncio
import logging

import grpc

from panda.harvester.v1 import harvester_service_pb2_grpc, instance_service_pb2_grpc
from panda.server.v1 import (
    dispatch_service_pb2_grpc,
    job_service_pb2_grpc,
    queue_service_pb2_grpc,
    storage_service_pb2_grpc,
)
from panda_runtime.service import bootstrap
from panda_runtime.service.db import DbRunner, ensure_migrated, make_engine
from server_svc.logic.dispatch_hub import DispatchHub
from server_svc.logic.harvester import HarvesterOperations
from server_svc.logic.job_metrics import JobCountCollector
from server_svc.logic.jobs import JobOperations
from server_svc.logic.pilots import PilotRegistry
from server_svc.logic.queues import QueueOperations
from server_svc.logic.storage import StorageOperations
from server_svc.logic.watchdog import run_watchdog
from server_svc.servicers.access import ACCESS
from server_svc.servicers.dispatch_servicer import DispatchServicer
from server_svc.servicers.harvester_servicer import HarvesterServicer
from server_svc.servicers.instance_servicer import InstanceServicer
from server_svc.servicers.job_servicer import JobServicer
from server_svc.servicers.queue_servicer import QueueServicer
from server_svc.servicers.storage_servicer import StorageServicer
from server_svc.settings import ServerSettings
from server_svc.store.actions import JobActionStore
from server_svc.store.commands import CommandStore
from server_svc.store.dispatch import DispatchStore
from server_svc.store.events import EventLog
from server_svc.store.harvester_store import HarvesterStore
from server_svc.store.jobs import JobStore
from server_svc.store.pilots import PilotStore
from server_svc.store.queue_store import QueueStore
from server_svc.store.storage_store import StorageStore
from server_svc.store.submission import SubmissionStore
from server_svc.store.watchdog import WatchdogStore
from server_svc.store.worker_store import WorkerStore

__all__ = ["SERVICE_NAMES", "main", "run", "serve"]

log = logging.getLogger("panda.server")

SERVICE_NAMES = [
    "panda.server.v1.JobService",
    "panda.server.v1.DispatchService",
    "panda.server.v1.QueueService",
    "panda.server.v1.StorageService",
    "panda.harvester.v1.HarvesterService",
    "panda.harvester.v1.InstanceService",
]


async def serve(settings: ServerSettings) -> None:
    engine = make_engine(settings.resolved_database_url)
    ensure_migrated(engine)
    db = DbRunner(engine)
    queue_store = QueueStore(engine)
    pilot_store = PilotStore(engine)
    hub = DispatchHub(settings, db, DispatchStore(engine), CommandStore(engine), queue_store, pilot_store)
    jobs = JobOperations(
        db, JobStore(engine), SubmissionStore(engine), JobActionStore(engine), EventLog(engine), hub
    )
    queues = QueueOperations(db, queue_store, hub)
    storage = StorageOperations(db, StorageStore(engine))
    harvester = HarvesterOperations(settings, db, HarvesterStore(engine), WorkerStore(engine))

    def register(server: grpc.aio.Server) -> None:
        job_service_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(settings, jobs), server)
        queue_service_pb2_grpc.add_QueueServiceServicer_to_server(QueueServicer(queues), server)
        storage_service_pb2_grpc.add_StorageServiceServicer_to_server(StorageServicer(storage), server)
        harvester_service_pb2_grpc.add_HarvesterServiceServicer_to_server(HarvesterServicer(harvester), server)
        instance_service_pb2_grpc.add_InstanceServiceServicer_to_server(InstanceServicer(harvester), server)
        dispatch_service_pb2_grpc.add_DispatchServiceServicer_to_server(
            DispatchServicer(settings, queues, hub, PilotRegistry(db, pilot_store)), server
        )

    server, health, _ = bootstrap.build_server(
        address=settings.server_address, service_names=SERVICE_NAMES, register=register,
        settings=settings, access=ACCESS,
    )
    metrics = bootstrap.start_metrics(settings.metrics_host, settings.metrics_port, component="server",
                                      engine=engine, collectors=[JobCountCollector(queue_store)])
    hub.start()
    watchdog = asyncio.create_task(run_watchdog(settings, db, WatchdogStore(engine), hub))
    await server.start()
    await bootstrap.set_serving(health, SERVICE_NAMES, True)
    log.info("server listening on %s (database %s)", settings.server_address,
             engine.url.render_as_string(hide_password=True))

    async def on_stop() -> None:
        await bootstrap.set_serving(health, SERVICE_NAMES, False)
        watchdog.cancel()
        await hub.stop()

    try:
        await bootstrap.run_until_signalled(server, on_stop)
    finally:
        metrics.close()
        db.close()
    log.info("server stopped")


def run(settings: ServerSettings | None = None) -> None:
    bootstrap.run_service(serve, settings or ServerSettings())


def main() -> None:
    run()


if __name__ == "__main__":
    main()
