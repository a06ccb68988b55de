"""Writing many rows in one statement, for every service's stores. On PostgreSQL a batch becomes a
single INSERT or UPDATE over `json_to_recordset` of one JSON document (one round trip, one
plan, the rows serialised in C by orjson), which costs a fraction of a statement per row;
SQLite, in process, takes a plain executemany."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import orjson
from sqlalchemy import Connection, Table, TextClause, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql

_PG = postgresql.dialect()


def _record_columns(table: Table, names: tuple[str, ...]) -> str:
    return ", ".join(f"{name} {table.c[name].type.compile(dialect=_PG)}" for name in names)


@cache
def _pg_update(table: Table, key: str, columns: tuple[str, ...]) -> TextClause:
    assignments = ", ".join(f"{name} = v.{name}" for name in columns)
    return text(
        f"UPDATE {table.name} SET {assignments} "
        f"FROM json_to_recordset(CAST(:rows AS json)) AS v({_record_columns(table, (key, *columns))}) "
        f"WHERE {table.name}.{key} = v.{key}"
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


def update_rows(
    conn: Connection, table: Table, key: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """Set `columns` (by default every key of the first row but `key`) of every row, matched on
    `key`, to the row's values."""
    if not rows:
        return
    names = tuple(columns) if columns is not None else tuple(n for n in rows[0] if n != key)
    if conn.dialect.name == "postgresql":
        conn.execute(_pg_update(table, key, names), {"rows": _json_rows((key, *names), rows)})
    else:
        conn.execute(
            _executemany_update(table, key, names),
            [{f"b_{n}": r[n] for n in (key, *names)} for r in rows],
        )


def insert_rows(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """Insert the rows' `columns` (by default the first row's keys)."""
    if not rows:
        return
    names = tuple(columns) if columns is not None else tuple(rows[0])
    if conn.dialect.name == "postgresql":
        conn.execute(_pg_insert(table, names), {"rows": _json_rows(names, rows)})
    else:
        conn.execute(insert(table), [{n: r[n] for n in names} for r in rows])


def new_ids(conn: Connection, table: Table, key: str, count: int) -> list[int]:
    """`count` fresh values of `key`'s sequence (PostgreSQL), in increasing order, so that a batch
    can be inserted with its ids in one statement and its rows still be told apart."""
    query = text(
        "SELECT nextval(pg_get_serial_sequence(:table, :key)) FROM generate_series(1, :count) ORDER BY 1"
    )
    return list(conn.execute(query, {"table": table.name, "key": key, "count": count}).scalars())
