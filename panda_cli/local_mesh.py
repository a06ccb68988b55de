"""Where the local mesh `panda up` runs listens, and who it knows.

Addresses: each service's own variable when set; else the defaults beside a server at its
defaults, or JEDI 100, the identity service 200 and the gateway 300 above the server's ports.

Identity: the signing key, an admin named after the local
user, the robots the mesh needs (JEDI's, the pilots'), and the web monitor's client sending
people back to the gateway `panda up` runs, made in the database before anything starts. Each
robot gets a fresh secret at every start, handed to its processes only; the admin's token is
written to the user's config directory (mode 0600, as local cluster tools write their
kubeconfig), so the same user's command line works at once."""

from __future__ import annotations

import getpass
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from panda_runtime.client.credentials import login_file, write_login
from panda_runtime.settings import (
    DEFAULT_GATEWAY_ADDRESS,
    DEFAULT_GATEWAY_METRICS_PORT,
    DEFAULT_HARVESTER_ADDRESS,
    DEFAULT_HARVESTER_METRICS_PORT,
    DEFAULT_IAM_ADDRESS,
    DEFAULT_IAM_HTTP_PORT,
    DEFAULT_IAM_METRICS_PORT,
    DEFAULT_JEDI_ADDRESS,
    DEFAULT_JEDI_METRICS_PORT,
    DEFAULT_SERVER_ADDRESS,
    DEFAULT_SERVER_METRICS_PORT,
)

from .settings import CliSettings

if TYPE_CHECKING:
    from server_svc.settings import ServerSettings

__all__ = ["ADMIN_PASSWORD_FILE", "HARVESTER_ROBOT", "JEDI_ROBOT", "PILOT_ROBOT", "VO", "LocalIdentity",
           "gateway_endpoints", "harvester_endpoints", "iam_endpoints", "jedi_endpoints", "local_user_name",
           "provision_identity"]


VO = "panda"


JEDI_ROBOT = "panda-jedi"


PILOT_ROBOT = "panda-pilot"
# Harvester's own robot: it registers its instance and reports its workers (never runs a job).
HARVESTER_ROBOT = "panda-harvester"


ADMIN_PASSWORD_FILE = "admin-password"


@dataclass
class LocalIdentity:
    """The identity service `panda up` runs, its admin and its robots' secrets."""

    address: str
    http_port: int
    metrics_port: int
    admin: str
    token_path: Path
    password_path: Path
    # The gateway's address: the web monitor's sign-in comes back to it.
    gateway_address: str = ""
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def trust_env(self) -> dict[str, str]:
        return {"PANDA_AUTH_ISSUERS": self.issuer, "PANDA_IAM_ISSUER": self.issuer}

    def service_env(self) -> dict[str, str]:
        gateway = {"PANDA_GATEWAY": self.gateway_address} if self.gateway_address else {}
        return {**self.trust_env(), "PANDA_IAM": self.address, "PANDA_IAM_HTTP_PORT": str(self.http_port),
                "PANDA_IAM_METRICS_PORT": str(self.metrics_port), **gateway}

    def robot_env(self, client_id: str) -> dict[str, str]:
        return {**self.trust_env(), "PANDA_CLIENT_ID": client_id, "PANDA_CLIENT_SECRET": self.secrets[client_id]}


def local_user_name() -> str:
    """The admin's name: the local user's, as an account name the identity service accepts."""
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in getpass.getuser().lower()).strip("-._")
    return name or "admin"


