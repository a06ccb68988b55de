"""Writing many rows in one statement, for every service's stores. On PostgreSQL a batch becomes a
single INSERT or UPDATE over `json_to_recordset` of one JSON document (one round trip, one
plan, the rows serialised in C by orjson), which costs a fraction of a statement per row;
SQLite, in process, takes a plain executemany.

Statements that do not depend on each other's results can be collected and run together
(`run_statements`): on PostgreSQL they go in one round trip (psycopg's pipeline mode), which
matters on a busy machine, where every wait for the database is also a wait for a core."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection, Executable, Table, TextClause, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import DBAPIError

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


def _json_rows(names: tuple[str, ...], rows: Sequence[dict[str, Any]]) -> str:
    # Values orjson has no encoding for (none expected) are written as text.
    return orjson.dumps([{n: r[n] for n in names} for r in rows], default=str).decode()


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
    conn: Connection, table: Table, key: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> Statement | None:
    """What `update_rows` runs, to be run later (None when there is nothing to write)."""
    if not rows:
        return None
    names = tuple(columns) if columns is not None else tuple(n for n in rows[0] if n != key)
    if conn.dialect.name == "postgresql":
        return _pg_update(table, key, names), {"rows": _json_rows((key, *names), rows), "keys": [r[key] for r in rows]}
    return _executemany_update(table, key, names), [{f"b_{n}": r[n] for n in (key, *names)} for r in rows]


def insert_statement(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> Statement | None:
    """What `insert_rows` runs, to be run later (None when there is nothing to write)."""
    if not rows:
        return None
    names = tuple(columns) if columns is not None else tuple(rows[0])
    if conn.dialect.name == "postgresql":
        return _pg_insert(table, names), {"rows": _json_rows(names, rows)}
    return insert(table), [{n: r[n] for n in names} for r in rows]


def update_rows(
    conn: Connection, table: Table, key: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """Set `columns` (by default every key of the first row but `key`) of every row, matched on
    `key`, to the row's values."""
    run_statements(conn, [update_statement(conn, table, key, rows, columns)])


def insert_rows(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """Insert the rows' `columns` (by default the first row's keys)."""
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
            # As SQLAlchemy raises it for any other statement (IntegrityError and so on).
            raise DBAPIError.instance(None, None, error, psycopg.Error) from error
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
