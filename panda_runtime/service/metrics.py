"""What every service exports to Prometheus besides its gRPC metrics (interceptors.py): the
`/metrics` endpoint itself, which answers on that path only, the build the process runs, and its
database engine's statements and connection pool.

A service starts all of it with `start_metrics` (through `bootstrap.start_metrics`) and stops it
with the handle that returns."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import metadata
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine, event

__all__ = [
    "BUILD_INFO", "DB_STATEMENT_SECONDS", "METRICS_PATH", "EnginePoolCollector", "MetricsServer", "ServiceMetrics",
    "build_version", "serve_metrics", "set_build_info", "start_metrics", "statement_kind", "watch_engine",
]

log = logging.getLogger("panda.metrics")

METRICS_PATH = "/metrics"

BUILD_INFO = Gauge(
    "panda_build_info", "Always 1: the version of PanDA mesh this process runs, and which part it is.",
    ["version", "component"],
)
DB_STATEMENT_SECONDS = Histogram(
    "panda_db_statement_seconds",
    "Time of one SQL statement (or one batch of an executemany), from handing it to the database driver to its "
    "result, by the statement's first keyword.",
    ["statement"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# The statement label's values: a statement's first keyword when it is one of these, else "other".
STATEMENT_KINDS = ("select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "pragma")


# -- /metrics, and nothing else --------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """Logs no request (Prometheus scrapes every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _only_metrics(registry: CollectorRegistry) -> Any:
    """prometheus_client's WSGI app (content negotiation, gzip, `name[]` filters) on
    `/metrics`; 404 on every other path."""
    exposition = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"not found: this port serves {METRICS_PATH} only\n".encode()]
        result: Iterable[bytes] = exposition(environ, start_response)
        return result

    return app


class MetricsServer:
    """The standard library's HTTP server in a daemon thread, one thread per request, serving
    `/metrics` of `registry` (404 elsewhere) on host:port (port 0: any free port)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

        class Server(ThreadingMixIn, WSGIServer):
            address_family = family
            daemon_threads = True

        self._server = make_server(host, port, _only_metrics(registry), Server, _QuietHandler)
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{METRICS_PATH}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_metrics(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> MetricsServer:
    return MetricsServer(host, port, registry)


# -- the build -------------------------------------------------------------------------------


def build_version() -> str:
    """The installed version of PanDA mesh, "unknown" when it is not installed (a bare checkout)."""
    try:
        return metadata.version("panda-mesh")
    except metadata.PackageNotFoundError:
        return "unknown"


def set_build_info(component: str) -> None:
    BUILD_INFO.labels(build_version(), component).set(1)


# -- the database engine ---------------------------------------------------------------------

_STARTED = "panda_metrics_statement_started"


@lru_cache(maxsize=4096)
def statement_kind(statement: str) -> str:
    """The statement label: the statement's first keyword in lower case, "other" when it is not
    one of STATEMENT_KINDS (so the label stays small whatever SQL runs)."""
    words = statement.lstrip(" \t\r\n(").split(None, 1)
    kind = words[0].lower() if words else ""
    return kind if kind in STATEMENT_KINDS else "other"


class EnginePoolCollector(Collector):
    """`panda_db_pool_connections{state}` (in_use, idle) and `panda_db_pool_capacity` of one
    engine's pool, read from the pool at scrape time (no I/O)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("panda_db_pool_connections",
                              "Database connections of this process's pool, in use (checked out) or idle.",
                              labels=["state"]),
            GaugeMetricFamily("panda_db_pool_capacity",
                              "Most database connections this process's pool opens (its size and overflow)."),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        connections, capacity = self._families()
        pool: Any = self._engine.pool
        in_use = _call(pool, "checkedout")
        idle = _call(pool, "checkedin")
        size = _call(pool, "size")
        overflow = max(0, int(getattr(pool, "_max_overflow", 0) or 0))
        connections.add_metric(["in_use"], in_use)
        connections.add_metric(["idle"], idle)
        capacity.add_metric([], size + overflow if size else max(in_use + idle, 1))
        yield connections
        yield capacity


def _call(pool: Any, name: str) -> int:
    method = getattr(pool, name, None)
    try:
        return int(method()) if callable(method) else 0
    except Exception:  # a pool kind without the count
        return 0


def watch_engine(engine: Engine) -> EnginePoolCollector:
    """Times every statement the engine runs (`panda_db_statement_seconds`) and returns the
    collector of its pool, for the caller to register."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        # One statement at a time runs on a connection: one slot is enough (a statement that
        # failed leaves its start here, replaced by the next one's).
        conn.info[_STARTED] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        started = conn.info.pop(_STARTED, None)
        if started is not None:
            DB_STATEMENT_SECONDS.labels(statement_kind(statement)).observe(time.perf_counter() - started)

    return EnginePoolCollector(engine)


# -- all of it, for one service --------------------------------------------------------------


class ServiceMetrics:
    """A service's metrics as `start_metrics` set them up: its collectors registered, and its
    `/metrics` server when it has one. `close()` undoes both."""

    def __init__(self, server: MetricsServer | None, collectors: list[Collector],
                 registry: CollectorRegistry) -> None:
        self.server = server
        self._collectors = collectors
        self._registry = registry

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for collector in self._collectors:
            self._registry.unregister(collector)
        self._collectors = []


def start_metrics(
    host: str, port: int, *, component: str, engine: Engine | None = None, collectors: Iterable[Collector] = (),
    registry: CollectorRegistry = REGISTRY,
) -> ServiceMetrics:
    """Sets `panda_build_info` for `component`, watches `engine` (statements and pool),
    registers `collectors` (the service's own gauges read at scrape time), and serves
    `/metrics` on host:port unless port is 0."""
    set_build_info(component)
    registered = [*collectors]
    if engine is not None:
        registered.append(watch_engine(engine))
    for collector in registered:
        registry.register(collector)
    server = serve_metrics(host, port, registry) if port else None
    if server is not None:
        log.info("metrics on %s", server.url)
    return ServiceMetrics(server, registered, registry)
