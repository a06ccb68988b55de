"""`panda up`."""

from __future__ import annotations

from panda_cli import up
from panda_cli.arguments import SERVER_LISTEN_HELP, Commands, non_negative_int, server_address_option

__all__ = ["register"]


def register(commands: Commands) -> None:
    p = commands.with_options(server_address_option(SERVER_LISTEN_HELP)).command(
        "up",
        up.cmd_up,
        "run the identity service, the server, JEDI, the HTTP/JSON gateway and harvester (which starts pilots "
        "as work arrives) in the foreground (Ctrl-C stops)",
        json_flag=False,
    )
    p.add_argument(
        "--pilots",
        type=non_negative_int,
        default=2,
        metavar="N",
        help=f"most pilots harvester runs at once on queue {up.LOCAL_QUEUE} (default 2); unless 0, up to one "
        "more on each of " + ", ".join(name for name, _ in up.EXTRA_QUEUES),
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="SQLite database (unless PANDA_DATABASE_URL is set), logs, storage elements, harvester's queue "
        "configuration and its pilots' directories "
        "(default: PANDA_DATA_DIR, else ~/.local/share/panda-mesh)",
    )
    p.add_argument(
        "--demo", action="store_true", help="also submit two sample jobs (one writes an output file, one sleeps 20s)"
    )
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds to wait for each child to stop before SIGKILL (default 20)",
    )
