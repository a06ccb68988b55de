"""Signing keys: exactly one active, retired ones kept while tokens they signed may live."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from iam_svc.domain.keys import ACTIVE, ALGORITHM, RETIRED
from iam_svc.store.tables import signing_keys
from panda_runtime.service.db import Store, aware, now

# Makes a new key: (kid, private key PEM).
KeyFactory = Callable[[], tuple[str, str]]


def _key_dict(row: Any) -> dict[str, Any]:
    record = dict(row._mapping)
    record["create_time"], record["retire_time"] = aware(record["create_time"]), aware(record["retire_time"])
    return record


class KeyStore(Store):
    def active_key(self) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(signing_keys).where(signing_keys.c.state == ACTIVE)).first()
            return None if row is None else _key_dict(row)

    def ensure_active_key(self, make_key: KeyFactory) -> dict[str, Any]:
        """The active key, made first if there is none (the first start)."""
        found = self.active_key()
        if found is not None:
            return found
        kid, pem = make_key()
        try:
            with self._engine.begin() as conn:
                if conn.execute(select(signing_keys.c.kid).where(signing_keys.c.state == ACTIVE)).first() is None:
                    self._insert_active(conn, kid, pem)
        except IntegrityError:
            pass  # another process made one at the same moment: use theirs
        found = self.active_key()
        assert found is not None
        return found

    def rotate(self, make_key: KeyFactory, longest_token_seconds: int) -> dict[str, Any]:
        """Retires the active key, makes a new one active, and drops retired keys whose every
        token has expired. Returns the new key."""
        kid, pem = make_key()
        at = now()
        with self._engine.begin() as conn:
            # Lock the active row so two rotations do not both retire it and race to insert.
            conn.execute(self._locked(select(signing_keys.c.key_row).where(signing_keys.c.state == ACTIVE))).all()
            conn.execute(update(signing_keys).where(signing_keys.c.state == ACTIVE)
                         .values(state=RETIRED, retire_time=at))
            self._insert_active(conn, kid, pem)
            self._prune(conn, longest_token_seconds, at)
            row = conn.execute(select(signing_keys).where(signing_keys.c.kid == kid)).one()
            return _key_dict(row)

    def published_keys(self, longest_token_seconds: int) -> list[dict[str, Any]]:
        """The active key and the retired ones that may still have signed a valid token, newest first."""
        cutoff = now() - timedelta(seconds=longest_token_seconds)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(signing_keys)
                .where((signing_keys.c.state == ACTIVE) | (signing_keys.c.retire_time > cutoff))
                .order_by(signing_keys.c.create_time.desc(), signing_keys.c.key_row.desc())
            ).all()
            return [_key_dict(r) for r in rows]

    def _insert_active(self, conn: Connection, kid: str, pem: str) -> None:
        conn.execute(insert(signing_keys).values(
            kid=kid, algorithm=ALGORITHM, private_key_pem=pem, state=ACTIVE, create_time=now(), retire_time=None,
        ))

    @staticmethod
    def _prune(conn: Connection, longest_token_seconds: int, at: datetime) -> None:
        cutoff = at - timedelta(seconds=longest_token_seconds)
        conn.execute(delete(signing_keys).where(signing_keys.c.state == RETIRED, signing_keys.c.retire_time <= cutoff))