def provision_identity(settings: ServerSettings, database_url: str, endpoints: tuple[str, int, int],
                       queues: list[str], gateway_address: str = DEFAULT_GATEWAY_ADDRESS) -> LocalIdentity:
    """Signing key, admin, robots, the web monitor's client (its sign-in back to the gateway at
    `gateway_address`, or PANDA_GATEWAY_PUBLIC_URL); the admin's token in the user's config
    directory."""
    from iam_svc.main import CLI_CLIENT_ID, IamSettings, Person, Robot, provision

    address, http_port, metrics_port = endpoints
    identity = LocalIdentity(address, http_port, metrics_port, local_user_name(), login_file(CliSettings()),
                             settings.data_dir / ADMIN_PASSWORD_FILE, gateway_address)
    # A new admin password only while none is written down; written once the admin has it.
    password = None if identity.password_path.exists() else secrets.token_urlsafe(12)
    issued = time.time()
    provisioned = provision(
        IamSettings(database_url=database_url, iam_issuer=identity.issuer, auth_issuers=[identity.issuer],
                    gateway_address=gateway_address),
        people=[Person(identity.admin, groups=[f"/{VO}", f"/{VO}/admin"], password=password)],
        robots=[Robot(JEDI_ROBOT, groups=[f"/{VO}/service"]),
                Robot(PILOT_ROBOT, groups=[f"/{VO}/pilot"], queues=queues),
                Robot(HARVESTER_ROBOT, groups=[f"/{VO}/harvester"])],
        sign_in=[identity.admin],
    )
    if password is not None:
        fd = os.open(identity.password_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
    identity.secrets.update(provisioned.secrets)
    write_login(identity.token_path, identity.issuer, CLI_CLIENT_ID, dict(provisioned.tokens[identity.admin]), issued)
    return identity


def iam_endpoints(settings: ServerSettings, server_address: str) -> tuple[str, int, int]:
    """The identity service's gRPC address, HTTP port and metrics port: PANDA_IAM* when set;
    else the defaults beside a server at its defaults, or 200 above the server's ports (the HTTP
    port one above its gRPC port)."""
    from iam_svc.settings import IamSettings

    iam = IamSettings()
    if any(name in os.environ for name in ("PANDA_IAM", "PANDA_IAM_ADDRESS")):
        address, http_port = iam.iam_address, iam.iam_http_port
    elif server_address == DEFAULT_SERVER_ADDRESS:
        address, http_port = DEFAULT_IAM_ADDRESS, DEFAULT_IAM_HTTP_PORT
    else:
        address = _shifted_address(server_address, 200, DEFAULT_IAM_ADDRESS, ports=2)
        http_port = int(address.rpartition(":")[2]) + 1 if address != DEFAULT_IAM_ADDRESS else DEFAULT_IAM_HTTP_PORT
    metrics = _shifted_metrics(settings, "PANDA_IAM_METRICS_PORT", iam.iam_metrics_port,
                               DEFAULT_IAM_METRICS_PORT, 200)
    return address, http_port, metrics


def jedi_endpoints(settings: ServerSettings, server_address: str) -> tuple[str, int]:
    """JEDI's address and metrics port: PANDA_JEDI and PANDA_JEDI_METRICS_PORT when set; else
    the defaults beside a server at its defaults, or 100 above the server's ports."""
    from jedi_svc.settings import JediSettings

    jedi = JediSettings()
    return _beside_server(settings, server_address, 100, address=jedi.jedi_address, variable="PANDA_JEDI",
                          default=DEFAULT_JEDI_ADDRESS, metrics=jedi.jedi_metrics_port,
                          default_metrics=DEFAULT_JEDI_METRICS_PORT)


def gateway_endpoints(settings: ServerSettings, server_address: str) -> tuple[str, int]:
    """The gateway's address (`host:port` of its HTTP) and metrics port: PANDA_GATEWAY and
    PANDA_GATEWAY_METRICS_PORT when set; else the defaults beside a server at its defaults, or
    300 above the server's ports."""
    from monitor_gateway.settings import GatewaySettings

    gateway = GatewaySettings()
    return _beside_server(settings, server_address, 300, address=gateway.gateway_address, variable="PANDA_GATEWAY",
                          default=DEFAULT_GATEWAY_ADDRESS, metrics=gateway.gateway_metrics_port,
                          default_metrics=DEFAULT_GATEWAY_METRICS_PORT)


def harvester_endpoints(settings: ServerSettings, server_address: str) -> tuple[str, int]:
    """Harvester's gRPC address and metrics port: PANDA_HARVESTER_ADDRESS and
    PANDA_HARVESTER_METRICS_PORT when set; else the defaults beside a server at its defaults, or
    400 above the server's ports."""
    from harvester_svc.settings import HarvesterSettings

    harvester = HarvesterSettings()
    return _beside_server(settings, server_address, 400, address=harvester.harvester_address,
                          variable="PANDA_HARVESTER", default=DEFAULT_HARVESTER_ADDRESS,
                          metrics=harvester.harvester_metrics_port, default_metrics=DEFAULT_HARVESTER_METRICS_PORT)


def _beside_server(settings: ServerSettings, server_address: str, offset: int, *, address: str, variable: str,
                   default: str, metrics: int, default_metrics: int) -> tuple[str, int]:
    """A part's address and metrics port: its configured ones when its variables are set (`variable`
    or `<variable>_ADDRESS`, `<variable>_METRICS_PORT`); else its defaults beside a server at its
    defaults, or `offset` above the server's ports."""
    if not any(name in os.environ for name in (variable, f"{variable}_ADDRESS")):
        address = default if server_address == DEFAULT_SERVER_ADDRESS else _shifted_address(
            server_address, offset, default)
    return address, _shifted_metrics(settings, f"{variable}_METRICS_PORT", metrics, default_metrics, offset)


def _shifted_address(server_address: str, offset: int, default: str, ports: int = 1) -> str:
    """The server's host with its port + `offset` (and the `ports` - 1 after it free to use), or
    `default` when that leaves the port range."""
    host, _, port = server_address.rpartition(":")
    if port.isdigit() and int(port) + offset + ports - 1 < 65536:
        return f"{host}:{int(port) + offset}"
    return default


def _shifted_metrics(settings: ServerSettings, variable: str, configured: int, default: int, offset: int) -> int:
    """A companion's metrics port: its own variable when set (0 when the server's metrics are
    off), its default beside the server's default, else the server's + `offset`."""
    if variable in os.environ or not settings.metrics_port:
        return configured if settings.metrics_port else 0
    if settings.metrics_port == DEFAULT_SERVER_METRICS_PORT:
        return default
    return settings.metrics_port + offset if settings.metrics_port + offset < 65536 else 0
