"""The command line's settings (PANDA_ variables, or the settings file's [cli] section); its
flags win over them. `panda up` and `panda serve` start services with those services' own
settings."""

from __future__ import annotations

import argparse
from typing import ClassVar, Literal

from pydantic import Field

from panda_runtime.settings import (
    CallerSettings,
    DatabaseSettings,
    GatewayAddressSettings,
    IamAddressSettings,
    JediAddressSettings,
    ServerAddressSettings,
    TrustedIssuersSettings,
)

__all__ = ["FLAG_SETTINGS", "CliSettings", "flags_given"]


class CliSettings(
    DatabaseSettings, ServerAddressSettings, JediAddressSettings, IamAddressSettings, GatewayAddressSettings,
    TrustedIssuersSettings, CallerSettings,
):
    component: ClassVar[str] = "cli"

    monitor_url: str = Field(
        default="",
        description="a web monitor's page of a task, with `{task_id}` where the id goes (without it, the id is "
        "appended after a `/`); set, `panda run` and `panda task submit` print the new task's page on stderr",
    )
    default_queue: str = Field(
        default="",
        description="the queue of `panda submit` (and of a job file's jobs that name none) and of "
        "`panda dataset register` when --queue is not given; empty: submit needs --queue, register uses `local`",
    )
    output_format: Literal["table", "json"] = Field(
        default="table",
        description="what the read commands print: `table`, or `json` as with --json (--no-json: a table)",
    )


# The settings a flag sets for the one command it is given to: (setting, flag, the flag's dest).
FLAG_SETTINGS = (
    ("server_address", "--server", "server"),
    ("jedi_address", "--jedi", "jedi"),
    ("iam_address", "--iam", "iam"),
    ("output_format", "--json", "json"),
)


def flags_given(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """The settings the command's flags set, before main() fills in the others: setting ->
    (the flag as given, the value it sets)."""
    given: dict[str, tuple[str, str]] = {}
    for setting, flag, dest in FLAG_SETTINGS:
        value = getattr(args, dest, None)
        if value is None:
            continue
        if setting == "output_format":
            given[setting] = ("--json", "json") if value else ("--no-json", "table")
        else:
            given[setting] = (flag, str(value))
    return given
