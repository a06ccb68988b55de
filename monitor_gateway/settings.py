"""The gateway's settings (PANDA_ variables, or the settings file's [gateway] section)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from panda_runtime.settings import (
    DEFAULT_GATEWAY_METRICS_PORT,
    GatewayAddressSettings,
    IamAddressSettings,
    IssuerSettings,
    JediAddressSettings,
    MetricsHostSettings,
    ServerAddressSettings,
)

__all__ = ["GatewaySettings"]


class GatewaySettings(GatewayAddressSettings, ServerAddressSettings, JediAddressSettings, IamAddressSettings,
                      IssuerSettings, MetricsHostSettings):
    """The services' addresses say where each API's calls go: `panda.server.*` and
    `panda.harvester.*` (harvester's registry, which the server keeps) to the server,
    `panda.jedi.*` to JEDI, `panda.iam.*` to the identity service."""

    component: ClassVar[str] = "gateway"

    gateway_metrics_port: int = Field(
        default=DEFAULT_GATEWAY_METRICS_PORT, description="the gateway's Prometheus `/metrics` port; 0 turns it off"
    )
    gateway_deadline_seconds: float = Field(
        default=30.0, gt=0,
        description="the deadline of every call the gateway makes for a request (a request's `Grpc-Timeout` "
        "header may ask for less); a stream has none unless it asks",
    )
    gateway_max_body_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="largest request body the gateway reads; larger: 413"
    )
    gateway_max_streams: int = Field(
        default=1000, gt=0,
        description="streams (`WatchJobs`, `WatchTasks`) the gateway serves at once; one more: 429",
    )
    gateway_keepalive_seconds: float = Field(
        default=15.0, gt=0,
        description="a quiet stream gets a line clients ignore this often, so proxies do not close it",
    )

    gateway_monitor: bool = Field(default=True, description="serve the web monitor at `/monitor/`")
    gateway_monitor_client_id: str = Field(
        default="panda-monitor",
        description="the identity service's public client the monitor signs people in as (authorization code "
        "with PKCE); its redirect URI is the gateway's URL + `/monitor/auth/callback`",
    )
    gateway_session_secret: str = Field(
        default="", repr=False,
        description="signs the web monitor's session cookies; empty: a random one at each start (people sign in "
        "again after a restart); the same on every gateway behind one address",
    )
    gateway_secure_cookies: bool = Field(
        default=True,
        description="mark the monitor's session cookie `Secure` (sent over HTTPS only; browsers also send it to "
        "`http://localhost` and loopback); turn off only for a monitor served over plain HTTP elsewhere",
    )

    def upstreams(self) -> dict[str, str]:
        """Which address serves the services of each contracts package."""
        return {"panda.server.": self.server_address, "panda.harvester.": self.server_address,
                "panda.jedi.": self.jedi_address, "panda.iam.": self.iam_address}
