"""What the identity stores share: UTC time, SQLite's naive datetimes, row locks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from panda_runtime.db import is_sqlite


def now() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time stored is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


class Store:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine)

    def _locked(self, query: Any) -> Any:
        """Row locks on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the only write lock."""
        return query if self._sqlite else query.with_for_update()
