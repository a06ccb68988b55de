"""The identity service's settings (PANDA_ variables, or the settings file's [iam] section)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from panda_runtime.settings import (
    DEFAULT_IAM_HTTP_PORT,
    DEFAULT_IAM_METRICS_PORT,
    DatabaseSettings,
    IamAddressSettings,
    IssuerSettings,
    ServingSettings,
)

__all__ = ["IamSettings"]


class IamSettings(DatabaseSettings, IamAddressSettings, IssuerSettings, ServingSettings):
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
