"""The command line's settings (PANDA_ variables, or the settings file's [cli] section); its
flags win over them. `panda up` and `panda serve` start services with those services' own
settings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from panda_runtime.settings import (
    CallerSettings,
    DatabaseSettings,
    IamAddressSettings,
    JediAddressSettings,
    ServerAddressSettings,
    TrustedIssuersSettings,
)

__all__ = ["CliSettings"]


class CliSettings(
    DatabaseSettings, ServerAddressSettings, JediAddressSettings, IamAddressSettings, TrustedIssuersSettings,
    CallerSettings,
):
    component: ClassVar[str] = "cli"

    monitor_url: str = Field(
        default="",
        description="a web monitor's page of a task, with `{task_id}` where the id goes (without it, the id is "
        "appended after a `/`); set, `panda run` and `panda task submit` print the new task's page on stderr",
    )
