"""Building and running a service's gRPC server: interceptors, health, reflection, metrics,
message limits and a clean shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from panda_runtime.service.auth import AnonymousAuthenticator, Authenticator, TokenAuthenticator
from panda_runtime.service.db import DatabaseNotMigrated
from panda_runtime.service.interceptors import ServiceInterceptor
from panda_runtime.service.metrics import start_metrics
from panda_runtime.service.principals import AccessTable, Principal, canonical_subject, grants_from_groups
from panda_runtime.settings import PandaSettings, ServingSettings

__all__ = [
    "OPEN_SERVICES",
    "REFLECTION_ACCESS",
    "SERVER_OPTIONS",
    "AnySettings",
    "build_authenticator",
    "build_server",
    "configure_logging",
    "load_x509_users",
    "run_service",
    "run_until_signalled",
    "server_credentials",
    "set_serving",
    "start_metrics",
    "tune_garbage_collector",
    "until_signalled",
]

log = logging.getLogger("panda.bootstrap")

AnySettings = TypeVar("AnySettings", bound=PandaSettings)

# Streams live long: ping quietly so a dead peer is noticed, and let clients ping us.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.so_reuseport", 0),
]

# The only door open without a token. Reflection needs one: it describes every method.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
# Reflection, for any caller with a valid identity (grpcurl and friends).
REFLECTION_ACCESS = {
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {"authenticated"},
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": {"authenticated"},
}


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"
    )
    # Alembic announces its plugins at INFO on every revision check.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def build_authenticator(settings: ServingSettings, extra_issuers: Iterable[str] = ()) -> Authenticator:
    """The token check this process runs, as its settings configure it."""
    if settings.auth_mode == "none":
        log.warning("PANDA_AUTH_MODE=none: calls are NOT checked, every caller may do everything")
        return AnonymousAuthenticator()
    issuers = list(dict.fromkeys([*settings.auth_issuers, *(i.rstrip("/") for i in extra_issuers)]))
    if not issuers:
        raise SystemExit("no trusted token issuer: set PANDA_AUTH_ISSUERS (or PANDA_AUTH_MODE=none to run open)")
    return TokenAuthenticator(
        issuers,
        audience=settings.auth_audience,
        leeway_seconds=settings.auth_leeway_seconds,
        jwks_min_refresh_seconds=settings.auth_jwks_min_refresh_seconds,
        jwks_max_age_seconds=settings.auth_jwks_max_age_seconds,
        revocation_refresh_seconds=settings.auth_revocation_refresh_seconds,
        cache_size=settings.auth_token_cache_size,
        x509_users=load_x509_users(settings.x509_user_map_file),
    )


def load_x509_users(path: str) -> dict[str, Principal]:
    """Legacy x509: certificate subject → user, from a YAML file of
    `"<subject>": {user: NAME, groups: [/vo, ...]}` (subjects in slash or RFC 2253 form)."""
    if not path:
        return {}
    import yaml

    with open(path) as handle:
        entries = yaml.safe_load(handle) or {}
    users = {}
    for subject, entry in entries.items():
        groups = [str(g) for g in entry.get("groups", [])]
        users[canonical_subject(str(subject))] = Principal(
            subject=str(entry["user"]), issuer="x509", grants=grants_from_groups(groups), groups=tuple(groups),
            queues=frozenset(str(q) for q in entry.get("queues", [])),
        )
    return users


def server_credentials(settings: ServingSettings) -> grpc.ServerCredentials | None:
    """TLS for the legacy x509 path: off unless a certificate is configured. With a client CA,
    clients must present a certificate it signed."""
    if not settings.tls_cert_file:
        return None
    with open(settings.tls_key_file, "rb") as key, open(settings.tls_cert_file, "rb") as cert:
        pair = (key.read(), cert.read())
    client_ca = None
    if settings.tls_client_ca_file:
        with open(settings.tls_client_ca_file, "rb") as ca:
            client_ca = ca.read()
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def build_server(
    *,
    address: str,
    service_names: Iterable[str],
    register: Callable[[grpc.aio.Server], None],
    settings: ServingSettings,
    access: AccessTable,
    authenticator: Authenticator | None = None,
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A server with every service registered, health and reflection on, every call checked
    against `access`, listening on `address`. Returns the server, its health servicer and the
    bound port."""
    server = grpc.aio.server(
        interceptors=[
            ServiceInterceptor(
                authenticator or build_authenticator(settings),
                access=access.merged(REFLECTION_ACCESS),
                open_methods=OPEN_SERVICES,
            )
        ],
        options=[
            *SERVER_OPTIONS,
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    credentials = server_credentials(settings)
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}: address in use or not valid")
    return server, health_servicer, port


async def set_serving(health_servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *names]:
        await health_servicer.set(name, status)


def tune_garbage_collector() -> None:
    """A service allocates many short-lived containers per message (rows, protos, acks), and
    the collector's default first threshold (700) had it scanning every few messages: a tenth
    of the server's CPU in the dispatch benchmark. Collect less often, and leave what was
    loaded at start-up (modules, tables, stubs) out of every scan."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_service(serve: Callable[[AnySettings], Coroutine[Any, Any, None]], settings: AnySettings,
                *, uvloop: bool = False) -> None:
    """A service's process: logging, its event loop, and exit code 2 on an unmigrated database.

    `uvloop`: run on uvloop's event loop rather than asyncio's own (where uvloop exists: not on
    Windows), for a process whose work is mostly its loop's (the HTTP gateway)."""
    configure_logging()
    tune_garbage_collector()
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if uvloop:
        try:
            import uvloop as uvloop_module
        except ImportError:
            log.warning("uvloop is not installed: asyncio's own event loop is used")
        else:
            loop_factory = uvloop_module.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(settings))
    except DatabaseNotMigrated as error:
        log.error("%s", error)
        raise SystemExit(2) from None


async def until_signalled() -> None:
    """Returns at SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")


async def run_until_signalled(
    server: grpc.aio.Server, on_stop: Callable[[], Awaitable[None]] | None = None, grace: float = 5.0
) -> None:
    """Serve until SIGINT or SIGTERM, then stop taking calls and let running ones end."""
    await until_signalled()
    if on_stop is not None:
        await on_stop()
    await server.stop(grace)
