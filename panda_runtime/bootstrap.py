"""Building and running a service's gRPC server: interceptors, health, reflection, metrics,
message limits and a clean shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from panda_runtime.auth import Authenticator
from panda_runtime.interceptors import ServiceInterceptor

log = logging.getLogger("panda.bootstrap")

# Streams live long: ping quietly so a dead peer is noticed, and let clients ping us.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.so_reuseport", 0),
]

OPEN_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"})


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"
    )
    # Alembic announces its plugins at INFO on every revision check.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def build_server(
    *,
    address: str,
    service_names: Iterable[str],
    register: Callable[[grpc.aio.Server], None],
    max_message_bytes: int,
    authenticator: Authenticator | None = None,
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A server with every service registered, health and reflection on, listening on
    `address`. Returns the server, its health servicer and the bound port."""
    server = grpc.aio.server(
        interceptors=[ServiceInterceptor(authenticator, open_methods=OPEN_SERVICES)],
        options=[
            *SERVER_OPTIONS,
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}: address in use or not valid")
    return server, health_servicer, port


async def set_serving(health_servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *names]:
        await health_servicer.set(name, status)


def start_metrics(host: str, port: int) -> None:
    if port:
        start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)


async def run_until_signalled(
    server: grpc.aio.Server, on_stop: Callable[[], Awaitable[None]] | None = None, grace: float = 5.0
) -> None:
    """Serve until SIGINT or SIGTERM, then stop taking calls and let running ones end."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    if on_stop is not None:
        await on_stop()
    await server.stop(grace)
