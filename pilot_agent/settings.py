"""The pilot's settings (PANDA_ variables, or the settings file's [pilot] section); its
command-line options win over them."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from panda_runtime.settings import CallerSettings, DataDirSettings, ServerAddressSettings

__all__ = ["PilotSettings"]


class PilotSettings(DataDirSettings, ServerAddressSettings, CallerSettings):
    component: ClassVar[str] = "pilot"

    worker_id: str = Field(
        default="", description="the worker (batch job) the pilot runs in, as its provisioner named it"
    )
