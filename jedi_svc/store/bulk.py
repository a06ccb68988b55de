"""Writing thousands of rows at once (a task's chunks, a batch of jobs). On PostgreSQL inserts go
through COPY and updates are one UPDATE over `json_to_recordset` of one JSON document: one
round trip each instead of a statement per row. SQLite, in process, takes executemany."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Table, TextClause, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql

_PG = postgresql.dialect()


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys, in the connection's transaction."""
    if not rows:
        return
    if not _is_pg(conn):
        conn.execute(insert(table), list(rows))
        return
    names = list(rows[0])
    json_columns = {n for n in names if isinstance(table.c[n].type, JSON)}
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([orjson.dumps(row[n]).decode() if n in json_columns else row[n] for n in names])


@cache
def _pg_update(table: Table, key: str, columns: tuple[str, ...]) -> TextClause:
    record = ", ".join(f"{n} {table.c[n].type.compile(dialect=_PG)}" for n in (key, *columns))
    assignments = ", ".join(f"{n} = v.{n}" for n in columns)
    return text(f"UPDATE {table.name} SET {assignments} FROM json_to_recordset(CAST(:rows AS json)) AS v({record}) "
                f"WHERE {table.name}.{key} = v.{key}")


@cache
def _executemany_update(table: Table, key: str, columns: tuple[str, ...]) -> Any:
    return update(table).where(table.c[key] == bindparam(f"b_{key}")).values(
        {n: bindparam(f"b_{n}") for n in columns})


def update_rows(conn: Connection, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """Set, for each row matched on `key`, the other columns the rows carry (the same in each)."""
    if not rows:
        return
    columns = tuple(n for n in rows[0] if n != key)
    if _is_pg(conn):
        conn.execute(_pg_update(table, key, columns), {"rows": orjson.dumps(list(rows), default=str).decode()})
    else:
        conn.execute(_executemany_update(table, key, columns),
                     [{f"b_{n}": r[n] for n in (key, *columns)} for r in rows])
