"""The OAuth 2.0 / OpenID Connect provider over its stores: client authentication, the grants
(authorization code, client_credentials, device code, refresh_token), revocation, keys and
userinfo. The rules are the domain's; this looks up, applies and signs. The protocol around it
(which grant a request asks for, how a client authenticates, how errors go out) is the OAuth
server's at the HTTP edge. Synchronous: the HTTP edge runs it off the event loop, provisioning
calls it directly."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from iam_svc.domain import accounts, authorization, codes, device, keys, oauth, refresh, revocation, tokens
from iam_svc.domain.accounts import Client, User
from iam_svc.domain.authorization import AuthorizationCode, Redemption
from iam_svc.domain.device import Decision, DeviceAuthorization, DeviceCode, PollResult
from iam_svc.domain.keys import SigningKey
from iam_svc.domain.lifetimes import Lifetimes
from iam_svc.domain.oauth import OAuthError, invalid_request
from iam_svc.domain.passwords import hash_password, needs_rehash
from iam_svc.domain.refresh import RefreshOutcome
from iam_svc.domain.tokens import TokenResponse
from iam_svc.settings import IamSettings
from iam_svc.store.flow_store import FlowStore
from iam_svc.store.identity_store import IdentityStore
from iam_svc.store.key_store import KeyStore
from panda_runtime.service.principals import SESSION_CLAIM
from panda_runtime.service.revocation import RevocationList, revocation_document

__all__ = ["USER_CODE_ATTEMPTS", "Provider", "lifetimes_of"]

log = logging.getLogger("panda.iam")

# Attempts at a user code no live code holds (20^8 codes: one clash is already rare).
USER_CODE_ATTEMPTS = 10


def lifetimes_of(settings: IamSettings) -> Lifetimes:
    return Lifetimes(
        user_token_seconds=settings.iam_user_token_seconds, robot_token_seconds=settings.iam_robot_token_seconds,
        refresh_token_seconds=settings.iam_refresh_token_seconds,
        device_code_seconds=settings.iam_device_code_seconds, device_poll_seconds=settings.iam_device_poll_seconds,
        leeway_seconds=settings.auth_leeway_seconds,
    )


class Provider:
    def __init__(self, settings: IamSettings, identities: IdentityStore, keys_: KeyStore, flows: FlowStore) -> None:
        self.identities = identities
        self.keys = keys_
        self.flows = flows
        self.issuer = settings.iam_issuer.rstrip("/")
        self.audience = settings.auth_audience
        self.lifetimes = lifetimes_of(settings)

    @property
    def longest_token_seconds(self) -> int:
        return self.lifetimes.longest_token_seconds

    # --- clients -------------------------------------------------------------------------

    def find_client(self, client_id: str) -> Client | None:
        return self.identities.find_client(client_id)

    # --- grants --------------------------------------------------------------------------

    def client_credentials(self, client: Client, scope: str | None) -> TokenResponse:
        granted = tokens.grant_scope(scope, tokens.DEFAULT_ROBOT_SCOPE)
        lifetime = self.lifetimes.token_seconds(robot=True)
        access = self._sign(tokens.access_token_claims(
            tokens.robot_subject(client), issuer=self.issuer, audience=self.audience, scope=granted,
            lifetime_seconds=lifetime, now=time.time()))
        log.info("issued a token to client %s (groups %s)", client.client_id, ",".join(client.groups))
        return tokens.token_response(access, expires_in=lifetime, scope=granted)

    def start_device_authorization(self, client: Client, scope: str | None) -> DeviceAuthorization:
        accounts.check_grant(client, oauth.DEVICE_CODE)
        granted = tokens.grant_scope(scope, tokens.DEFAULT_USER_SCOPE)
        device_code = codes.new_device_code()
        lifetimes = self.lifetimes
        for _ in range(USER_CODE_ATTEMPTS):
            user_code = codes.new_user_code()
            if self.flows.create_device_code(
                device_code_hash=codes.digest(device_code), user_code=user_code, client_id=client.client_id,
                scope=granted, lifetime_seconds=lifetimes.device_code_seconds,
                interval=lifetimes.device_poll_seconds,
            ):
                break
        else:
            raise OAuthError("temporarily_unavailable", "no free user code; try again", 503)
        return device.authorization_response(
            issuer=self.issuer, device_code=device_code, user_code=user_code,
            expires_in=lifetimes.device_code_seconds, interval=lifetimes.device_poll_seconds)

    def poll_device(self, client: Client, device_code: str | None) -> TokenResponse:
        if not device_code:
            raise invalid_request("device_code is missing")
        result, code = self.flows.poll(codes.digest(device_code), client.client_id)
        if result is None or code is None:
            raise oauth.invalid_grant("unknown device code (or one issued to another client)")
        if result is PollResult.APPROVED:
            return self.issue_user_tokens(code.user_name, client.client_id, code.scope)
        raise device.poll_error(result, code.poll_interval)

    def refresh(self, client: Client, refresh_token: str | None, scope: str | None) -> TokenResponse:
        if not refresh_token:
            raise invalid_request("refresh_token is missing")
        new_token = codes.new_refresh_token()
        result = self.flows.rotate_refresh_token(
            token_hash=codes.digest(refresh_token), new_token_hash=codes.digest(new_token),
            client_id=client.client_id, lifetime_seconds=self.lifetimes.refresh_token_seconds)
        if result.outcome is not RefreshOutcome.ROTATED:
            if result.outcome is RefreshOutcome.REUSED:
                log.warning("a spent refresh token of %s (client %s) came back: its sign-in is revoked",
                            result.user_name, client.client_id)
            raise refresh.refusal(result.outcome)
        granted = tokens.grant_scope(scope, result.scope, allowed=result.scope)
        return self._user_tokens(result.user_name, client.client_id, granted, refresh_token=new_token,
                                 family=result.family)

    # --- the authorization code grant ----------------------------------------------------

    def save_authorization_code(self, code: str, client: Client, *, redirect_uri: str, user: User, scope: str,
                                code_challenge: str, code_challenge_method: str, nonce: str,
                                auth_time: datetime) -> None:
        """Keeps a new code (as its digest) for `user` signed in through `client`, bound to what
        the authorization request asked (validated before: client, redirect URI, scope, PKCE)."""
        self.flows.create_authorization_code(code_hash=codes.digest(code), code=AuthorizationCode(
            client_id=client.client_id, redirect_uri=redirect_uri, user_name=user.name, scope=scope, nonce=nonce,
            code_challenge=code_challenge, code_challenge_method=code_challenge_method, family=codes.new_family(),
            state=authorization.ISSUED, auth_time=auth_time,
            expire_time=datetime.now(UTC) + timedelta(seconds=authorization.CODE_SECONDS)))
        log.info("issued an authorization code to client %s for user %s", client.client_id, user.name)

    def authorization_code(self, client: Client, code: str) -> AuthorizationCode:
        """The code `client` presents, while it may still be exchanged; a spent one revokes its
        sign-in (authorization.redemption) and is refused, as is an unknown or expired one."""
        found = self.flows.find_authorization_code(codes.digest(code))
        outcome = authorization.redemption(found, client.client_id, datetime.now(UTC))
        if outcome is Redemption.REUSED:
            return self.redeem_authorization_code(client, code)  # revokes, and refuses
        if outcome is not Redemption.REDEEMED or found is None:
            raise authorization.refusal(outcome)
        return found

    def redeem_authorization_code(self, client: Client, code: str) -> AuthorizationCode:
        """Spends the code (once its PKCE verifier and redirect URI were checked)."""
        outcome, found = self.flows.redeem_authorization_code(codes.digest(code), client.client_id)
        if outcome is Redemption.REUSED and found is not None:
            log.warning("an authorization code of %s (client %s) came back: its sign-in is revoked",
                        found.user_name, client.client_id)
        if outcome is not Redemption.REDEEMED or found is None:
            raise authorization.refusal(outcome)
        return found

    def code_tokens(self, client: Client, code: AuthorizationCode, *, refresh: bool) -> TokenResponse:
        """The tokens of a redeemed code: of its sign-in (its family), with its nonce in the ID
        token; a refresh token when the client may refresh and the scope asks for one."""
        scope = code.scope
        refresh_token = ""
        if refresh and tokens.wants_refresh_token(scope):
            refresh_token = codes.new_refresh_token()
            self.flows.store_refresh_token(
                token_hash=codes.digest(refresh_token), family=code.family, client_id=client.client_id,
                user_name=code.user_name, scope=scope, lifetime_seconds=self.lifetimes.refresh_token_seconds)
        return self._user_tokens(code.user_name, client.client_id, scope, refresh_token=refresh_token,
                                 family=code.family, nonce=code.nonce, auth_time=code.auth_time.timestamp())

    def revoke(self, client: Client, token: str | None) -> None:
        """RFC 7009: revokes a refresh token's sign-in. Access tokens are self-contained and
        expire (or end with their account, see revocation_list); an unknown token is not an error."""
        if not token:
            raise invalid_request("token is missing")
        if self.flows.revoke_family_of(codes.digest(token), client.client_id):
            log.info("client %s revoked a sign-in", client.client_id)

    def issue_user_tokens(self, user_name: str, client_id: str, scope: str) -> TokenResponse:
        """Tokens for a person through a client: an access token, a refresh token (with
        offline_access) and an ID token (with openid)."""
        refresh_token, family = "", codes.new_family()
        if tokens.wants_refresh_token(scope):
            refresh_token = codes.new_refresh_token()
            self.flows.store_refresh_token(
                token_hash=codes.digest(refresh_token), family=family, client_id=client_id,
                user_name=user_name, scope=scope, lifetime_seconds=self.lifetimes.refresh_token_seconds)
        return self._user_tokens(user_name, client_id, scope, refresh_token=refresh_token, family=family)

    def _user_tokens(self, user_name: str, client_id: str, scope: str, *, refresh_token: str, family: str,
                     nonce: str = "", auth_time: float | None = None) -> TokenResponse:
        """A person's tokens of the sign-in `family` (their `sid`)."""
        subject = tokens.person_subject(user_name, self.identities.find_user(user_name), client_id, family)
        lifetime, now = self.lifetimes.token_seconds(robot=False), time.time()
        access = self._sign(tokens.access_token_claims(
            subject, issuer=self.issuer, audience=self.audience, scope=scope, lifetime_seconds=lifetime, now=now))
        id_token = ""
        if tokens.wants_id_token(scope):
            id_token = self._sign(tokens.id_token_claims(subject, issuer=self.issuer, lifetime_seconds=lifetime,
                                                         now=now, scope=scope, nonce=nonce, auth_time=auth_time),
                                  token_type="JWT")
        log.info("issued tokens to user %s through client %s", user_name, client_id)
        return tokens.token_response(access, expires_in=lifetime, scope=scope, refresh_token=refresh_token,
                                     id_token=id_token)

    # --- people signing in (device verification page) ------------------------------------

    def sign_in(self, user_name: str, password: str) -> User | None:
        """The user, if the password is theirs and the account enabled; None otherwise."""
        user = self.identities.find_user(accounts.sign_in_name(user_name))
        if not accounts.signs_in(user, password):
            return None
        if needs_rehash(user.password_hash):
            self.identities.set_password_hash(user.name, hash_password(password))
        return user

    def pending_device_code(self, user_code: str) -> DeviceCode | None:
        return self.flows.find_by_user_code(user_code)

    def decide_device_code(self, user_code: str, user_name: str, approve: bool) -> Decision:
        decision = self.flows.decide(user_code, user_name, approve)
        if decision is Decision.DONE:
            log.info("user %s %s device code %s", user_name, "approved" if approve else "denied", user_code)
        return decision

    # --- keys ----------------------------------------------------------------------------

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {"keys": [keys.public_jwk(k.private_key_pem, k.kid) for k in self.published_keys()]}

    def published_keys(self) -> list[SigningKey]:
        return self.keys.published_keys(self.longest_token_seconds)

    def ensure_signing_key(self) -> SigningKey:
        return self.keys.ensure_active_key(keys.generate_signing_key)

    def rotate_signing_key(self) -> tuple[SigningKey, list[SigningKey]]:
        new_key = self.keys.rotate(keys.generate_signing_key, self.longest_token_seconds)
        log.info("signing key rotated: %s is now active", new_key.kid)
        return new_key, self.published_keys()

    def revocation_list(self) -> dict[str, Any]:
        """The revocation list every service's token check follows (revocation.published_list)."""
        latest = revocation.latest(self.identities.revocations())
        return revocation_document(self.issuer, latest.subjects, latest.clients, latest.sessions)

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """The claims of one of our own access tokens (for userinfo), not revoked, or OAuthError
        invalid_token."""
        claims = tokens.verify_access_token(token, self.published_keys(), audience=self.audience,
                                            issuer=self.issuer, leeway_seconds=self.lifetimes.leeway_seconds)
        revoked = RevocationList.from_document(self.revocation_list(), self.issuer)
        refusal = revoked.refusal(str(claims["sub"]), str(claims.get("client_id", "")), float(claims["iat"]),
                                  str(claims.get(SESSION_CLAIM, "")))
        if refusal is not None:
            raise OAuthError("invalid_token", refusal, 401)
        return claims

    def userinfo(self, claims: dict[str, Any]) -> dict[str, Any]:
        """OpenID Connect UserInfo, from the account as it is now (not as the token froze it)."""
        subject = str(claims["sub"])
        if tokens.speaks_for_robot(claims):
            return tokens.robot_info(subject, self.identities.find_client(subject))
        return tokens.person_info(subject, self.identities.find_user(subject))

    # --- helpers -------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], token_type: str = "at+jwt") -> str:
        key = self.keys.active_key() or self.ensure_signing_key()
        return tokens.sign(claims, kid=key.kid, private_key_pem=key.private_key_pem, token_type=token_type)
