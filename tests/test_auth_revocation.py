"""A disabled or deleted account's tokens stop working on every service within the refresh of the
revocation list (PANDA_AUTH_REVOCATION_REFRESH_SECONDS, 15 s by default): real processes (the
identity service, the server and JEDI on one database, SQLite and PostgreSQL), real sockets,
the default refresh. Everyone else's tokens keep working."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2

from iam_svc.main import IamSettings, issue_user_tokens
from panda.iam.v1 import iam_service_pb2, iam_service_pb2_grpc, identity_pb2
from panda.jedi.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from panda.server.v1 import queue_service_pb2, queue_service_pb2_grpc
from panda_runtime.client.channels import sync_channel
from panda_runtime.client.credentials import StaticToken
from tests.jedi_support import JediHandle, new_jedi
from tests.server_support import TEST_SERVER_ENV
from tools.cluster import IdentityHandle, ServerHandle, start_iam, start_server

# Within a minute of the change, as the README promises; the refresh is 15 s.
DEADLINE_SECONDS = 60.0

USERS = {"admin": ["/panda", "/panda/admin"], "carol": ["/panda"], "dave": ["/panda"], "erin": ["/panda"]}
ROBOTS = {
    "panda-jedi": (["/panda/service"], []),
    "site-a-pilot": (["/panda/pilot"], ["*"]),
    "site-b-pilot": (["/panda/pilot"], ["*"]),
}


@dataclass
class Mesh:
    identity: IdentityHandle
    server: ServerHandle
    jedi: JediHandle

    def addresses(self) -> dict[str, str]:
        return {"server": self.server.address, "jedi": self.jedi.address, "iam": self.identity.address}


@pytest.fixture
def mesh(database_url: str, tmp_path: Path) -> Iterator[Mesh]:
    """An identity service of its own (its people are disabled and deleted here), with a server
    and JEDI trusting it, all on the same database as `panda up` runs them."""
    identity = start_iam(tmp_path / "iam", database_url, users=USERS, robots=ROBOTS)
    server = start_server(tmp_path / "server", database_url, {**identity.trust_env(), **TEST_SERVER_ENV})
    jedi = new_jedi(server, tmp_path / "logs", **identity.robot_env("panda-jedi"))
    jedi.start()
    yield Mesh(identity, server, jedi)
    for handle in (jedi, server, identity):
        handle.stop()
        if handle.process is not None and handle.process.returncode not in (0, -15, None):
            print(handle.log()[-5000:], file=sys.stderr)


# One call each service answers for any valid token, robots' included.
CALLS: dict[str, Callable[[grpc.Channel], object]] = {
    "server": lambda ch: queue_service_pb2_grpc.QueueServiceStub(ch).ListQueues(
        queue_service_pb2.ListQueuesRequest(), timeout=10),
    "jedi": lambda ch: dataset_service_pb2_grpc.DatasetServiceStub(ch).ListDatasets(
        dataset_service_pb2.ListDatasetsRequest(), timeout=10),
    "iam": lambda ch: iam_service_pb2_grpc.IamServiceStub(ch).WhoAmI(iam_service_pb2.WhoAmIRequest(), timeout=10),
}


def refusal(address: str, service: str, token: str) -> str | None:
    """None when the service accepts the token; the UNAUTHENTICATED message when it refuses it."""
    with sync_channel(address, StaticToken(token)) as channel:
        try:
            CALLS[service](channel)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (service, error.code(), error.details())
            return str(error.details())
    return None


def robot_token(identity: IdentityHandle, client_id: str) -> str:
    response = httpx.post(f"{identity.issuer}/token", data={"grant_type": "client_credentials"},
                          auth=(client_id, identity.secrets[client_id]), timeout=15)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_disabled_and_deleted_accounts_tokens_are_refused_everywhere_within_a_minute(mesh: Mesh) -> None:
    identity = mesh.identity
    revoked = {"carol (disabled)": identity.token("carol"), "dave (deleted)": identity.token("dave"),
               "site-a-pilot (deleted robot)": robot_token(identity, "site-a-pilot")}
    kept = {"erin": identity.token("erin"), "site-b-pilot": robot_token(identity, "site-b-pilot")}
    services = mesh.addresses()
    for who, token in {**revoked, **kept}.items():
        for service, address in services.items():
            assert refusal(address, service, token) is None, (who, service)

    with sync_channel(identity.address, StaticToken(identity.token("admin"))) as channel:
        admin = iam_service_pb2_grpc.IamServiceStub(channel)
        admin.UpdateUser(iam_service_pb2.UpdateUserRequest(
            user=identity_pb2.User(user_id="carol", disabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["disabled"])), timeout=10)
        admin.DeleteUser(iam_service_pb2.DeleteUserRequest(user_id="dave"), timeout=10)
        admin.DeleteClient(iam_service_pb2.DeleteClientRequest(client_id="site-a-pilot"), timeout=10)
    changed = time.monotonic()

    pending = {(who, service) for who in revoked for service in services}
    while pending and time.monotonic() - changed < DEADLINE_SECONDS:
        for who, service in sorted(pending):
            message = refusal(services[service], service, revoked[who])
            if message is not None:
                assert "was disabled or deleted" in message, message
                pending.discard((who, service))
        for who, token in kept.items():
            for service, address in services.items():
                assert refusal(address, service, token) is None, (who, service)
        time.sleep(0.5)
    assert not pending, f"still accepted {DEADLINE_SECONDS:.0f} s after the change: {sorted(pending)}"

    # Enabled again, carol signs in anew: the new token works, the one issued before stays refused.
    with sync_channel(identity.address, StaticToken(identity.token("admin"))) as channel:
        iam_service_pb2_grpc.IamServiceStub(channel).UpdateUser(iam_service_pb2.UpdateUserRequest(
            user=identity_pb2.User(user_id="carol", disabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["disabled"])), timeout=10)
    settings = IamSettings(database_url=identity.database_url, iam_issuer=identity.issuer,
                           auth_issuers=[identity.issuer])
    fresh = issue_user_tokens(settings, "carol")["access_token"]
    for service, address in services.items():
        assert refusal(address, service, fresh) is None, service
        assert refusal(address, service, identity.token("carol")) is not None, service

