"""`panda config show`."""

from __future__ import annotations

from panda_cli import config
from panda_cli.arguments import Commands, iam_address_option, jedi_address_option, server_address_option

__all__ = ["register"]


def register(commands: Commands) -> None:
    group = commands.group("config", "the settings the command line reads", "the command line's settings",
                           dest="config_command")
    addresses = group.with_options(server_address_option()).with_options(jedi_address_option()).with_options(
        iam_address_option())
    addresses.command("show", config.cmd_config_show,
                      "every setting's value and where it came from: flag, environment, settings file or default")
