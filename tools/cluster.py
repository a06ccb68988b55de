"""PanDA mesh for tests and benchmarks: fresh databases, free ports, and handles on the identity
service (with its users and robots) and the server, started through the launcher
(`panda_cli.launcher`) as `panda up` starts them: each in a process group of its own, stopped by
its PID only."""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import grpc

from panda_cli.launcher import (
    GATEWAY,
    HARVESTER,
    IAM,
    SERVER,
    Component,
    Process,
    spawn,
    wait_healthy,
    wait_http_ready,
)
from panda_runtime.service.db import upgrade_database

POSTGRES_ADMIN_URL = os.environ.get("PANDA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


# Ports for the processes tests and benchmarks start: below the kernel's ephemeral range (from
# 32768), where outgoing connections take their source ports and could take a port found free
# before its server binds it, above the services' default ports (25080-25290), and a slice of
# its own for each parallel test worker (pytest-xdist's gw0, gw1, ...) of each checkout, so two
# checkouts' suites on one machine rarely reach for the same port.
_PORTS_FROM, _PORTS_PER_WORKER, _WORKER_SLICES, _CHECKOUT_SLICES = 26000, 400, 4, 4


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    checkout = zlib.crc32(str(Path(__file__).resolve().parent.parent).encode()) % _CHECKOUT_SLICES
    index = checkout * _WORKER_SLICES + (int(worker) % _WORKER_SLICES if worker.isdigit() else 0)
    first = _PORTS_FROM + _PORTS_PER_WORKER * index
    return range(first, first + _PORTS_PER_WORKER)


_next_ports = itertools.cycle(random.sample(_port_slice(), len(_port_slice())))


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, not handed out again soon by this process."""
    for _ in range(_PORTS_PER_WORKER):
        port = next(_next_ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_port_slice()}")


def postgres_url(name: str) -> str:
    """URL of the database `name` on the PostgreSQL server POSTGRES_ADMIN_URL points at."""
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def fresh_database(kind: str, data_dir: Path, name: str, *, revision: str = "head") -> str:
    """URL of an empty, migrated database (to `revision`, by default the latest): a SQLite
    file in data_dir, or a PostgreSQL database dropped and created anew on the local server."""
    if kind == "sqlite":
        url = f"sqlite:///{data_dir / 'panda.db'}"
    elif kind == "postgresql":
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = postgres_url(name)
    else:
        raise ValueError(f"unknown database kind {kind!r}")
    upgrade_database(url, revision)
    return url


def drop_database(url: str) -> None:
    """Drop a PostgreSQL database made by fresh_database, so that test runs leave no databases
    behind (a SQLite file goes with its directory)."""
    if not url.startswith("postgresql"):
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServiceProcess:
    """Start, stop and kill one service's process (`python -m <module>`), healthy once its gRPC
    health check says so. The handles below are dataclasses with these fields."""

    component: ClassVar[Component]
    address: str
    env: dict[str, str]
    process: Process | None
    tls: grpc.ChannelCredentials | None = None

    def log_file(self) -> Path:
        raise NotImplementedError

    def start(self) -> None:
        self.process = spawn(self.component.name, self.component.argv(), self.env, self.log_file())
        wait_healthy(self.process, self.address, tls=self.tls)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash."""
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.wait(10)

    def log(self) -> str:
        path = self.log_file()
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class ServerHandle(ServiceProcess):
    component: ClassVar[Component] = SERVER
    address: str
    metrics_port: int
    database_url: str
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: Process | None = None
    # Credentials to reach a server that serves TLS (the legacy x509 path).
    tls: grpc.ChannelCredentials | None = None

    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"


def server_env(data_dir: Path, database_url: str, address: str, metrics_port: int,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "PANDA_DATA_DIR": str(data_dir),
        "PANDA_DATABASE_URL": database_url,
        "PANDA_SERVER": address,
        "PANDA_METRICS_PORT": str(metrics_port),
        **(extra or {}),
    }


def start_server(data_dir: Path, database_url: str, extra_env: dict[str, str] | None = None,
                 tls: grpc.ChannelCredentials | None = None) -> ServerHandle:
    address, metrics_port = f"127.0.0.1:{free_port()}", free_port()
    handle = ServerHandle(
        address, metrics_port, database_url, data_dir,
        env=server_env(data_dir, database_url, address, metrics_port, extra_env), tls=tls,
    )
    handle.start()
    return handle


@dataclass
class GatewayHandle(ServiceProcess):
    """The HTTP/JSON gateway in front of a server (and JEDI and an identity service)."""

    component: ClassVar[Component] = GATEWAY
    address: str  # host:port of its HTTP
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def log_file(self) -> Path:
        return self.data_dir / "logs" / "gateway.log"

    def start(self) -> None:
        self.process = spawn(self.component.name, self.component.argv(), self.env, self.log_file())
        wait_http_ready(self.process, self.url)


def start_gateway(data_dir: Path, *, server_address: str, iam_address: str, jedi_address: str = "",
                  extra_env: dict[str, str] | None = None) -> GatewayHandle:
    """A gateway on a free port, its calls going to the given services (JEDI's address, when not
    given, is one where nothing listens)."""
    address = f"127.0.0.1:{free_port()}"
    env = {"PANDA_GATEWAY": address, "PANDA_SERVER": server_address, "PANDA_IAM": iam_address,
           "PANDA_JEDI": jedi_address or f"127.0.0.1:{free_port()}", "PANDA_GATEWAY_METRICS_PORT": "0",
           **(extra_env or {})}
    handle = GatewayHandle(address, data_dir, env)
    handle.start()
    return handle


@dataclass
class HarvesterHandle(ServiceProcess):
    """A harvester instance provisioning the queues of `queue_config` through a server."""

    component: ClassVar[Component] = HARVESTER
    address: str
    harvester_id: str
    data_dir: Path
    queue_config: Path
    env: dict[str, str] = field(default_factory=dict)
    process: Process | None = None

    @property
    def access_points(self) -> Path:
        return self.data_dir / "harvester" / "workers"

    def log_file(self) -> Path:
        return self.data_dir / "logs" / "harvester.log"


def start_harvester(data_dir: Path, *, server_address: str, database_url: str, queue_config: Path,
                    harvester_id: str = "harvester", extra_env: dict[str, str] | None = None) -> HarvesterHandle:
    """A harvester on a free port (the caller gives the robots' identities in `extra_env`)."""
    address = f"127.0.0.1:{free_port()}"
    env = {"PANDA_DATA_DIR": str(data_dir), "PANDA_DATABASE_URL": database_url, "PANDA_SERVER": server_address,
           "PANDA_HARVESTER_ADDRESS": address, "PANDA_HARVESTER_ID": harvester_id,
           "PANDA_HARVESTER_QUEUE_CONFIG": str(queue_config), "PANDA_HARVESTER_METRICS_PORT": "0",
           **(extra_env or {})}
    handle = HarvesterHandle(address, harvester_id, data_dir, queue_config, env)
    handle.start()
    return handle


_session_identity: IdentityHandle | None = None


def session_identity() -> IdentityHandle:
    """The first identity service this process started (the test session's)."""
    if _session_identity is None:
        raise RuntimeError("no identity service started in this process")
    return _session_identity


# Who exists in a test or benchmark identity service: people with their WLCG groups, and
# robots with their groups and the queues they may serve.
TEST_USERS: dict[str, list[str]] = {
    "admin": ["/panda", "/panda/admin"],
    "alice": ["/panda"],
    "bob": ["/panda"],
    "prod": ["/panda", "/panda/production"],
}
TEST_ROBOTS: dict[str, tuple[list[str], list[str]]] = {
    "panda-pilot": (["/panda/pilot"], ["*"]),
    "panda-jedi": (["/panda/service"], []),
    "panda-harvester": (["/panda/harvester"], []),
    # A second instance's robot: each harvester instance belongs to the subject that registered it.
    "panda-harvester-b": (["/panda/harvester"], []),
}


@dataclass
class IdentityHandle(ServiceProcess):
    """A running iam_svc, the people and robots it knows, and tokens of the people."""

    component: ClassVar[Component] = IAM
    address: str
    http_port: int
    metrics_port: int
    database_url: str
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: Process | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    _pilot: Any = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def trust_env(self) -> dict[str, str]:
        """What a process needs to trust this issuer and to ask it for robot tokens."""
        return {"PANDA_AUTH_MODE": "token", "PANDA_AUTH_ISSUERS": self.issuer, "PANDA_IAM_ISSUER": self.issuer}

    def robot_env(self, client_id: str) -> dict[str, str]:
        """A process acting as the robot `client_id` (any given token is cleared)."""
        return {**self.trust_env(), "PANDA_TOKEN": "", "PANDA_TOKEN_FILE": "", "PANDA_CLIENT_ID": client_id,
                "PANDA_CLIENT_SECRET": self.secrets[client_id]}

    def token(self, user: str) -> str:
        return self.tokens[user]

    def pilot_token(self) -> str:
        """A token of the `panda-pilot` robot (client_credentials), renewed as needed."""
        from panda_runtime.client.credentials import ClientCredentialsToken

        if self._pilot is None:
            self._pilot = ClientCredentialsToken(self.issuer, "panda-pilot", self.secrets["panda-pilot"])
        return self._pilot.token()

    def log_file(self) -> Path:
        return self.data_dir / "logs" / "iam.log"


def start_iam(
    data_dir: Path,
    database_url: str | None = None,
    *,
    users: dict[str, list[str]] | None = None,
    robots: dict[str, tuple[list[str], list[str]]] | None = None,
    extra_env: dict[str, str] | None = None,
) -> IdentityHandle:
    """The identity service on its own database (a fresh SQLite file unless one is given), with
    `users` (tokens minted for each) and `robots` (secrets kept), started and healthy."""
    from iam_svc.main import IamSettings, Person, Robot, provision

    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = database_url or fresh_database("sqlite", data_dir, "")
    address, http_port, metrics_port = f"127.0.0.1:{free_port()}", free_port(), free_port()
    handle = IdentityHandle(address, http_port, metrics_port, database_url, data_dir)
    handle.env = {
        "PANDA_DATA_DIR": str(data_dir), "PANDA_DATABASE_URL": database_url, "PANDA_IAM": address,
        "PANDA_IAM_HTTP_PORT": str(http_port), "PANDA_IAM_METRICS_PORT": str(metrics_port),
        **handle.trust_env(), **(extra_env or {}),
    }
    people = users if users is not None else TEST_USERS
    provisioned = provision(
        IamSettings(database_url=database_url, iam_issuer=handle.issuer, auth_issuers=[handle.issuer]),
        people=[Person(name, groups=groups, password=f"{name}-password") for name, groups in people.items()],
        robots=[Robot(client_id, groups=groups, queues=queues)
                for client_id, (groups, queues) in (robots if robots is not None else TEST_ROBOTS).items()],
        sign_in=list(people),
    )
    handle.tokens = {name: response["access_token"] for name, response in provisioned.tokens.items()}
    handle.secrets = dict(provisioned.secrets)
    handle.start()
    global _session_identity
    _session_identity = _session_identity or handle
    return handle
