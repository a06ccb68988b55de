"""`panda db upgrade`."""

from __future__ import annotations

from panda_cli import runners
from panda_cli.arguments import Commands

__all__ = ["register"]


def register(commands: Commands) -> None:
    db = commands.group("db", "database maintenance", "database maintenance", dest="db_command")
    p = db.command("upgrade", runners.cmd_db_upgrade, "run migrations to the newest revision", json_flag=False)
    p.add_argument("--database-url", metavar="URL", help="default: PANDA_DATABASE_URL, else SQLite in the data dir")
