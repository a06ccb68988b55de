"""`panda pilot`: its options belong to pilot_agent; main() hands it every argument after `pilot`."""

from __future__ import annotations

from panda_cli import runners
from panda_cli.arguments import Commands

__all__ = ["register"]


def register(commands: Commands) -> None:
    commands.pass_through("pilot", runners.cmd_pilot, "run a pilot (panda pilot --help for its options)")
