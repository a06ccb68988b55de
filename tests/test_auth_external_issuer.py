"""Tokens of a separate, real OIDC provider (oidc-provider from npm, on loopback) are accepted
once its issuer is trusted and refused before: first by the token check every service runs,
then end to end by a server.

The server tests use SQLite only: what they check (which issuers a server trusts) happens
before any call reaches the store."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from panda.server.v1 import queue_service_pb2, queue_service_pb2_grpc
from panda_runtime.client.channels import sync_channel
from panda_runtime.service.auth import TokenAuthenticator
from panda_runtime.service.errors import Unauthenticated
from panda_runtime.service.principals import USER, Principal
from tools.cluster import ServerHandle, free_port, fresh_database, start_server

if TYPE_CHECKING:
    # Only for annotations: the module is loaded as a plugin below, so pytest rewrites its asserts.
    from tests.external_oidc_fixtures import ExternalIssuer

pytest_plugins = ["tests.external_oidc_fixtures"]

AUDIENCE = "panda-mesh"


def _verify(issuers: list[str], token: str, audience: str = AUDIENCE) -> Principal:
    async def verify() -> Principal:
        authenticator = TokenAuthenticator(issuers, audience=audience)
        try:
            return await authenticator.verify(token)
        finally:
            await authenticator.close()

    return asyncio.run(verify())


def _unused_issuer() -> str:
    """A loopback issuer URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def test_trusted_external_issuer_is_accepted(external_issuer: ExternalIssuer) -> None:
    principal = _verify([external_issuer.issuer], external_issuer.token(AUDIENCE))

    assert principal.subject == external_issuer.client_id
    assert principal.issuer == external_issuer.issuer
    assert principal.client_id == external_issuer.client_id
    assert principal.groups == ("/panda",)
    assert ("panda", USER) in principal.grants


def test_untrusted_external_issuer_is_refused(external_issuer: ExternalIssuer) -> None:
    with pytest.raises(Unauthenticated, match="not trusted"):
        _verify([_unused_issuer()], external_issuer.token(AUDIENCE))


def test_token_for_another_audience_is_refused(external_issuer: ExternalIssuer) -> None:
    with pytest.raises(Unauthenticated, match="not meant for this service"):
        _verify([external_issuer.issuer], external_issuer.token("another-service"))


@pytest.fixture
def start_trusting(tmp_path: Path) -> Iterator[Callable[..., ServerHandle]]:
    """Starts servers (SQLite) trusting the given issuers; stops them all at the end."""
    servers: list[ServerHandle] = []

    def start(*issuers: str) -> ServerHandle:
        data_dir = tmp_path / f"server{len(servers)}"
        data_dir.mkdir()
        handle = start_server(
            data_dir,
            fresh_database("sqlite", data_dir, ""),
            {"PANDA_AUTH_MODE": "token", "PANDA_AUTH_ISSUERS": ",".join(issuers), "PANDA_AUTH_AUDIENCE": AUDIENCE},
        )
        servers.append(handle)
        return handle

    yield start
    for handle in servers:
        handle.stop()
        if handle.process is not None and handle.process.returncode not in (0, -15, None):
            print(handle.process.log()[-5000:], file=sys.stderr)


def _list_queues(server: ServerHandle, token: str) -> queue_service_pb2.ListQueuesResponse:
    with sync_channel(server.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        return stub.ListQueues(
            queue_service_pb2.ListQueuesRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=10
        )


@pytest.mark.e2e
def test_server_accepts_tokens_of_a_trusted_external_issuer(
    external_issuer: ExternalIssuer, start_trusting: Callable[..., ServerHandle]
) -> None:
    server = start_trusting(external_issuer.issuer)
    reply = _list_queues(server, external_issuer.token(AUDIENCE))
    assert isinstance(reply, queue_service_pb2.ListQueuesResponse)


@pytest.mark.e2e
def test_server_refuses_tokens_of_an_external_issuer_it_does_not_trust(
    external_issuer: ExternalIssuer, start_trusting: Callable[..., ServerHandle]
) -> None:
    server = start_trusting(_unused_issuer())
    with pytest.raises(grpc.RpcError) as refused:
        _list_queues(server, external_issuer.token(AUDIENCE))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value.details()
    assert "not trusted" in (refused.value.details() or "")
