"""Entry point of the identity service: `panda serve iam` or `python -m iam_svc`.

One process, one event loop: the gRPC server (IamService, health, reflection) and the OIDC
endpoints over HTTP (uvicorn serving the Starlette app as a task of the same loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from iam_svc.access import ACCESS
from iam_svc.bootstrap import ensure_defaults
from iam_svc.http.app import build_app
from iam_svc.provider import Provider
from iam_svc.renewable_auth import RenewableAuthenticator
from iam_svc.servicers.iam_servicer import IamServicer
from iam_svc.settings import IamSettings
from iam_svc.store.flow_store import FlowStore
from iam_svc.store.identity_store import IdentityStore
from iam_svc.store.key_store import KeyStore
from panda.iam.v1 import iam_service_pb2_grpc
from panda_runtime.service import bootstrap
from panda_runtime.service.db import DbRunner, ensure_migrated, make_engine

log = logging.getLogger("panda.iam")

SERVICE_NAMES = ["panda.iam.v1.IamService"]


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: this process stops on its gRPC server's
    signal handlers and then tells uvicorn to exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """Binds the HTTP port here, so a port in use is a clear error rather than uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise SystemExit(f"cannot listen for HTTP on {host}:{port}: {error}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(settings: IamSettings) -> None:
    engine = make_engine(settings.resolved_database_url)
    ensure_migrated(engine)
    ensure_defaults(engine)
    db = DbRunner(engine)
    provider = Provider(settings, IdentityStore(engine), KeyStore(engine), FlowStore(engine))

    # The provider's own tokens are always trusted here, whatever else is.
    authenticator = RenewableAuthenticator(
        lambda: bootstrap.build_authenticator(settings, extra_issuers=[settings.iam_issuer]))

    def register(server) -> None:  # type: ignore[no-untyped-def]
        iam_service_pb2_grpc.add_IamServiceServicer_to_server(
            IamServicer(db, provider, on_key_rotated=authenticator.renew), server)

    server, health, _ = bootstrap.build_server(
        address=settings.iam_address, service_names=SERVICE_NAMES, register=register, settings=settings,
        access=ACCESS, authenticator=authenticator,
    )
    sock = _listen(settings.iam_http_host, settings.iam_http_port)
    http = _HttpServer(uvicorn.Config(build_app(db, provider), log_level="warning", access_log=False,
                                      lifespan="off", server_header=False))
    http_task = asyncio.create_task(http.serve(sockets=[sock]))
    while not http.started:
        if http_task.done():
            http_task.result()
            raise SystemExit("the OIDC endpoints did not start")
        await asyncio.sleep(0.02)
    bootstrap.start_metrics(settings.metrics_host, settings.iam_metrics_port)
    await server.start()
    await bootstrap.set_serving(health, SERVICE_NAMES, True)
    log.info("identity service on %s (gRPC), issuer %s (HTTP on %s:%d), database %s", settings.iam_address,
             provider.issuer, settings.iam_http_host, settings.iam_http_port,
             engine.url.render_as_string(hide_password=True))

    async def on_stop() -> None:
        await bootstrap.set_serving(health, SERVICE_NAMES, False)
        http.should_exit = True
        await http_task

    try:
        await bootstrap.run_until_signalled(server, on_stop)
    finally:
        await authenticator.close()
        db.close()
    log.info("identity service stopped")


def run(settings: IamSettings | None = None) -> None:
    bootstrap.run_service(serve, settings or IamSettings())


def main() -> None:
    run()


if __name__ == "__main__":
    main()
