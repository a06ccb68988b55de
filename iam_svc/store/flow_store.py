"""Device codes (RFC 8628) and refresh tokens, each stored by its SHA-256 digest only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import delete, insert, select, update

from iam_svc.domain import device
from iam_svc.store.tables import device_codes, refresh_tokens
from panda_runtime.service.db import Store, aware, now

ACTIVE = "active"
ROTATED = "rotated"
REVOKED = "revoked"
# Ended device codes and refresh tokens are kept this long for the record, then deleted.
KEEP_ENDED = timedelta(days=7)


def _device_dict(row: Any) -> dict[str, Any]:
    record = dict(row._mapping)
    for key in ("create_time", "expire_time", "last_poll_time"):
        record[key] = aware(record[key])
    return record


class Decision(Enum):
    DONE = "done"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    ALREADY_DECIDED = "already_decided"


class RefreshOutcome(Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    # An already rotated token came back: its whole family is now revoked.
    REUSED = "reused"
    WRONG_CLIENT = "wrong_client"


@dataclass
class RefreshResult:
    outcome: RefreshOutcome
    user_name: str = ""
    scope: str = ""
    family: str = ""


class FlowStore(Store):
    # --- device codes --------------------------------------------------------------------

    def create_device_code(self, *, device_code_hash: str, user_code: str, client_id: str, scope: str,
                           lifetime_seconds: int, interval: int) -> bool:
        """Stores a new code; False when its user code is already taken by a live one (pick another)."""
        at = now()
        with self._engine.begin() as conn:
            clash = conn.execute(select(device_codes.c.device_row).where(
                device_codes.c.user_code == user_code, device_codes.c.expire_time > at)).first()
            if clash is not None:
                return False
            conn.execute(insert(device_codes).values(
                device_code_hash=device_code_hash, user_code=user_code, client_id=client_id, scope=scope,
                state=device.PENDING, user_name="", create_time=at,
                expire_time=at + timedelta(seconds=lifetime_seconds), poll_interval=interval, last_poll_time=None,
            ))
            conn.execute(delete(device_codes).where(device_codes.c.expire_time < at - KEEP_ENDED))
        return True

    def find_by_user_code(self, user_code: str) -> dict[str, Any] | None:
        """The newest code with this user code (a live one, if there is one)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(device_codes).where(device_codes.c.user_code == user_code)
                               .order_by(device_codes.c.expire_time.desc()).limit(1)).first()
            return None if row is None else _device_dict(row)

    def decide(self, user_code: str, user_name: str, approve: bool) -> Decision:
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(self._locked(select(device_codes).where(device_codes.c.user_code == user_code)
                                            .order_by(device_codes.c.expire_time.desc()).limit(1))).first()
            if row is None:
                return Decision.UNKNOWN
            if aware(row.expire_time) <= at:  # type: ignore[operator]
                return Decision.EXPIRED
            if row.state != device.PENDING:
                return Decision.ALREADY_DECIDED
            conn.execute(update(device_codes).where(device_codes.c.device_row == row.device_row).values(
                state=device.APPROVED if approve else device.DENIED, user_name=user_name))
            return Decision.DONE

    def poll(self, device_code_hash: str, client_id: str) -> tuple[device.PollResult | None, dict[str, Any]]:
        """One poll of the token endpoint: (result, code), result None for an unknown code or
        one issued to another client. An approved code is consumed by the poll that sees it."""
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(self._locked(
                select(device_codes).where(device_codes.c.device_code_hash == device_code_hash))).first()
            if row is None or row.client_id != client_id:
                return None, {}
            record = _device_dict(row)
            result = device.poll_result(record["state"], now=at, expire_time=record["expire_time"],
                                        last_poll_time=record["last_poll_time"], interval=record["poll_interval"])
            changes: dict[str, Any] = {"last_poll_time": at}
            if result is device.PollResult.SLOW_DOWN:
                changes["poll_interval"] = record["poll_interval"] + device.SLOW_DOWN_STEP_SECONDS
                record["poll_interval"] = changes["poll_interval"]
            elif result is device.PollResult.APPROVED:
                changes["state"] = device.CONSUMED
            conn.execute(update(device_codes).where(device_codes.c.device_row == row.device_row).values(**changes))
            return result, record

    # --- refresh tokens ------------------------------------------------------------------

    def store_refresh_token(self, *, token_hash: str, family: str, client_id: str, user_name: str, scope: str,
                            lifetime_seconds: int) -> None:
        at = now()
        with self._engine.begin() as conn:
            conn.execute(insert(refresh_tokens).values(
                token_hash=token_hash, family=family, client_id=client_id, user_name=user_name, scope=scope,
                state=ACTIVE, create_time=at, expire_time=at + timedelta(seconds=lifetime_seconds),
            ))
            conn.execute(delete(refresh_tokens).where(refresh_tokens.c.expire_time < at - KEEP_ENDED))

    def rotate_refresh_token(self, *, token_hash: str, new_token_hash: str, client_id: str,
                             lifetime_seconds: int) -> RefreshResult:
        """Exchanges an active refresh token for a new one of the same family (the old one is
        spent). A spent token presented again revokes the family: one of its two holders is
        not its owner."""
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(self._locked(
                select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash))).first()
            if row is None:
                return RefreshResult(RefreshOutcome.UNKNOWN)
            if row.client_id != client_id:
                return RefreshResult(RefreshOutcome.WRONG_CLIENT)
            if row.state == ROTATED:
                conn.execute(update(refresh_tokens).where(refresh_tokens.c.family == row.family,
                                                          refresh_tokens.c.state == ACTIVE).values(state=REVOKED))
                return RefreshResult(RefreshOutcome.REUSED, row.user_name, row.scope, row.family)
            if row.state != ACTIVE:
                return RefreshResult(RefreshOutcome.REVOKED, row.user_name, row.scope, row.family)
            expire_time = aware(row.expire_time)
            assert expire_time is not None
            if expire_time <= at:
                return RefreshResult(RefreshOutcome.EXPIRED, row.user_name, row.scope, row.family)
            conn.execute(update(refresh_tokens).where(refresh_tokens.c.token_row == row.token_row)
                         .values(state=ROTATED))
            conn.execute(insert(refresh_tokens).values(
                token_hash=new_token_hash, family=row.family, client_id=client_id, user_name=row.user_name,
                scope=row.scope, state=ACTIVE, create_time=at, expire_time=at + timedelta(seconds=lifetime_seconds),
            ))
            return RefreshResult(RefreshOutcome.ROTATED, row.user_name, row.scope, row.family)

    def revoke_family_of(self, token_hash: str, client_id: str) -> bool:
        """Revokes the refresh token's whole family (sign-out); False if it is not this client's."""
        with self._engine.begin() as conn:
            row = conn.execute(select(refresh_tokens.c.family, refresh_tokens.c.client_id)
                               .where(refresh_tokens.c.token_hash == token_hash)).first()
            if row is None or row.client_id != client_id:
                return False
            conn.execute(update(refresh_tokens).where(refresh_tokens.c.family == row.family,
                                                      refresh_tokens.c.state != REVOKED).values(state=REVOKED))
            return True
