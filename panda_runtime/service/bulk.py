"""Writing many rows in one statement, for every service's stores. On PostgreSQL a batch becomes a
single INSERT or UPDATE over `json_to_recordset` of one JSON document (one round trip, one
plan, the rows serialised in C by orjson), which costs a fraction of a statement per row;
SQLite, in process, takes a plain executemany. Rows are dicts, or typed records (dataclasses
and the like) whose attributes are named as the columns; the columns of a record are named by
the caller.

Statements that do not depend on each other's results can be collected and run together
(`run_statements`): on PostgreSQL they go in one round trip (psycopg's pipeline mode), which
matters on a busy machine, where every wait for the database is also a wait for a core."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection, Executable, Table, TextClause, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import DBAPIError

__all__ = [
    "Statement", "insert_rows", "insert_statement", "new_ids", "run_statements", "update_rows", "update_statement",
]

_PG = postgresql.dialect()
_PSYCOPG = PGDialect_psycopg()


def _record_columns(table: Table, names: tuple[str, ...]) -> str:
    return ", ".join(f"{name} {table.c[name].type.compile(dialect=_PG)}" for name in names)


@cache
def _pg_update(table: Table, key: str, columns: tuple[str, ...]) -> TextClause:
    # The keys once more as an array: the planner then finds the rows through the key's index
    # whatever its statistics say. Without it, on a table loaded since its last ANALYZE (a
    # fresh system, a big submission), it joined by scanning the whole table.
    assignments = ", ".join(f"{name} = v.{name}" for name in columns)
    return text(
        f"UPDATE {table.name} SET {assignments} "
        f"FROM json_to_recordset(CAST(:rows AS json)) AS v({_record_columns(table, (key, *columns))}) "
        f"WHERE {table.name}.{key} = v.{key} "
        f"AND {table.name}.{key} = ANY(CAST(:keys AS {table.c[key].type.compile(dialect=_PG)}[]))"
    )


@cache
def _pg_insert(table: Table, columns: tuple[str, ...]) -> TextClause:
    names = ", ".join(columns)
    return text(
        f"INSERT INTO {table.name} ({names}) SELECT {names} "
        f"FROM json_to_recordset(CAST(:rows AS json)) AS v({_record_columns(table, columns)})"
    )


def _getter(names: tuple[str, ...], rows: Sequence[Any]) -> Callable[[Any], Any]:
    """What reads `names` off a row, in C (one name: its value; more: a tuple). Rows are mappings,
    or typed records (dataclasses and the like) whose attributes are named as the columns."""
    return itemgetter(*names) if isinstance(rows[0], Mapping) else attrgetter(*names)


def _dicts(names: tuple[str, ...], rows: Sequence[Any], keys: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Each row's `names` as a dict (under `keys`, by default the names themselves)."""
    get = _getter(names, rows)
    if len(names) == 1:
        return [{(keys or names)[0]: value} for value in map(get, rows)]
    return [dict(zip(keys or names, get(row), strict=True)) for row in rows]


def _json_rows(names: tuple[str, ...], rows: Sequence[Any]) -> str:
    # Values orjson has no encoding for (none expected) are written as text.
    return orjson.dumps(_dicts(names, rows), default=str).decode()


@cache
def _executemany_update(table: Table, key: str, columns: tuple[str, ...]) -> Any:
    return (
        update(table)
        .where(table.c[key] == bindparam(f"b_{key}"))
        .values({name: bindparam(f"b_{name}") for name in columns})
    )


# A statement and its parameters: a dict, or a list of dicts for executemany.
Statement = tuple[Executable, Any]


