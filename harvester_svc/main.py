"""Entry point of harvester: `panda serve harvester` or `python -m harvester_svc`.

One process: the agents that provision workers for the queues of its configuration file, and
a gRPC server (health; the relay's DispatchService for pilots with no route to the server). It
talks to the server only over gRPC, at PANDA_SERVER, as the harvester robot; relayed pilots
prove themselves to it with their worker's relay token."""

from __future__ import annotations

import logging

from grpc import aio

from harvester_svc.domain.queue_config import QueueConfig, QueueConfigError, load_queue_config
from harvester_svc.domain.workers import WorkerRecord
from harvester_svc.logic.agents import Harvester
from harvester_svc.logic.pilots import PilotLaunch
from harvester_svc.logic.plugins.registry import MissingPlugin, check_queue_parameters, plugins_for
from harvester_svc.logic.relay_key import load_or_create_key
from harvester_svc.logic.server_link import ServerLink
from harvester_svc.servicers.relay import RELAY_ACCESS, RelayAuthenticator, RelayServicer
from harvester_svc.settings import HarvesterSettings
from harvester_svc.store.worker_store import WorkerStore
from panda.server.v1 import dispatch_service_pb2_grpc
from panda_runtime.client import ConnectConfig
from panda_runtime.service import bootstrap
from panda_runtime.service.db import DbRunner, ensure_migrated, make_engine

__all__ = ["SERVICE_NAMES", "load_queues", "main", "run", "serve"]

log = logging.getLogger("panda.harvester")

# The relay: the server's own contract, for pilots that cannot reach the server.
SERVICE_NAMES = ["panda.server.v1.DispatchService"]


def load_queues(settings: HarvesterSettings) -> dict[str, QueueConfig]:
    """The queue configuration, checked; SystemExit with every problem when it is wrong."""
    path = settings.queue_config_path
    try:
        text = path.read_text()
    except OSError as error:
        raise SystemExit(f"cannot read the queue configuration {path}: {error.strerror or error}") from None
    try:
        return load_queue_config(text)
    except QueueConfigError as error:
        problems = "\n".join(f"  {problem}" for problem in error.problems)
        raise SystemExit(f"the queue configuration {path} is not valid:\n{problems}") from None


async def serve(settings: HarvesterSettings) -> None:
    queues = load_queues(settings)
    try:
        plugins = plugins_for(queues.values(), settings)
    except MissingPlugin as error:
        raise SystemExit(str(error)) from None
    if problems := check_queue_parameters(queues.values(), plugins):
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise SystemExit(f"the queue configuration {settings.queue_config_path} is not valid:\n{listed}")
    engine = make_engine(settings.resolved_database_url)
    ensure_migrated(engine)
    db = DbRunner(engine)
    link = ServerLink(ConnectConfig.from_settings(
        settings.server_address, settings, deadline=settings.harvester_server_deadline_seconds,
        unreachable_hint="set PANDA_SERVER", metrics=True), settings.harvester_id)
    try:
        relay_key = load_or_create_key(settings.relay_key_path)
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot use the relay key: {error}") from None
    store = WorkerStore(engine)
    harvester = Harvester(settings, db, store, link, plugins, queues, PilotLaunch(settings, relay_key))

    def register(server: aio.Server) -> None:
        dispatch_service_pb2_grpc.add_DispatchServiceServicer_to_server(RelayServicer(link), server)

    async def find_worker(worker_id: str) -> WorkerRecord | None:
        return await db.run(store.get, worker_id)

    server, health, _ = bootstrap.build_server(
        address=settings.harvester_address, service_names=SERVICE_NAMES, register=register, settings=settings,
        access=RELAY_ACCESS, authenticator=RelayAuthenticator(relay_key, find_worker),
    )
    metrics = bootstrap.start_metrics(settings.metrics_host, settings.harvester_metrics_port,
                                      component="harvester", engine=engine)
    await server.start()
    await harvester.start()
    await bootstrap.set_serving(health, SERVICE_NAMES, True)
    log.info("harvester %s listening on %s, server at %s, %d queues (%s)", settings.harvester_id,
             settings.harvester_address, settings.server_address, len(queues), ", ".join(sorted(queues)))

    async def on_stop() -> None:
        await bootstrap.set_serving(health, SERVICE_NAMES, False)
        await harvester.stop()

    try:
        await bootstrap.run_until_signalled(server, on_stop)
    finally:
        metrics.close()
        await link.close()
        db.close()
    log.info("harvester stopped")


def run(settings: HarvesterSettings | None = None) -> None:
    bootstrap.run_service(serve, settings or HarvesterSettings())


def main() -> None:
    run()


if __name__ == "__main__":
    main()
