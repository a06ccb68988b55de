"""Writing many rows in one statement. On PostgreSQL a batch becomes a single UPDATE or
INSERT over `unnest` of one array per column (one round trip, one plan), which costs a
fraction of a statement per row; SQLite, in process, takes a plain executemany."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table, TextClause, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql

_PG = postgresql.dialect()


def _array_type(table: Table, column: str) -> str:
    return f"{table.c[column].type.compile(dialect=_PG)}[]"


@cache
def _pg_update(table: Table, key: str, columns: tuple[str, ...]) -> TextClause:
    names = (key, *columns)
    arrays = ", ".join(f"CAST(:a{i} AS {_array_type(table, name)})" for i, name in enumerate(names))
    assignments = ", ".join(f"{name} = v.{name}" for name in columns)
    return text(
        f"UPDATE {table.name} SET {assignments} FROM unnest({arrays}) AS v({', '.join(names)}) "
        f"WHERE {table.name}.{key} = v.{key}"
    )


@cache
def _pg_insert(table: Table, columns: tuple[str, ...]) -> TextClause:
    arrays = ", ".join(f"CAST(:a{i} AS {_array_type(table, name)})" for i, name in enumerate(columns))
    return text(f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})")


@cache
def _executemany_update(table: Table, key: str, columns: tuple[str, ...]) -> Any:
    return (
        update(table)
        .where(table.c[key] == bindparam(f"b_{key}"))
        .values({name: bindparam(f"b_{name}") for name in columns})
    )


def update_rows(
    conn: Connection, table: Table, key: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Set `columns` of every row (matched on `key`) to the row's values."""
    if not rows:
        return
    columns = tuple(columns)
    if conn.dialect.name == "postgresql":
        names = (key, *columns)
        conn.execute(_pg_update(table, key, columns), {f"a{i}": [r[n] for r in rows] for i, n in enumerate(names)})
    else:
        conn.execute(
            _executemany_update(table, key, columns),
            [{f"b_{n}": r[n] for n in (key, *columns)} for r in rows],
        )


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = tuple(columns)
    if conn.dialect.name == "postgresql":
        conn.execute(_pg_insert(table, columns), {f"a{i}": [r[n] for r in rows] for i, n in enumerate(columns)})
    else:
        conn.execute(insert(table), [{n: r[n] for n in columns} for r in rows])
