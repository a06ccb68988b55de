"""The identity provider's token rules without a database: the scope a grant gets, what a token
says of its subject, its check, userinfo, lifetimes, and when a retired signing key is dropped."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache

import jwt
import pytest

from iam_svc.domain import keys, tokens
from iam_svc.domain.accounts import Client, User
from iam_svc.domain.keys import SigningKey
from iam_svc.domain.lifetimes import KEEP_ENDED, Lifetimes, purge_before
from iam_svc.domain.oauth import OAuthError

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ISSUER, AUDIENCE = "https://iam.example", "panda-mesh"

ALICE = User(name="alice", display_name="Alice A.", email="alice@example.org", password_hash="", enabled=True,
             groups=("/panda", "/panda/production"), create_time=NOW, update_time=NOW)
PILOT = Client(client_id="site-pilot", description="", public=False, secret_hash="", grant_types=(),
               groups=("/panda/pilot",), queues=("local", "local-b"), enabled=True, create_time=NOW,
               update_time=NOW)


@cache
def signing_key(name: str) -> SigningKey:
    """One key per name, made once: making an RSA key takes a while."""
    kid, pem = keys.generate_signing_key()
    return SigningKey(kid=kid, algorithm=keys.ALGORITHM, private_key_pem=pem, state=keys.ACTIVE, create_time=NOW,
                      retire_time=None)


# --- scope -----------------------------------------------------------------------------------


def test_the_scope_a_grant_gets() -> None:
    assert tokens.grant_scope(None, tokens.DEFAULT_USER_SCOPE) == tokens.DEFAULT_USER_SCOPE
    assert tokens.grant_scope("  ", tokens.DEFAULT_ROBOT_SCOPE) == tokens.DEFAULT_ROBOT_SCOPE
    assert tokens.grant_scope("openid openid email", "wlcg") == "openid email"
    with pytest.raises(OAuthError) as unknown:
        tokens.grant_scope("root", "wlcg")
    assert unknown.value.error == "invalid_scope" and "unknown scope root" in unknown.value.description


def test_a_refresh_may_narrow_its_scope_but_not_widen_it() -> None:
    granted = "openid offline_access"
    assert tokens.grant_scope(None, granted, allowed=granted) == granted
    assert tokens.grant_scope("openid", granted, allowed=granted) == "openid"
    with pytest.raises(OAuthError) as wider:
        tokens.grant_scope("openid email", granted, allowed=granted)
    assert wider.value.error == "invalid_scope" and "email was not granted originally" in wider.value.description


def test_which_tokens_a_sign_in_brings() -> None:
    assert tokens.wants_refresh_token("openid offline_access") and not tokens.wants_refresh_token("openid")
    assert tokens.wants_id_token("openid wlcg") and not tokens.wants_id_token("offline_access wlcg.groups")


# --- subjects and claims ---------------------------------------------------------------------


def test_a_robot_token_carries_its_groups_and_queues() -> None:
    subject = tokens.robot_subject(PILOT)
    claims = tokens.access_token_claims(subject, issuer=ISSUER, audience=AUDIENCE, scope="wlcg wlcg.groups",
                                        lifetime_seconds=3600, now=1000.5)
    assert (claims["sub"], claims["client_id"], claims["aud"]) == ("site-pilot", "site-pilot", AUDIENCE)
    assert claims["wlcg.groups"] == ["/panda/pilot"] and claims["panda.queues"] == ["local", "local-b"]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1000, 1000, 4600)
    assert tokens.speaks_for_robot(claims)


def test_a_persons_token_says_what_its_scope_allows() -> None:
    subject = tokens.person_subject("alice", ALICE, "panda-cli")
    narrow = tokens.access_token_claims(subject, issuer=ISSUER, audience=AUDIENCE, scope="openid",
                                        lifetime_seconds=60, now=0)
    assert "name" not in narrow and "email" not in narrow and "panda.queues" not in narrow
    assert narrow["wlcg.groups"] == ["/panda", "/panda/production"]  # always: services decide from groups
    wide = tokens.access_token_claims(subject, issuer=ISSUER, audience=AUDIENCE, scope="openid profile email",
                                      lifetime_seconds=60, now=0)
    assert (wide["name"], wide["email"]) == ("Alice A.", "alice@example.org")
    assert not tokens.speaks_for_robot(wide)
    id_claims = tokens.id_token_claims(subject, issuer=ISSUER, lifetime_seconds=60, now=0, scope="openid")
    assert id_claims["aud"] == "panda-cli" and "wlcg.groups" not in id_claims


def test_a_deleted_or_disabled_account_gets_no_token() -> None:
    for found in (None, replace(ALICE, enabled=False)):
        with pytest.raises(OAuthError) as refused:
            tokens.person_subject("alice", found, "panda-cli")
        assert refused.value.error == "invalid_grant" and "no longer exists or is disabled" in refused.value.description


def test_userinfo_from_the_account_as_it_is_now() -> None:
    assert tokens.person_info("alice", ALICE) == {
        "sub": "alice", "preferred_username": "alice", "name": "Alice A.", "email": "alice@example.org",
        "wlcg.groups": ["/panda", "/panda/production"]}
    assert tokens.robot_info("site-pilot", PILOT) == {
        "sub": "site-pilot", "preferred_username": "site-pilot", "wlcg.groups": ["/panda/pilot"],
        "panda.queues": ["local", "local-b"]}
    for refused_call in (lambda: tokens.person_info("alice", None), lambda: tokens.robot_info("site-pilot", None)):
        with pytest.raises(OAuthError) as refused:
            refused_call()
        assert (refused.value.error, refused.value.status) == ("invalid_token", 401)


# --- the check of the provider's own tokens --------------------------------------------------


def _signed(key: SigningKey, **changes: object) -> str:
    claims = tokens.access_token_claims(tokens.person_subject("alice", ALICE, "panda-cli"), issuer=ISSUER,
                                        audience=AUDIENCE, scope="openid", lifetime_seconds=3600, now=time.time())
    return tokens.sign({**claims, **changes}, kid=key.kid, private_key_pem=key.private_key_pem)


def _refusal(token: str, published: list[SigningKey]) -> str:
    with pytest.raises(OAuthError) as refused:
        tokens.verify_access_token(token, published, audience=AUDIENCE, issuer=ISSUER, leeway_seconds=5)
    assert (refused.value.error, refused.value.status) == ("invalid_token", 401)
    return refused.value.description


def test_the_provider_accepts_only_its_own_valid_tokens() -> None:
    key, other = signing_key("first"), signing_key("other")
    claims = tokens.verify_access_token(_signed(key), [other, key], audience=AUDIENCE, issuer=ISSUER,
                                        leeway_seconds=5)
    assert claims["sub"] == "alice"
    assert jwt.get_unverified_header(_signed(key))["typ"] == "at+jwt"
    assert "not signed by a key of this provider" in _refusal(_signed(key), [other])
    assert "malformed token" in _refusal("not.a.token", [key])
    assert "has expired" in _refusal(_signed(key, exp=int(time.time()) - 60), [key])
    assert "not valid" in _refusal(_signed(key, aud="elsewhere"), [key])
    assert "not valid" in _refusal(_signed(key, iss="https://evil.example"), [key])


# --- lifetimes and keys ----------------------------------------------------------------------


def test_lifetimes() -> None:
    lifetimes = Lifetimes(user_token_seconds=100, robot_token_seconds=400, refresh_token_seconds=1000,
                          device_code_seconds=600, device_poll_seconds=5, leeway_seconds=30)
    assert lifetimes.token_seconds(robot=True) == 400 and lifetimes.token_seconds(robot=False) == 100
    assert lifetimes.longest_token_seconds == 430
    assert purge_before(NOW) == NOW - KEEP_ENDED == NOW - timedelta(days=7)


def test_a_retired_key_is_published_until_its_last_token_expires_then_dropped() -> None:
    longest = 3600
    cutoff = keys.retirement_cutoff(NOW, longest)
    assert cutoff == NOW - timedelta(seconds=longest)
    # Published while its last token may live: retired after the cutoff, exactly when
    # published_until (what RotateSigningKey shows as "dropped after") is still ahead.
    for retired in (NOW, NOW - timedelta(seconds=longest - 1), NOW - timedelta(seconds=longest),
                    NOW - timedelta(seconds=longest + 1)):
        assert (retired > cutoff) == (keys.published_until(retired, longest) > NOW)
    assert keys.published_until(NOW - timedelta(seconds=longest - 1), longest) > NOW
    assert not keys.published_until(NOW - timedelta(seconds=longest), longest) > NOW


def test_a_key_is_named_by_its_thumbprint_and_published_as_a_jwk() -> None:
    key = signing_key("first")
    jwk = keys.public_jwk(key.private_key_pem, key.kid)
    assert jwk["kid"] == key.kid == keys.thumbprint(keys.load_private_key(key.private_key_pem).public_key())
    assert (jwk["kty"], jwk["use"], jwk["alg"]) == ("RSA", "sig", "RS256") and "d" not in jwk
