"""Entry point of JEDI (tasks into jobs): `panda serve jedi` or `python -m jedi_svc`.

One process: the gRPC services (TaskService, DatasetService, health, reflection) and the
agents. It talks to the server only over gRPC, at PANDA_SERVER."""

from __future__ import annotations

import logging

from grpc import aio

from jedi_svc.logic.agents import Agents, AgentStores
from jedi_svc.logic.metrics import TaskCountCollector
from jedi_svc.logic.server_client import ServerCalls
from jedi_svc.servicers.access import ACCESS
from jedi_svc.servicers.dataset_servicer import DatasetServicer
from jedi_svc.servicers.task_servicer import TaskServicer
from jedi_svc.settings import JediSettings
from jedi_svc.store.command_store import CommandStore
from jedi_svc.store.dataset_store import DatasetStore
from jedi_svc.store.generation_store import GenerationStore
from jedi_svc.store.postprocess_store import PostprocessStore
from jedi_svc.store.refine_store import RefineStore
from jedi_svc.store.task_store import TaskStore
from jedi_svc.store.watch_store import WatchStore
from panda.jedi.v1 import dataset_service_pb2_grpc, task_service_pb2_grpc
from panda_runtime.client import ConnectConfig
from panda_runtime.service import bootstrap
from panda_runtime.service.db import DbRunner, ensure_migrated, make_engine
from panda_runtime.service.notify import Notifier

__all__ = ["SERVICE_NAMES", "main", "run", "serve"]

log = logging.getLogger("panda.jedi")

SERVICE_NAMES = ["panda.jedi.v1.TaskService", "panda.jedi.v1.DatasetService"]


async def serve(settings: JediSettings) -> None:
    engine = make_engine(settings.resolved_database_url)
    ensure_migrated(engine)
    db = DbRunner(engine)
    tasks, datasets = TaskStore(engine), DatasetStore(engine)
    stores = AgentStores(RefineStore(engine), GenerationStore(engine), WatchStore(engine), PostprocessStore(engine),
                         CommandStore(engine))
    server_client = ServerCalls(ConnectConfig.from_settings(
        settings.server_address, settings, deadline=settings.jedi_server_deadline_seconds,
        unreachable_hint="set PANDA_SERVER", metrics=True))
    task_events = Notifier()
    agents = Agents(settings, db, stores, server_client, task_events)

    def register(server: aio.Server) -> None:
        task_service_pb2_grpc.add_TaskServiceServicer_to_server(
            TaskServicer(settings, db, tasks, agents, task_events), server)
        dataset_service_pb2_grpc.add_DatasetServiceServicer_to_server(
            DatasetServicer(db, datasets, server_client), server)

    server, health, _ = bootstrap.build_server(
        address=settings.jedi_address, service_names=SERVICE_NAMES, register=register,
        settings=settings, access=ACCESS,
    )
    metrics = bootstrap.start_metrics(settings.metrics_host, settings.jedi_metrics_port, component="jedi",
                                      engine=engine, collectors=[TaskCountCollector(tasks)])
    await server.start()
    await agents.start()
    await bootstrap.set_serving(health, SERVICE_NAMES, True)
    log.info("JEDI listening on %s, server at %s (database %s)", settings.jedi_address, settings.server_address,
             engine.url.render_as_string(hide_password=True))

    async def on_stop() -> None:
        await bootstrap.set_serving(health, SERVICE_NAMES, False)
        await agents.stop()

    try:
        await bootstrap.run_until_signalled(server, on_stop)
    finally:
        metrics.close()
        await server_client.close()
        db.close()
    log.info("JEDI stopped")


def run(settings: JediSettings | None = None) -> None:
    bootstrap.run_service(serve, settings or JediSettings())


def main() -> None:
    run()


if __name__ == "__main__":
    main()
