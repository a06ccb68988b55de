"""Shell completion of `panda` for bash, zsh and fish (argcomplete): the scripts, where `panda
completion install` puts them, and the completers of values: queue and harvester names (asked of
the server, briefly, and nothing when it does not answer), job, task and worker states, queue
statuses.

The shell runs `panda` itself with the line being completed in COMP_LINE; main() hands the
parser to argcomplete before anything else, which prints the candidates and exits."""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argcomplete import shellcode
from argcomplete.completers import ChoicesCompleter

from .errors import CliError, ExitCode

__all__ = [
    "QUEUE_DEADLINE_SECONDS", "SHELLS", "Installation", "choices", "cmd_completion_install", "cmd_completion_script",
    "harvester_names", "installation", "queue_names",
]

SHELLS = ("bash", "zsh", "fish")
# A completion waits for the server's queues at most this long, then offers none.
QUEUE_DEADLINE_SECONDS = 1.0
COMMAND = "panda"


def choices(values: Iterable[str]) -> Callable[..., Iterable[str]]:
    """A completer offering `values` (the flag still takes what its own parsing takes)."""
    return ChoicesCompleter(list(values))


def _from_server(prefix: str, parsed_args: argparse.Namespace, names: Callable[[Any], Iterable[str]]) -> list[str]:
    """The `names` the server gives (a function of a ServerClient), from --server if the line
    gives it, else the settings' address. Whatever goes wrong (nothing answers in time, no
    credentials), no candidates and no message: the shell is in the middle of the user's line.
    The wait covers getting a token too (a signed-in user's may need renewing); a question
    still open then is left behind, and ends with the process."""
    found: list[str] = []

    def ask() -> None:
        from panda_runtime.client import RetryPolicy

        from .clients import server_client
        from .settings import CliSettings

        try:
            address = getattr(parsed_args, "server", None) or CliSettings().server_address
            with server_client(address, deadline=QUEUE_DEADLINE_SECONDS, retry=RetryPolicy.off()) as client:
                given = list(names(client))
        except Exception:
            return
        found.extend(name for name in given if name.startswith(prefix))

    asking = threading.Thread(target=ask, name="names from the server", daemon=True)
    asking.start()
    asking.join(QUEUE_DEADLINE_SECONDS)
    return [] if asking.is_alive() else found


def queue_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The server's queues."""

    def names(client: Any) -> list[str]:
        from panda.server.v1 import queue_pb2

        from .queues import list_all_queues

        return [queue.queue_id for queue in list_all_queues(client, queue_pb2.Queue.STATUS_UNSPECIFIED)]

    return _from_server(prefix, parsed_args, names)


def harvester_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The harvester instances the server knows."""

    def names(client: Any) -> list[str]:
        from panda.harvester.v1 import harvester_service_pb2

        from .clients import all_pages

        request = harvester_service_pb2.ListHarvestersRequest(page_size=1000)
        return [h.harvester_id for page in all_pages(client.harvester.ListHarvesters, request)
                for h in page.harvesters]

    return _from_server(prefix, parsed_args, names)


def script(shell: str) -> str:
    """The completion script of `shell`: it registers `panda`'s completion when sourced (bash,
    fish) or autoloaded from fpath (zsh, whose file is the function `_panda`)."""
    return shellcode([COMMAND], shell=shell)


def cmd_completion_script(args: argparse.Namespace) -> int:
    print(script(args.completion_command), end="")
    return 0


# --- install -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Installation:
    """Where a shell's completion of `panda` goes for this user, and for zsh the startup file
    that puts its directory on `fpath` (zsh has no per-user place that is always searched)."""

    shell: str
    path: Path
    startup_file: Path | None = None

    @property
    def startup_line(self) -> str:
        return f"fpath=({self.path.parent} $fpath)  # panda's completion (panda completion install)"


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def installation(shell: str) -> Installation:
    """bash: bash-completion's per-user directory, loaded when `panda` is first completed; zsh:
    a site-functions directory put on fpath in .zshenv (read before .zshrc runs compinit); fish:
    its per-user completions directory, loaded likewise."""
    if shell == "bash":
        base = os.environ.get("BASH_COMPLETION_USER_DIR") or str(_data_home() / "bash-completion")
        return Installation(shell, Path(base) / "completions" / COMMAND)
    if shell == "zsh":
        zdotdir = Path(os.environ.get("ZDOTDIR") or Path.home())
        return Installation(shell, _data_home() / "zsh" / "site-functions" / f"_{COMMAND}", zdotdir / ".zshenv")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return Installation(shell, config / "fish" / "completions" / f"{COMMAND}.fish")


def _users_shell() -> str:
    login_shell = os.environ.get("SHELL", "")
    name = Path(login_shell).name
    if name not in SHELLS:
        raise CliError(f"cannot tell your shell from SHELL={login_shell!r}: give --shell {'|'.join(SHELLS)}",
                       ExitCode.USAGE)
    return name


def cmd_completion_install(args: argparse.Namespace) -> int:
    shell = args.shell or _users_shell()
    place = installation(shell)
    try:
        place.path.parent.mkdir(parents=True, exist_ok=True)
        place.path.write_text(script(shell))
        print(f"installed {shell} completion of panda in {place.path}")
        if place.startup_file is not None:
            startup = place.startup_file.read_text() if place.startup_file.exists() else ""
            if place.startup_line not in startup.splitlines():
                with place.startup_file.open("a") as stream:
                    stream.write(("" if not startup or startup.endswith("\n") else "\n") + place.startup_line + "\n")
                print(f"added {place.path.parent} to fpath in {place.startup_file}")
    except OSError as error:
        raise CliError(f"cannot install the completion: {error}") from None
    needs = {"bash": " (with the bash-completion package)", "zsh": " (with compinit in your .zshrc)", "fish": ""}
    print(f"it works in {shell} shells started from now on{needs[shell]}")
    return 0
