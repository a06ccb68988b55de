"""Entry point of the job server: `panda serve server` or `python -m server_svc`."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from panda.server.v1 import dispatch_service_pb2_grpc, job_service_pb2_grpc, queue_service_pb2_grpc
from panda_runtime.service import bootstrap
from panda_runtime.service.db import DbRunner, ensure_migrated, make_engine
from server_svc.access import ACCESS
from server_svc.dispatcher import DispatchHub
from server_svc.servicers.dispatch_servicer import DispatchServicer
from server_svc.servicers.job_servicer import JobServicer
from server_svc.servicers.queue_servicer import QueueServicer
from server_svc.settings import ServerSettings
from server_svc.store.job_store import JobStore
from server_svc.store.queue_store import QueueStore

log = logging.getLogger("panda.server")

SERVICE_NAMES = [
    "panda.server.v1.JobService",
    "panda.server.v1.DispatchService",
    "panda.server.v1.QueueService",
]


class JobCountCollector(Collector):
    """`panda_jobs{queue,state}`, read at scrape time at most every few seconds."""

    def __init__(self, queues: QueueStore, max_age: float = 5.0) -> None:
        self._queues = queues
        self._max_age = max_age
        self._cached: dict[tuple[str, str], int] = {}
        self._time = 0.0

    def describe(self):  # type: ignore[no-untyped-def]
        # Registration asks for names only, so no counting happens before the first scrape.
        yield GaugeMetricFamily("panda_jobs", "Jobs by queue and state.", labels=["queue", "state"])

    def collect(self):  # type: ignore[no-untyped-def]
        if time.monotonic() - self._time > self._max_age:
            try:
                self._cached = self._queues.job_counts()
                self._time = time.monotonic()
            except Exception:
                log.exception("counting jobs for the metrics failed")
        family = GaugeMetricFamily("panda_jobs", "Jobs by queue and state.", labels=["queue", "state"])
        for (queue, state), count in sorted(self._cached.items()):
            family.add_metric([queue, state], count)
        yield family


async def _watchdog(settings: ServerSettings, db: DbRunner, jobs: JobStore, hub: DispatchHub) -> None:
    started = datetime.now(UTC)
    while True:
        await asyncio.sleep(settings.watchdog_interval_seconds)
        try:
            counts, reactivated = await db.run(
                jobs.sweep,
                sent_timeout=settings.sent_timeout_seconds,
                heartbeat_timeout=settings.heartbeat_timeout_seconds,
                holding_timeout=settings.holding_timeout_seconds,
                kill_grace=settings.kill_grace_seconds,
                watching_since=started,
            )
        except Exception:
            log.exception("watchdog sweep failed")
            continue
        if any(counts.values()):
            log.info("watchdog: %s", ", ".join(f"{n} {rule}" for rule, n in counts.items() if n))
            hub.events_written.notify()
        if reactivated:
            hub.wake()


async def serve(settings: ServerSettings) -> None:
    engine = make_engine(settings.resolved_database_url)
    ensure_migrated(engine)
    db = DbRunner(engine)
    jobs, queues = JobStore(engine), QueueStore(engine)
    hub = DispatchHub(settings, db, jobs, queues)

    def register(server) -> None:  # type: ignore[no-untyped-def]
        job_service_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(settings, db, jobs, hub), server)
        queue_service_pb2_grpc.add_QueueServiceServicer_to_server(QueueServicer(db, queues, hub), server)
        dispatch_service_pb2_grpc.add_DispatchServiceServicer_to_server(
            DispatchServicer(settings, db, queues, hub), server
        )

    server, health, _ = bootstrap.build_server(
        address=settings.server_address, service_names=SERVICE_NAMES, register=register,
        settings=settings, access=ACCESS,
    )
    collector = JobCountCollector(queues)
    REGISTRY.register(collector)
    bootstrap.start_metrics(settings.metrics_host, settings.metrics_port)
    hub.start()
    watchdog = asyncio.create_task(_watchdog(settings, db, jobs, hub))
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
        REGISTRY.unregister(collector)
        db.close()
    log.info("server stopped")


def run(settings: ServerSettings | None = None) -> None:
    bootstrap.run_service(serve, settings or ServerSettings())


def main() -> None:
    run()


if __name__ == "__main__":
    main()
