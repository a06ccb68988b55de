"""The identity service's settings (PANDA_ variables, or the settings file's [iam] section)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from panda_runtime.settings import (
    DEFAULT_IAM_HTTP_PORT,
    DEFAULT_IAM_METRICS_PORT,
    DatabaseSettings,
    GatewayAddressSettings,
    IamAddressSettings,
    IssuerSettings,
    ServingSettings,
)

__all__ = ["IamSettings"]


class IamSettings(DatabaseSettings, IamAddressSettings, IssuerSettings, ServingSettings, GatewayAddressSettings):
    """The gateway's address (or public URL) says where the web monitor's sign-in comes back to:
    the redirect URI of the client `panda-monitor`."""

    component: ClassVar[str] = "iam"

    iam_metrics_port: int = Field(
        default=DEFAULT_IAM_METRICS_PORT,
        description="the identity service's Prometheus `/metrics` port; 0 turns it off",
    )
    iam_http_host: str = Field(default="127.0.0.1", description="where the OIDC endpoints listen")
    iam_http_port: int = Field(default=DEFAULT_IAM_HTTP_PORT, description="the OIDC endpoints' HTTP port")
    # PanDA's lifetimes: about a day for people, about four days for robots.
    iam_user_token_seconds: int = Field(default=24 * 3600, description="lifetime of a person's access token")
    iam_robot_token_seconds: int = Field(
        default=4 * 24 * 3600, description="lifetime of a robot's access token (services, pilots)"
    )
    iam_refresh_token_seconds: int = Field(default=30 * 24 * 3600, description="lifetime of a refresh token")
    iam_device_code_seconds: int = Field(default=600, description="how long a device sign-in code lives")
    iam_device_poll_seconds: int = Field(default=5, description="how often a device sign-in may be polled")
    iam_trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="reverse proxies (addresses or CIDR networks, comma separated) whose `X-Forwarded-For` names "
        "the client the sign-in limits count; empty: the connection's own peer is the client",
        json_schema_extra={"shown_default": ""},
    )

    @field_validator("iam_trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.replace(" ", ",").split(",") if part.strip()]
        return value

    @field_validator("iam_trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for proxy in value:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or network") from None
        return value
