"""Commands that run another component in this process: the server, JEDI, the identity
service, the gateway, a pilot, the migrations.

The components are imported only when their command runs, so `panda jobs` stays quick and
works where only the client side is installed."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path
from types import ModuleType

from .arguments import new_parser
from .errors import CliError
from .settings import CliSettings

__all__ = [
    "build_pilot_parser", "cmd_db_upgrade", "cmd_pilot", "cmd_serve_gateway", "cmd_serve_harvester", "cmd_serve_iam",
    "cmd_serve_jedi",
    "cmd_serve_server", "current_revision", "describe_upgrade", "display_url", "ensure_sqlite_directory",
    "import_component", "upgrade", "use_server_address",
]


def import_component(module: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CliError(f"{what} is not available: cannot import {module} ({exc})") from None


def use_server_address(args: argparse.Namespace) -> None:
    """Pass an explicit --server on to the components started here, which read PANDA_SERVER."""
    if getattr(args, "server_explicit", False):
        os.environ["PANDA_SERVER"] = args.server


# --- serve ---------------------------------------------------------------------------------


def _serve(module: str, what: str) -> int:
    service_main = import_component(module, what)
    db = import_component("panda_runtime.service.db", "the database layer")
    not_migrated: type[Exception] = getattr(db, "DatabaseNotMigrated", RuntimeError)
    try:
        service_main.run()
    except not_migrated as exc:
        # A known refusal with its own advice ("run `panda db upgrade`"), not a crash.
        raise CliError(str(exc)) from None
    return 0


def cmd_serve_server(args: argparse.Namespace) -> int:
    use_server_address(args)
    return _serve("server_svc.main", "the server")


def cmd_serve_jedi(args: argparse.Namespace) -> int:
    use_server_address(args)
    if args.jedi:
        os.environ["PANDA_JEDI"] = args.jedi
    return _serve("jedi_svc.main", "JEDI")


def cmd_serve_iam(args: argparse.Namespace) -> int:
    if args.iam:
        os.environ["PANDA_IAM"] = args.iam
    return _serve("iam_svc.main", "the identity service")


def cmd_serve_gateway(args: argparse.Namespace) -> int:
    """The gateway listens at --gateway and sends each API's calls to --server, --jedi, --iam
    (each, when not given, its setting: the gateway reads its own)."""
    use_server_address(args)
    for flag, variable in (("gateway", "PANDA_GATEWAY"), ("jedi", "PANDA_JEDI"), ("iam", "PANDA_IAM")):
        value = getattr(args, flag, None)
        if value:
            os.environ[variable] = value
    return _serve("monitor_gateway.main", "the gateway")


def cmd_serve_harvester(args: argparse.Namespace) -> int:
    """Harvester provisions the queues of --queue-config (default: its setting) through the
    server at --server."""
    use_server_address(args)
    for flag, variable in (("harvester", "PANDA_HARVESTER_ADDRESS"), ("queue_config", "PANDA_HARVESTER_QUEUE_CONFIG"),
                           ("harvester_id", "PANDA_HARVESTER_ID")):
        value = getattr(args, flag, None)
        if value:
            os.environ[variable] = str(value)
    return _serve("harvester_svc.main", "harvester")


# --- pilot -------------------------------------------------------------------------------


def build_pilot_parser(prog: str = "panda pilot") -> argparse.ArgumentParser:
    pilot_cli = import_component("pilot_agent.cli", "the pilot")
    parser = new_parser(prog=prog, description="Run a pilot: take jobs from a queue and run them.")
    pilot_cli.add_arguments(parser)
    return parser


def cmd_pilot(args: argparse.Namespace) -> int:
    use_server_address(args)
    parser = build_pilot_parser()
    if getattr(args, "server_explicit", False):
        # The pilot may have its own --server option; a global one sets its default.
        for action in parser._actions:
            if action.dest in ("server", "server_address"):
                parser.set_defaults(**{action.dest: args.server})
    pilot_args = parser.parse_args(args.pilot_args)
    pilot_cli = import_component("pilot_agent.cli", "the pilot")
    return int(pilot_cli.run(pilot_args) or 0)


# --- db upgrade --------------------------------------------------------------------------


def display_url(url: str) -> str:
    """The URL with any password masked, for printing."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as given; the upgrade will report it
        return url


def ensure_sqlite_directory(url: str) -> None:
    """SQLite creates the file but not its directory; a fresh data dir has neither."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def current_revision(url: str) -> str | None:
    """Alembic revision the database is at, or None (new database, or unknown)."""
    try:
        from alembic.runtime.migration import MigrationContext
        from sqlalchemy import create_engine

        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        finally:
            engine.dispose()
    except Exception:  # only used to describe what happened; the upgrade reports real errors
        return None


def upgrade(url: str) -> tuple[str | None, str | None]:
    """Migrate `url` to head; returns the revisions before and after."""
    db = import_component("panda_runtime.service.db", "the database layer")
    ensure_sqlite_directory(url)
    before = current_revision(url)
    try:
        result = db.upgrade_database(url)
    except Exception as exc:
        raise CliError(f"database upgrade of {display_url(url)} failed: {exc}") from exc
    # The database layer may report (before, after) itself; it knows its URL dialects best.
    if isinstance(result, tuple) and len(result) == 2:
        return result[0], result[1]
    return before, current_revision(url)


def describe_upgrade(url: str, before: str | None, after: str | None) -> str:
    shown = display_url(url)
    if before and before == after:
        return f"database {shown} is up to date (revision {after})"
    if before:
        return f"database {shown} upgraded from revision {before} to {after or 'head'}"
    return f"database {shown} created at revision {after or 'head'}"


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    url = args.database_url or CliSettings().resolved_database_url
    before, after = upgrade(url)
    print(describe_upgrade(url, before, after))
    return 0
