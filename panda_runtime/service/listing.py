"""SQL for List and Count methods, shared by every store that lists: a parsed filter as a WHERE
clause, a sort and the rows after a page's last one (keyset pagination), and counts grouped by
the database in one statement."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, and_, func, or_, select, true, tuple_
from sqlalchemy.sql import ColumnElement, FromClause

from panda_runtime.service.filtering import Comparison, Filter, like_pattern
from panda_runtime.service.ordering import Ordering

__all__ = ["GroupCounts", "after_position", "compare", "count_groups", "filter_condition", "order_clauses"]


def compare(column: ColumnElement[Any], comparison: Comparison) -> ColumnElement[bool]:
    """One comparison on `column`; a text compared by `=` or `!=` with `*` in it is a pattern
    (`queue = "CERN*"`), matched by LIKE with LIKE's own wildcards taken literally."""
    value = comparison.value
    if comparison.is_pattern:
        match = column.like(like_pattern(value), escape="\\")
        return match if comparison.op == "=" else ~match
    return {
        "=": column == value, "!=": column != value, "<": column < value,
        "<=": column <= value, ">": column > value, ">=": column >= value,
    }[comparison.op]


def filter_condition(where: Filter, condition: Callable[[Comparison], ColumnElement[bool]]) -> ColumnElement[bool]:
    """Every group holds, a group when any of its comparisons does: AND of ORs."""
    clauses = [or_(*(condition(c) for c in group)) if len(group) > 1 else condition(group[0])
               for group in where.groups]
    return and_(true(), *clauses)


def order_clauses(ordering: Ordering, columns: Mapping[str, ColumnElement[Any]]) -> list[ColumnElement[Any]]:
    return [columns[k.field].desc() if k.descending else columns[k.field].asc() for k in ordering.keys]


def after_position(ordering: Ordering, columns: Mapping[str, ColumnElement[Any]],
                   values: Sequence[Any]) -> ColumnElement[bool]:
    """The rows after the one whose sort-key values are `values`, in `ordering`'s order. Keys of
    one direction compare as a row value, `(a, id) < (:a, :id)`, which an index on the keys
    serves; mixed directions as `a < :a OR (a = :a AND id > :id)`."""
    keys = [(columns[k.field], k.descending) for k in ordering.keys]
    if len(keys) == 1:
        column, descending = keys[0]
        return column < values[0] if descending else column > values[0]
    if all(descending == keys[0][1] for _, descending in keys):
        row, position = tuple_(*(c for c, _ in keys)), tuple_(*values)
        return row < position if keys[0][1] else row > position
    alternatives = []
    for index, (column, descending) in enumerate(keys):
        same = [c == v for (c, _), v in zip(keys[:index], values[:index], strict=True)]
        alternatives.append(and_(*same, column < values[index] if descending else column > values[index]))
    return or_(*alternatives)


@dataclass(frozen=True)
class GroupCounts:
    """A Count method's answer: the largest groups (their values in group_by order, and their
    counts), and how many rows matched in all."""

    groups: list[tuple[tuple[Any, ...], int]]
    total: int


def count_groups(conn: Connection, table: FromClause, where: ColumnElement[bool],
                 columns: Sequence[ColumnElement[Any]], limit: int) -> GroupCounts:
    """One statement: the rows matching `where` grouped by `columns`, the `limit` largest groups
    (ties by their values), and every matching row's count beside them (a window over all the
    groups, computed before the limit). No columns: the count alone."""
    if not columns:
        total = conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
        return GroupCounts([], int(total))
    labelled = [column.label(f"g{index}") for index, column in enumerate(columns)]
    count = func.count().label("n")
    query: Select[Any] = (
        select(*labelled, count, func.sum(func.count()).over().label("total"))
        .select_from(table).where(where)
        .group_by(*columns)
        .order_by(count.desc(), *columns)
        .limit(limit)
    )
    rows = conn.execute(query).all()
    groups = [(tuple(row[: len(columns)]), int(row.n)) for row in rows]
    return GroupCounts(groups, int(rows[0].total) if rows else 0)
