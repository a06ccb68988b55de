"""The OAuth 2.0 / OpenID Connect provider's rules over its stores: client authentication,
the three grants (client_credentials, device code, refresh_token), revocation, keys and
userinfo. Synchronous: the HTTP layer runs it off the event loop, bootstrap calls it directly."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import jwt

from iam_svc.domain import codes, keys, oauth, tokens
from iam_svc.domain.device import PollResult
from iam_svc.domain.oauth import OAuthError, invalid_client, invalid_grant, invalid_request
from iam_svc.domain.passwords import hash_password, needs_rehash, verify_password
from iam_svc.settings import IamSettings
from iam_svc.store.flow_store import Decision, FlowStore, RefreshOutcome
from iam_svc.store.identity_store import IdentityStore
from iam_svc.store.key_store import KeyStore

log = logging.getLogger("panda.iam")

# Attempts at a user code no live code holds (20^8 codes: one clash is already rare).
USER_CODE_ATTEMPTS = 10

_REFRESH_REFUSALS = {
    RefreshOutcome.UNKNOWN: "the refresh token is not valid: sign in again",
    RefreshOutcome.WRONG_CLIENT: "the refresh token was issued to another client",
    RefreshOutcome.REUSED: "the refresh token was already used, so every token of this sign-in is now revoked: "
                           "sign in again",
    RefreshOutcome.REVOKED: "the refresh token was revoked: sign in again",
    RefreshOutcome.EXPIRED: "the refresh token has expired: sign in again",
}


class Provider:
    def __init__(self, settings: IamSettings, identities: IdentityStore, keys_: KeyStore, flows: FlowStore) -> None:
        self.settings = settings
        self.identities = identities
        self.keys = keys_
        self.flows = flows
        self.issuer = settings.iam_issuer.rstrip("/")

    @property
    def longest_token_seconds(self) -> int:
        """How long after a key retires a token it signed may still be accepted."""
        s = self.settings
        return max(s.iam_user_token_seconds, s.iam_robot_token_seconds) + s.auth_leeway_seconds

    # --- clients -------------------------------------------------------------------------

    def authenticate_client(self, client_id: str, secret: str | None) -> dict[str, Any]:
        """The client, if it is who it says: a confidential client with its secret, a public
        one with none. Every failure reads the same, so nothing is learnt about which clients exist."""
        client = self.identities.find_client(client_id) if client_id else None
        refused = invalid_client("client authentication failed (unknown client, wrong secret or no secret)")
        if client is None or not client["enabled"]:
            if secret is not None:
                hmac.compare_digest(codes.digest(secret), "0" * 64)  # keep the timing of a real check
            raise refused
        if client["public"]:
            if secret:
                raise invalid_client(f"client {client_id} is public: it authenticates without a secret")
            return client
        if not secret or not hmac.compare_digest(codes.digest(secret), client["secret_hash"]):
            raise refused
        return client

    @staticmethod
    def check_grant(client: dict[str, Any], grant_type: str) -> None:
        if grant_type not in client["grant_types"]:
            raise OAuthError("unauthorized_client", f"client {client['client_id']} may not use the grant {grant_type}")

    # --- grants --------------------------------------------------------------------------

    def client_credentials(self, client: dict[str, Any], scope: str | None) -> dict[str, Any]:
        granted = self._scope(scope, tokens.DEFAULT_ROBOT_SCOPE)
        subject = tokens.Subject(sub=client["client_id"], client_id=client["client_id"], groups=client["groups"],
                                 robot=True, queues=client["queues"])
        lifetime = self.settings.iam_robot_token_seconds
        access = self._sign(tokens.access_token_claims(
            subject, issuer=self.issuer, audience=self.settings.auth_audience, scope=granted,
            lifetime_seconds=lifetime, now=time.time()))
        log.info("issued a token to client %s (groups %s)", client["client_id"], ",".join(client["groups"]))
        return tokens.token_response(access, expires_in=lifetime, scope=granted)

    def start_device_authorization(self, client: dict[str, Any], scope: str | None) -> dict[str, Any]:
        self.check_grant(client, oauth.DEVICE_CODE)
        granted = self._scope(scope, tokens.DEFAULT_USER_SCOPE)
        device_code = codes.new_device_code()
        s = self.settings
        for _ in range(USER_CODE_ATTEMPTS):
            user_code = codes.new_user_code()
            if self.flows.create_device_code(
                device_code_hash=codes.digest(device_code), user_code=user_code, client_id=client["client_id"],
                scope=granted, lifetime_seconds=s.iam_device_code_seconds, interval=s.iam_device_poll_seconds,
            ):
                break
        else:
            raise OAuthError("temporarily_unavailable", "no free user code; try again", 503)
        verification_uri = f"{self.issuer}/device"
        return {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={user_code}",
            "expires_in": s.iam_device_code_seconds,
            "interval": s.iam_device_poll_seconds,
        }

    def poll_device(self, client: dict[str, Any], device_code: str | None) -> dict[str, Any]:
        if not device_code:
            raise invalid_request("device_code is missing")
        result, record = self.flows.poll(codes.digest(device_code), client["client_id"])
        if result is None:
            raise invalid_grant("unknown device code (or one issued to another client)")
        if result is PollResult.APPROVED:
            return self.issue_user_tokens(record["user_name"], client["client_id"], record["scope"])
        descriptions = {
            PollResult.PENDING: "the user has not approved or denied yet",
            PollResult.SLOW_DOWN: f"polling too fast: wait {record['poll_interval']} s between polls",
            PollResult.DENIED: "the user denied the sign-in",
            PollResult.EXPIRED: "the device code has expired: start again",
            PollResult.ALREADY_USED: "the device code was already exchanged for tokens",
        }
        error = "invalid_grant" if result is PollResult.ALREADY_USED else result.value
        raise OAuthError(error, descriptions[result])

    def refresh(self, client: dict[str, Any], refresh_token: str | None, scope: str | None) -> dict[str, Any]:
        if not refresh_token:
            raise invalid_request("refresh_token is missing")
        new_token = codes.new_refresh_token()
        result = self.flows.rotate_refresh_token(
            token_hash=codes.digest(refresh_token), new_token_hash=codes.digest(new_token),
            client_id=client["client_id"], lifetime_seconds=self.settings.iam_refresh_token_seconds)
        if result.outcome is not RefreshOutcome.ROTATED:
            if result.outcome is RefreshOutcome.REUSED:
                log.warning("a spent refresh token of %s (client %s) came back: its sign-in is revoked",
                            result.user_name, client["client_id"])
            raise invalid_grant(_REFRESH_REFUSALS[result.outcome])
        granted = self._scope(scope, result.scope, allowed=result.scope)
        return self._user_tokens(result.user_name, client["client_id"], granted, refresh_token=new_token)

    def revoke(self, client: dict[str, Any], token: str | None) -> None:
        """RFC 7009: revokes a refresh token's sign-in. Access tokens are self-contained and
        simply expire; an unknown token is not an error."""
        if not token:
            raise invalid_request("token is missing")
        if self.flows.revoke_family_of(codes.digest(token), client["client_id"]):
            log.info("client %s revoked a sign-in", client["client_id"])

    def issue_user_tokens(self, user_name: str, client_id: str, scope: str) -> dict[str, Any]:
        """Tokens for a person through a client: an access token, a refresh token (with
        offline_access) and an ID token (with openid)."""
        refresh_token = ""
        if tokens.OFFLINE_ACCESS in scope.split():
            refresh_token = codes.new_refresh_token()
            self.flows.store_refresh_token(
                token_hash=codes.digest(refresh_token), family=codes.new_family(), client_id=client_id,
                user_name=user_name, scope=scope, lifetime_seconds=self.settings.iam_refresh_token_seconds)
        return self._user_tokens(user_name, client_id, scope, refresh_token=refresh_token)

    def _user_tokens(self, user_name: str, client_id: str, scope: str, *, refresh_token: str) -> dict[str, Any]:
        user = self.identities.find_user(user_name)
        if user is None or not user["enabled"]:
            raise invalid_grant(f"user {user_name} no longer exists or is disabled")
        subject = tokens.Subject(sub=user["name"], client_id=client_id, groups=user["groups"], robot=False,
                                 display_name=user["display_name"], email=user["email"])
        lifetime, now = self.settings.iam_user_token_seconds, time.time()
        access = self._sign(tokens.access_token_claims(
            subject, issuer=self.issuer, audience=self.settings.auth_audience, scope=scope,
            lifetime_seconds=lifetime, now=now))
        id_token = ""
        if tokens.OPENID in scope.split():
            id_token = self._sign(tokens.id_token_claims(subject, issuer=self.issuer, lifetime_seconds=lifetime,
                                                         now=now, scope=scope), token_type="JWT")
        log.info("issued tokens to user %s through client %s", user_name, client_id)
        return tokens.token_response(access, expires_in=lifetime, scope=scope, refresh_token=refresh_token,
                                     id_token=id_token)

    # --- people signing in (device verification page) ------------------------------------

    def sign_in(self, user_name: str, password: str) -> dict[str, Any] | None:
        """The user, if the password is theirs and the account enabled; None otherwise."""
        user = self.identities.find_user(user_name.strip().lower())
        password_hash = user["password_hash"] if user is not None else ""
        if not verify_password(password_hash, password) or user is None or not user["enabled"]:
            return None
        if needs_rehash(password_hash):
            self.identities.set_password_hash(user["name"], hash_password(password))
        return user

    def pending_device_code(self, user_code: str) -> dict[str, Any] | None:
        return self.flows.find_by_user_code(user_code)

    def decide_device_code(self, user_code: str, user_name: str, approve: bool) -> Decision:
        decision = self.flows.decide(user_code, user_name, approve)
        if decision is Decision.DONE:
            log.info("user %s %s device code %s", user_name, "approved" if approve else "denied", user_code)
        return decision

    # --- keys ----------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return {"keys": [keys.public_jwk(k["private_key_pem"], k["kid"])
                         for k in self.keys.published_keys(self.longest_token_seconds)]}

    def ensure_signing_key(self) -> dict[str, Any]:
        return self.keys.ensure_active_key(keys.generate_signing_key)

    def rotate_signing_key(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        new_key = self.keys.rotate(keys.generate_signing_key, self.longest_token_seconds)
        log.info("signing key rotated: %s is now active", new_key["kid"])
        return new_key, self.keys.published_keys(self.longest_token_seconds)

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """The claims of one of our own access tokens (for userinfo), or OAuthError invalid_token."""
        def refused(why: str) -> OAuthError:
            return OAuthError("invalid_token", why, 401)

        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as error:
            raise refused(f"malformed token: {error}") from error
        key = next((k for k in self.keys.published_keys(self.longest_token_seconds) if k["kid"] == kid), None)
        if key is None:
            raise refused("the token is not signed by a key of this provider")
        try:
            return jwt.decode(
                token, keys.load_private_key(key["private_key_pem"]).public_key(), algorithms=[keys.ALGORITHM],
                audience=self.settings.auth_audience, issuer=self.issuer, leeway=self.settings.auth_leeway_seconds,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise refused("the token has expired") from error
        except jwt.PyJWTError as error:
            raise refused(f"the token is not valid: {error}") from error

    def userinfo(self, claims: dict[str, Any]) -> dict[str, Any]:
        """OpenID Connect UserInfo, from the account as it is now (not as the token froze it)."""
        subject, client_id = str(claims["sub"]), str(claims.get("client_id", ""))
        if subject == client_id:
            client = self.identities.find_client(client_id)
            if client is None or not client["enabled"]:
                raise OAuthError("invalid_token", f"client {client_id} no longer exists or is disabled", 401)
            info: dict[str, Any] = {"sub": subject, "preferred_username": subject, "wlcg.groups": client["groups"]}
            if client["queues"]:
                info["panda.queues"] = client["queues"]
            return info
        user = self.identities.find_user(subject)
        if user is None or not user["enabled"]:
            raise OAuthError("invalid_token", f"user {subject} no longer exists or is disabled", 401)
        return {"sub": subject, "preferred_username": subject, "name": user["display_name"],
                "email": user["email"], "wlcg.groups": user["groups"]}

    # --- helpers -------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], token_type: str = "at+jwt") -> str:
        key = self.keys.active_key() or self.ensure_signing_key()
        return tokens.sign(claims, kid=key["kid"], private_key_pem=key["private_key_pem"], token_type=token_type)

    @staticmethod
    def _scope(requested: str | None, default: str, allowed: str | None = None) -> str:
        try:
            return tokens.parse_scope(requested, default, allowed)
        except tokens.ScopeError as error:
            raise OAuthError("invalid_scope", str(error)) from error
