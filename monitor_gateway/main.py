"""The gateway's entry point: `panda serve gateway`, `python -m monitor_gateway`, and `panda up`.

Routes come from the contracts' descriptors at start: every annotated RPC of every service an
address setting names (server, JEDI, identity service)."""

from __future__ import annotations

import importlib.metadata
import logging
import secrets

from monitor_gateway.domain import responses
from monitor_gateway.domain.openapi import openapi_document
from monitor_gateway.domain.routes import Route, routes_of
from monitor_gateway.logic.monitor import Monitor
from monitor_gateway.logic.transcoder import Transcoder
from monitor_gateway.logic.upstreams import Upstreams
from monitor_gateway.servicers.http_app import build_app
from monitor_gateway.servicers.monitor_app import build_monitor
from monitor_gateway.servicers.monitor_auth import MONITOR_PATH, MonitorSignIn
from monitor_gateway.settings import GatewaySettings
from monitor_gateway.store.descriptors import annotated_methods
from panda_runtime.service import bootstrap
from panda_runtime.service.http_server import HttpServer

__all__ = ["GatewaySettings", "all_routes", "main", "run", "serve"]

log = logging.getLogger("panda.gateway")

# One caller's watches may not take every stream the gateway serves.
STREAMS_PER_CALLER_SHARE = 10


def all_routes() -> list[Route]:
    return [route for found in annotated_methods() if found.rule is not None
            for route in routes_of(found.method, found.rule)]


def _version() -> str:
    try:
        return importlib.metadata.version("panda-mesh")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(settings: GatewaySettings) -> None:
    upstreams = Upstreams(settings.upstreams(), max_message_bytes=64 * 1024 * 1024)
    transcoder = Transcoder(
        all_routes(), upstreams, deadline_seconds=settings.gateway_deadline_seconds,
        max_streams=settings.gateway_max_streams,
        max_streams_per_caller=max(1, settings.gateway_max_streams // STREAMS_PER_CALLER_SHARE),
    )
    for service in transcoder.unserved:
        log.warning("no address setting names the service of %s: its routes are not served", service)
    responses.prepare_json(route.response_type for route in transcoder.table.routes)
    document = openapi_document(transcoder.table.routes, title="PanDA mesh", version=_version())
    monitor = None
    if settings.gateway_monitor:
        sign_in = MonitorSignIn(settings.iam_issuer, settings.gateway_monitor_client_id,
                                f"{settings.gateway_url}{MONITOR_PATH}/auth/callback")
        monitor = build_monitor(Monitor(upstreams, deadline_seconds=settings.gateway_deadline_seconds), sign_in)
    app = build_app(transcoder, document, max_body_bytes=settings.gateway_max_body_bytes,
                    keepalive_seconds=settings.gateway_keepalive_seconds, monitor=monitor,
                    session_secret=settings.gateway_session_secret or secrets.token_urlsafe(32),
                    secure_cookies=settings.gateway_secure_cookies)
    host, port = _host_port(settings.gateway_address)
    http = HttpServer(app, host, port)
    await http.start()
    metrics = bootstrap.start_metrics(settings.metrics_host, settings.gateway_metrics_port, component="gateway")
    log.info("gateway on %s (%d routes): server %s, JEDI %s, identity service %s", settings.gateway_url,
             len(transcoder.table.routes), settings.server_address, settings.jedi_address, settings.iam_address)
    try:
        await bootstrap.until_signalled()
    finally:
        metrics.close()
        await http.stop()
        await upstreams.close()
    log.info("gateway stopped")


def run(settings: GatewaySettings | None = None) -> None:
    bootstrap.run_service(serve, settings or GatewaySettings(), uvloop=True)


def main() -> None:
    run()


if __name__ == "__main__":
    main()
