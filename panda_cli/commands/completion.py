"""`panda completion bash|zsh|fish|install`."""

from __future__ import annotations

from panda_cli import completion
from panda_cli.arguments import Commands

__all__ = ["register"]


def register(commands: Commands) -> None:
    group = commands.group("completion", "shell completion: print the script, or install it for your shell",
                           "completion of commands, flags, queue names and states in bash, zsh and fish",
                           dest="completion_command", metavar="SHELL|install")
    for shell in completion.SHELLS:
        group.command(shell, completion.cmd_completion_script, f"print the {shell} completion script",
                      json_flag=False)
    p = group.command("install", completion.cmd_completion_install,
                      "install the completion for your shell, in its per-user place", json_flag=False)
    p.add_argument("--shell", choices=completion.SHELLS, help="default: the one SHELL names")
