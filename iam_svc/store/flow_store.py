"""Device codes (RFC 8628), authorization codes (RFC 6749 §4.1) and refresh tokens, each stored by
its SHA-256 digest only. What a poll, a decision, an exchange or a refresh comes to is the
domain's (device, authorization, refresh); this applies it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from iam_svc.domain import authorization, device, refresh, revocation
from iam_svc.domain.authorization import AuthorizationCode, Redemption
from iam_svc.domain.device import Decision, DeviceCode, PollResult
from iam_svc.domain.lifetimes import purge_before
from iam_svc.domain.refresh import RefreshOutcome, RefreshResult, RefreshToken
from iam_svc.store.tables import authorization_codes, device_codes, refresh_tokens, revocations
from panda_runtime.service.db import Store, aware, now

__all__ = ["FlowStore"]


def _device_code(row: Any) -> DeviceCode:
    create_time, expire_time = aware(row.create_time), aware(row.expire_time)
    assert create_time is not None and expire_time is not None
    return DeviceCode(user_code=row.user_code, client_id=row.client_id, scope=row.scope, state=row.state,
                      user_name=row.user_name, create_time=create_time, expire_time=expire_time,
                      poll_interval=row.poll_interval, last_poll_time=aware(row.last_poll_time))


def _refresh_token(row: Any) -> RefreshToken:
    expire_time = aware(row.expire_time)
    assert expire_time is not None
    return RefreshToken(family=row.family, client_id=row.client_id, user_name=row.user_name, scope=row.scope,
                        state=row.state, expire_time=expire_time)


def _authorization_code(row: Any) -> AuthorizationCode:
    auth_time, expire_time = aware(row.auth_time), aware(row.expire_time)
    assert auth_time is not None and expire_time is not None
    return AuthorizationCode(
        client_id=row.client_id, redirect_uri=row.redirect_uri, user_name=row.user_name, scope=row.scope,
        nonce=row.nonce, code_challenge=row.code_challenge, code_challenge_method=row.code_challenge_method,
        family=row.family, state=row.state, auth_time=auth_time, expire_time=expire_time)


class FlowStore(Store):
    # --- authorization codes -------------------------------------------------------------

    def create_authorization_code(self, *, code_hash: str, code: AuthorizationCode) -> None:
        at = now()
        with self._engine.begin() as conn:
            conn.execute(insert(authorization_codes).values(
                code_hash=code_hash, client_id=code.client_id, redirect_uri=code.redirect_uri,
                user_name=code.user_name, scope=code.scope, nonce=code.nonce, code_challenge=code.code_challenge,
                code_challenge_method=code.code_challenge_method, family=code.family, state=code.state,
                auth_time=code.auth_time, create_time=at, expire_time=code.expire_time,
            ))
            conn.execute(delete(authorization_codes).where(authorization_codes.c.expire_time < purge_before(at)))

    def find_authorization_code(self, code_hash: str) -> AuthorizationCode | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(authorization_codes)
                               .where(authorization_codes.c.code_hash == code_hash)).first()
            return None if row is None else _authorization_code(row)

    def redeem_authorization_code(self, code_hash: str, client_id: str
                                  ) -> tuple[Redemption, AuthorizationCode | None]:
        """One exchange of a code (authorization.redemption): a code redeemed now is spent; a
        spent one presented again revokes its sign-in (its refresh tokens, and its tokens' `sid`
        on the revocation list), in the same transaction."""
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(self._locked(
                select(authorization_codes).where(authorization_codes.c.code_hash == code_hash))).first()
            code = None if row is None else _authorization_code(row)
            outcome = authorization.redemption(code, client_id, at)
            if row is not None and outcome is Redemption.REDEEMED:
                conn.execute(update(authorization_codes).where(authorization_codes.c.code_row == row.code_row)
                             .values(state=authorization.USED))
            elif code is not None and outcome is Redemption.REUSED:
                self._revoke_sign_in(conn, code.family, at)
            return outcome, code if outcome is not Redemption.WRONG_CLIENT else None

    @staticmethod
    def _revoke_sign_in(conn: Connection, family: str, at: datetime) -> None:
        conn.execute(update(refresh_tokens).where(refresh_tokens.c.family == family,
                                                  refresh_tokens.c.state != refresh.REVOKED)
                     .values(state=refresh.REVOKED))
        conn.execute(insert(revocations).values(kind=revocation.SESSION, name=family, revoke_time=at))


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
            conn.execute(delete(device_codes).where(device_codes.c.expire_time < purge_before(at)))
        return True

    def find_by_user_code(self, user_code: str) -> DeviceCode | None:
        """The newest code with this user code (a live one, if there is one)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(device_codes).where(device_codes.c.user_code == user_code)
                               .order_by(device_codes.c.expire_time.desc()).limit(1)).first()
            return None if row is None else _device_code(row)

    def decide(self, user_code: str, user_name: str, approve: bool) -> Decision:
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(self._locked(select(device_codes).where(device_codes.c.user_code == user_code)
                                            .order_by(device_codes.c.expire_time.desc()).limit(1))).first()
            decision = device.decide(None if row is None else _device_code(row), at)
            if row is not None and decision is Decision.DONE:
                conn.execute(update(device_codes).where(device_codes.c.device_row == row.device_row).values(
                    state=device.APPROVED if approve else device.DENIED, user_name=user_name))
            return decision

    def poll(self, device_code_hash: str, client_id: str) -> tuple[PollResult | None, DeviceCode | None]:
        """One poll of the token endpoint: (result, the code as the poll left it), result None for
        an unknown code or one issued to another client."""
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(self._locked(
                select(device_codes).where(device_codes.c.device_code_hash == device_code_hash))).first()
            code = None if row is None else _device_code(row)
            result = device.poll(code, client_id, at)
            if row is None or code is None or result is None:
                return None, None
            polled = device.after_poll(code, result, at)
            conn.execute(update(device_codes).where(device_codes.c.device_row == row.device_row).values(
                state=polled.state, poll_interval=polled.poll_interval, last_poll_time=polled.last_poll_time))
            return result, polled

    # --- refresh tokens ------------------------------------------------------------------

    def store_refresh_token(self, *, token_hash: str, family: str, client_id: str, user_name: str, scope: str,
                            lifetime_seconds: int) -> None:
        at = now()
        with self._engine.begin() as conn:
            conn.execute(insert(refresh_tokens).values(
                token_hash=token_hash, family=family, client_id=client_id, user_name=user_name, scope=scope,
                state=refresh.ACTIVE, create_time=at, expire_time=at + timedelta(seconds=lifetime_seconds),
            ))
            conn.execute(delete(refresh_tokens).where(refresh_tokens.c.expire_time < purge_before(at)))

    def rotate_refresh_token(self, *, token_hash: str, new_token_hash: str, client_id: str,
                             lifetime_seconds: int) -> RefreshResult:
        """Exchanges an active refresh token for a new one of the same family (the old one is
        spent), or revokes the family of a spent one that came back (refresh.rotation_outcome)."""
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(self._locked(
                select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash))).first()
            token = None if row is None else _refresh_token(row)
            outcome = refresh.rotation_outcome(token, client_id, at)
            if row is None or token is None or outcome is RefreshOutcome.WRONG_CLIENT:
                return RefreshResult(outcome)
            if outcome is RefreshOutcome.REUSED:
                conn.execute(update(refresh_tokens).where(refresh_tokens.c.family == token.family,
                                                          refresh_tokens.c.state == refresh.ACTIVE)
                             .values(state=refresh.REVOKED))
            elif outcome is RefreshOutcome.ROTATED:
                conn.execute(update(refresh_tokens).where(refresh_tokens.c.token_row == row.token_row)
                             .values(state=refresh.ROTATED))
                conn.execute(insert(refresh_tokens).values(
                    token_hash=new_token_hash, family=token.family, client_id=client_id, user_name=token.user_name,
                    scope=token.scope, state=refresh.ACTIVE, create_time=at,
                    expire_time=at + timedelta(seconds=lifetime_seconds),
                ))
            return RefreshResult(outcome, token.user_name, token.scope, token.family)

    def revoke_family_of(self, token_hash: str, client_id: str) -> bool:
        """Revokes the refresh token's whole family (sign-out); False if it is not this client's."""
        with self._engine.begin() as conn:
            family = conn.execute(select(refresh_tokens.c.family).where(
                refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.client_id == client_id)).scalar()
            if family is None:
                return False
            conn.execute(update(refresh_tokens).where(refresh_tokens.c.family == family,
                                                      refresh_tokens.c.state != refresh.REVOKED)
                         .values(state=refresh.REVOKED))
            return True
