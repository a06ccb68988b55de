"""The command line's settings (PANDA_ variables, or the settings file's [cli] section); its
flags win over them. `panda up` and `panda serve` start services with those services' own
settings."""

from __future__ import annotations

from typing import ClassVar

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
