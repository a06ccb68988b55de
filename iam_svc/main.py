"""The identity service's entry point and its surface for whoever starts it: `panda serve iam`,
`python -m iam_svc`, and `panda up`, the test clusters and the benchmarks, which provision
people and robots on its database in-process before it starts.

One process, one event loop: the gRPC server (IamService, health, reflection) and the OIDC
endpoints over HTTP (uvicorn serving the Starlette app as a task of the same loop)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from sqlalchemy import Engine

from iam_svc.domain import revocation
from iam_svc.domain.accounts import Person, Robot
from iam_svc.domain.tokens import TokenResponse
from iam_svc.logic import provisioning
from iam_svc.logic.provider import Provider, lifetimes_of
from iam_svc.logic.provisioning import CLI_CLIENT_ID, MONITOR_CLIENT_ID, Provisioned
from iam_svc.logic.renewable_auth import RenewableAuthenticator
from iam_svc.servicers.access import ACCESS
from iam_svc.servicers.http.app import build_app
from iam_svc.servicers.iam_servicer import IamServicer
from iam_svc.settings import IamSettings
from iam_svc.store.flow_store import FlowStore
from iam_svc.store.identity_store import IdentityStore
from iam_svc.store.key_store import KeyStore
from panda.iam.v1 import iam_service_pb2_grpc
from panda_runtime.service import bootstrap
from panda_runtime.service.db import DbRunner, ensure_migrated, make_engine
from panda_runtime.service.http_server import HttpServer

__all__ = [
    "CLI_CLIENT_ID",
    "MONITOR_CLIENT_ID",
    "IamSettings",
    "Person",
    "Provisioned",
    "Robot",
    "TokenResponse",
    "issue_user_tokens",
    "main",
    "provision",
    "run",
    "serve",
]

log = logging.getLogger("panda.iam")

SERVICE_NAMES = ["panda.iam.v1.IamService"]


def _provider(engine: Engine, settings: IamSettings) -> Provider:
    keep_revocations = revocation.retention(lifetimes_of(settings).longest_token_seconds)
    return Provider(settings, IdentityStore(engine, keep_revocations=keep_revocations), KeyStore(engine),
                    FlowStore(engine))


def provision(settings: IamSettings, *, people: Sequence[Person] = (), robots: Sequence[Robot] = (),
              sign_in: Sequence[str] = ()) -> Provisioned:
    """On the migrated database of `settings`: what a new installation needs (the default
    groups, the command line's client, the web monitor's client sending people back to the
    gateway `settings` name, a signing key), `people` and `robots` as they ask (each robot with
    a fresh secret), and tokens for the users named in `sign_in`, as if each had signed in with
    the command line (issued by `settings.iam_issuer`)."""
    engine = make_engine(settings.resolved_database_url)
    try:
        return provisioning.provision(_provider(engine, settings), people=people, robots=robots, sign_in=sign_in,
                                      monitor_redirects=provisioning.monitor_redirect_uris(
                                          settings.monitor_redirect_uri))
    finally:
        engine.dispose()


def issue_user_tokens(settings: IamSettings, user_name: str) -> TokenResponse:
    """A token response (access, refresh and ID token) for an existing user, as after `panda login`."""
    engine = make_engine(settings.resolved_database_url)
    try:
        return provisioning.issue_user_tokens(_provider(engine, settings), user_name)
    finally:
        engine.dispose()


async def serve(settings: IamSettings) -> None:
    engine = make_engine(settings.resolved_database_url)
    ensure_migrated(engine)
    provider = _provider(engine, settings)
    provisioning.ensure_defaults(provider, provisioning.monitor_redirect_uris(settings.monitor_redirect_uri))
    db = DbRunner(engine)

    # The provider's own tokens are always trusted here, whatever else is.
    authenticator = RenewableAuthenticator(
        lambda: bootstrap.build_authenticator(settings, extra_issuers=[settings.iam_issuer]))

    def register(server: grpc.aio.Server) -> None:
        iam_service_pb2_grpc.add_IamServiceServicer_to_server(
            IamServicer(db, provider, on_key_rotated=authenticator.renew), server)

    server, health, _ = bootstrap.build_server(
        address=settings.iam_address, service_names=SERVICE_NAMES, register=register, settings=settings,
        access=ACCESS, authenticator=authenticator,
    )
    http = HttpServer(build_app(db, provider), settings.iam_http_host, settings.iam_http_port,
                          trusted_proxies=settings.iam_trusted_proxies)
    await http.start()
    metrics = bootstrap.start_metrics(settings.metrics_host, settings.iam_metrics_port, component="iam",
                                      engine=engine)
    await server.start()
    await bootstrap.set_serving(health, SERVICE_NAMES, True)
    log.info("identity service on %s (gRPC), issuer %s (HTTP on %s:%d), database %s", settings.iam_address,
             provider.issuer, settings.iam_http_host, settings.iam_http_port,
             engine.url.render_as_string(hide_password=True))

    async def on_stop() -> None:
        await bootstrap.set_serving(health, SERVICE_NAMES, False)
        await http.stop()

    try:
        await bootstrap.run_until_signalled(server, on_stop)
    finally:
        metrics.close()
        await authenticator.close()
        db.close()
    log.info("identity service stopped")


def run(settings: IamSettings | None = None) -> None:
    """The service in the foreground until it is signalled (exit code 2 on an unmigrated database)."""
    bootstrap.run_service(serve, settings or IamSettings())


def main() -> None:
    run()


if __name__ == "__main__":
    main()