def update_statement(
    conn: Connection, table: Table, key: str, rows: Sequence[Any], columns: Sequence[str] | None = None
) -> Statement | None:
    """What `update_rows` runs, to be run later (None when there is nothing to write)."""
    if not rows:
        return None
    names = tuple(columns) if columns is not None else tuple(n for n in rows[0] if n != key)
    keyed = (key, *names)
    if conn.dialect.name == "postgresql":
        keys = list(map(_getter((key,), rows), rows))
        return _pg_update(table, key, names), {"rows": _json_rows(keyed, rows), "keys": keys}
    return _executemany_update(table, key, names), _dicts(keyed, rows, tuple(f"b_{n}" for n in keyed))


def insert_statement(
    conn: Connection, table: Table, rows: Sequence[Any], columns: Sequence[str] | None = None
) -> Statement | None:
    """What `insert_rows` runs, to be run later (None when there is nothing to write)."""
    if not rows:
        return None
    names = tuple(columns) if columns is not None else tuple(rows[0])
    if conn.dialect.name == "postgresql":
        return _pg_insert(table, names), {"rows": _json_rows(names, rows)}
    return insert(table), _dicts(names, rows)


def update_rows(
    conn: Connection, table: Table, key: str, rows: Sequence[Any], columns: Sequence[str] | None = None
) -> None:
    """Set `columns` (by default every key of the first row, a dict, but `key`) of every row,
    matched on `key`, to the row's values."""
    run_statements(conn, [update_statement(conn, table, key, rows, columns)])


def insert_rows(
    conn: Connection, table: Table, rows: Sequence[Any], columns: Sequence[str] | None = None
) -> None:
    """Insert the rows' `columns` (by default the keys of the first row, a dict)."""
    run_statements(conn, [insert_statement(conn, table, rows, columns)])


@cache
def _driver_sql(statement: TextClause) -> str:
    return str(statement.compile(dialect=_PSYCOPG))


def run_statements(conn: Connection, statements: Sequence[Statement | None]) -> list[list[dict[str, Any]]]:
    """Run the statements in order, in the connection's transaction, and return each one's rows
    as dicts, in the statements' order ([] for those that return none, and for None entries,
    which are skipped). On PostgreSQL, text statements with one set of parameters travel
    together in one round trip (with the BEGIN of a transaction they start)."""
    todo = [s for s in statements if s is not None]
    pipelined = (
        conn.dialect.name == "postgresql" and bool(todo)
        and all(isinstance(stmt, TextClause) and isinstance(params, dict) for stmt, params in todo)
    )
    rows: list[list[dict[str, Any]]] = []
    if pipelined:
        driver = conn.connection.driver_connection
        assert driver is not None, "a connection in use has its driver's connection"
        cursors = []
        try:
            with driver.pipeline():
                for stmt, params in todo:
                    cursor = driver.cursor(row_factory=dict_row)
                    cursor.execute(_driver_sql(stmt), params)
                    cursors.append(cursor)
            rows = [cursor.fetchall() if cursor.description else [] for cursor in cursors]
        except psycopg.Error as error:
            # As SQLAlchemy raises it for any other statement (IntegrityError and so on), with
            # a statement (its parameters may be megabytes: left out) and whether the
            # connection broke, which tells an outage from a refusal.
            failed = todo[min(len(cursors), len(todo) - 1)][0]
            raise DBAPIError.instance(_driver_sql(failed), None, error, psycopg.Error,
                                      connection_invalidated=driver.closed or driver.broken) from error
    else:
        for stmt, params in todo:
            result = conn.execute(stmt, params)
            rows.append([dict(row._mapping) for row in result] if result.returns_rows else [])
    ran = iter(rows)
    return [[] if statement is None else next(ran) for statement in statements]


def new_ids(conn: Connection, table: Table, key: str, count: int) -> list[int]:
    """`count` fresh values of `key`'s sequence (PostgreSQL), in increasing order, so that a batch
    can be inserted with its ids in one statement and its rows still be told apart."""
    query = text(
        "SELECT nextval(pg_get_serial_sequence(:table, :key)) FROM generate_series(1, :count) ORDER BY 1"
    )
    return list(conn.execute(query, {"table": table.name, "key": key, "count": count}).scalars())
