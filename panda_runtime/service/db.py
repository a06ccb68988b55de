"""The database engine for every service: SQLite (WAL) by default, PostgreSQL in production,
and the Alembic migrations that bring either to the current schema."""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    create_engine,
    event,
    or_,
    true,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from panda_runtime.service.principals import Scope

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "MIGRATIONS_PACKAGE", "DatabaseNotMigrated", "DbRunner", "Id", "Store", "Time", "aware", "current_revision",
    "ensure_migrated", "head_revision", "is_database_error", "is_sqlite", "is_unavailable", "log_failure",
    "make_engine", "new_metadata", "normalize_url", "now", "scope_condition", "upgrade_database",
]

# The migrations ship as the package `panda_migrations`, so an installed wheel finds them.
MIGRATIONS_PACKAGE = "panda_migrations"


T = TypeVar("T")

# Column types every service's tables use: ids that are BIGINT on PostgreSQL and still
# INTEGER PRIMARY KEY (rowid) on SQLite, and times that are always UTC.
Id = BigInteger().with_variant(Integer(), "sqlite")
Time = DateTime(timezone=True)


def new_metadata() -> MetaData:
    """A service's MetaData, with named constraints so migrations match on SQLite and PostgreSQL."""
    return MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class DbRunner:
    """Runs blocking database calls off the event loop. SQLite takes one writer at a time,
    so it gets one thread; PostgreSQL gets a few."""

    def __init__(self, engine: Engine, threads: int = 4) -> None:
        self.engine = engine
        self._pool = ThreadPoolExecutor(
            max_workers=1 if is_sqlite(engine) else threads, thread_name_prefix="db"
        )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.engine.dispose()


class DatabaseNotMigrated(RuntimeError):
    """The database schema is not at the code's revision."""


def now() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time stored is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


class Store:
    """Base of every service's stores: the engine, and row locks where the database has them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine)

    def _locked(self, query: Any) -> Any:
        """Row locks on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the only write lock."""
        return query if self._sqlite else query.with_for_update()


def scope_condition(scope: Scope, owner: ColumnElement[Any], vo: ColumnElement[Any]) -> ColumnElement[bool]:
    """The rows a caller's scope covers: all, or its own and those of its production VOs."""
    if scope.everything:
        return true()
    return or_(owner == scope.owner, vo.in_(sorted(scope.vos)))


# SQLSTATE classes and codes of a database that is going away or not there: connection
# exceptions (08), an administrator's or a crash's shutdown, a server starting, too many
# connections, the database dropped.
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "3D000")
# SQLite's words for a file it cannot reach or a lock it waited for in vain.
_SQLITE_UNAVAILABLE = ("unable to open database", "database is locked", "disk i/o error", "readonly database")


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached now (refused, lost, shut down,
    locked too long), as opposed to refusing what was asked of it: the caller may try again
    later (gRPC's UNAVAILABLE)."""
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated or error.statement is None:
        # A connection that broke, or one that could not be made (no statement ran).
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate:
        return str(sqlstate).startswith(_UNAVAILABLE_SQLSTATES)
    if type(error.orig).__module__.startswith("sqlite3"):
        text = str(error.orig).lower()
        return any(words in text for words in _SQLITE_UNAVAILABLE)
    return False


def log_failure(logger: logging.Logger, what: str, error: BaseException) -> None:
    """A long-running loop's failed step: the database out of reach in one line (expected, and
    the loop tries again), anything else with its traceback."""
    if is_unavailable(error):
        cause = getattr(error, "orig", None) or error
        logger.warning("%s: the database is unavailable (%s); trying again", what, type(cause).__name__)
    else:
        logger.error("%s", what, exc_info=error)


def is_database_error(error: BaseException) -> bool:
    """Whether `error` is the database's (or its driver's) answer, whose words may quote SQL
    and data: a caller is told no more than its kind."""
    return isinstance(error, DBAPIError)


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine whose transactions take the write lock up front on SQLite (BEGIN IMMEDIATE),
    so two writers never deadlock on a lock upgrade, and whose PostgreSQL pool suits a server."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # No pre-ping: it costs a round trip per transaction; a dropped connection fails one
        # transaction, which callers retry.
        return create_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600, json_deserializer=orjson.loads
        )

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 60}, json_deserializer=orjson.loads
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(importlib.resources.files(MIGRATIONS_PACKAGE)))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade_database(url: str, revision: str = "head") -> tuple[str | None, str]:
    """Migrate to head (or to `revision`, for benchmarks of an earlier schema). Returns
    (revision before, revision after)."""
    from alembic import command

    engine = make_engine(url, pool_size=1)
    try:
        before = current_revision(engine)
    finally:
        engine.dispose()
    command.upgrade(_alembic_config(url), revision)
    return before, head_revision() if revision == "head" else revision


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ensure_migrated(engine: Engine) -> None:
    """Refuse to serve on a database that is not at the code's schema revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = "empty (never migrated)" if current is None else f"at revision {current}"
        raise DatabaseNotMigrated(
            f"database {where} is {state}, but this version needs {head}: run `panda db upgrade`"
        )
