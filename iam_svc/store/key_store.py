"""Signing keys: exactly one active, retired ones kept while tokens they signed may live."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from iam_svc.domain.keys import ACTIVE, ALGORITHM, RETIRED, SigningKey, retirement_cutoff
from iam_svc.store.tables import signing_keys
from panda_runtime.service.db import Store, aware, now

__all__ = ["KeyFactory", "KeyStore"]

# Makes a new key: (kid, private key PEM).
KeyFactory = Callable[[], tuple[str, str]]


def _key(row: Any) -> SigningKey:
    create_time = aware(row.create_time)
    assert create_time is not None
    return SigningKey(kid=row.kid, algorithm=row.algorithm, private_key_pem=row.private_key_pem, state=row.state,
                      create_time=create_time, retire_time=aware(row.retire_time))


class KeyStore(Store):
    def active_key(self) -> SigningKey | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(signing_keys).where(signing_keys.c.state == ACTIVE)).first()
            return None if row is None else _key(row)

    def ensure_active_key(self, make_key: KeyFactory) -> SigningKey:
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

    def rotate(self, make_key: KeyFactory, longest_token_seconds: int) -> SigningKey:
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
            cutoff = retirement_cutoff(at, longest_token_seconds)
            conn.execute(delete(signing_keys).where(signing_keys.c.state == RETIRED,
                                                    signing_keys.c.retire_time <= cutoff))
            return _key(conn.execute(select(signing_keys).where(signing_keys.c.kid == kid)).one())

    def published_keys(self, longest_token_seconds: int) -> list[SigningKey]:
        """The active key and the retired ones that may still have signed a valid token, newest first."""
        retired_after = retirement_cutoff(now(), longest_token_seconds)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(signing_keys)
                .where((signing_keys.c.state == ACTIVE) | (signing_keys.c.retire_time > retired_after))
                .order_by(signing_keys.c.create_time.desc(), signing_keys.c.key_row.desc())
            ).all()
            return [_key(r) for r in rows]

    def _insert_active(self, conn: Connection, kid: str, pem: str) -> None:
        conn.execute(insert(signing_keys).values(
            kid=kid, algorithm=ALGORITHM, private_key_pem=pem, state=ACTIVE, create_time=now(), retire_time=None,
        ))
