"""The authorization code grant's rules without a process: PKCE (S256 only, required), what
presenting a code comes to, redirect URIs a client may register, the grants a client with them
gets, error descriptions kept to RFC 6749's characters, and revoked sign-ins on the list."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from iam_svc.domain import authorization, oauth
from iam_svc.domain.accounts import check_grant_types
from iam_svc.domain.authorization import AuthorizationCode, Redemption, check_code_challenge, redemption
from iam_svc.domain.oauth import OAuthError, describable
from iam_svc.domain.revocation import SESSION, Revocation, latest
from panda_runtime.contracts import Violation
from panda_runtime.contracts.iam import check_redirect_uri, check_redirect_uris
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.revocation import RevocationList, revocation_document

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(b"verifier" * 8).digest()).decode().rstrip("=")
CODE = AuthorizationCode(
    client_id="panda-monitor", redirect_uri="https://panda.example.org/monitor/auth/callback", user_name="alice",
    scope="openid", nonce="n", code_challenge=CHALLENGE, code_challenge_method="S256", family="f" * 32,
    state=authorization.ISSUED, auth_time=NOW, expire_time=NOW + timedelta(seconds=authorization.CODE_SECONDS))


def test_pkce_is_required_and_s256_only() -> None:
    check_code_challenge(CHALLENGE, "S256")
    for challenge, method, words in [(None, "S256", "code_challenge is required"), ("", None, "is required"),
                                     (CHALLENGE, None, "must be S256"), (CHALLENGE, "plain", "must be S256"),
                                     ("short", "S256", "not an S256 challenge"),
                                     (CHALLENGE + "A", "S256", "not an S256 challenge")]:
        with pytest.raises(OAuthError) as refused:
            check_code_challenge(challenge, method)
        assert refused.value.error == "invalid_request" and words in refused.value.description


def test_what_presenting_a_code_comes_to() -> None:
    assert authorization.CODE_SECONDS <= 60
    assert redemption(CODE, "panda-monitor", NOW) is Redemption.REDEEMED
    assert redemption(None, "panda-monitor", NOW) is Redemption.UNKNOWN
    assert redemption(CODE, "panda-cli", NOW) is Redemption.WRONG_CLIENT
    assert redemption(CODE, "panda-monitor", CODE.expire_time) is Redemption.EXPIRED
    used = replace(CODE, state=authorization.USED)
    assert redemption(used, "panda-monitor", NOW) is Redemption.REUSED
    # Reuse is reuse even once expired (its sign-in is revoked all the same); another client
    # presenting a spent code learns nothing and revokes nothing.
    assert redemption(used, "panda-monitor", CODE.expire_time) is Redemption.REUSED
    assert redemption(used, "panda-cli", NOW) is Redemption.WRONG_CLIENT
    for outcome in (Redemption.UNKNOWN, Redemption.WRONG_CLIENT, Redemption.EXPIRED, Redemption.REUSED):
        assert authorization.refusal(outcome).error == "invalid_grant"
    assert "already used" in authorization.refusal(Redemption.REUSED).description


def test_redirect_uris_are_https_or_loopback() -> None:
    for good in ("https://panda.example.org/monitor/auth/callback", "http://127.0.0.1:25380/cb",
                 "http://[::1]:8080/cb", "http://localhost/cb", "https://x.org/cb?tenant=1"):
        assert check_redirect_uri(good) == good
    for bad, words in [("http://panda.example.org/cb", "plain http"), ("https://x.org/cb#top", "fragment"),
                       ("ftp://x.org/", "not an absolute https URL"), ("/cb", "not an absolute https URL"),
                       ("https://u:p@x.org/", "user name or password"), ('https://x.org/"', "not a URL"),
                       ("https://x.org/é", "not a URL"), ("https://x.org:port/", "not a URL"),
                       ("https://x.org/" + "a" * 2000, "at most 2000")]:
        with pytest.raises(Violation) as refused:
            check_redirect_uri(bad, "client.redirect_uris[0]")
        assert refused.value.field == "client.redirect_uris[0]" and words in refused.value.description, bad
    with pytest.raises(Violation) as many:
        check_redirect_uris([f"https://x.org/{i}" for i in range(11)], "client.redirect_uris")
    assert many.value.field == "client.redirect_uris"
    with pytest.raises(Violation) as second:
        check_redirect_uris(["https://x.org/", "http://x.org/"], "client.redirect_uris")
    assert second.value.field == "client.redirect_uris[1]"


def test_a_public_client_with_redirect_uris_signs_people_in_through_the_browser() -> None:
    uris = ["https://x.org/cb"]
    assert check_grant_types([], public=True, redirect_uris=uris) == [oauth.AUTHORIZATION_CODE, oauth.REFRESH_TOKEN]
    assert check_grant_types([], public=True) == [oauth.DEVICE_CODE, oauth.REFRESH_TOKEN]
    assert check_grant_types(["code", "refresh_token"], public=False, redirect_uris=uris) == [
        oauth.AUTHORIZATION_CODE, oauth.REFRESH_TOKEN]
    with pytest.raises(InvalidArgument) as refused:
        check_grant_types(["authorization_code"], public=True)
    assert refused.value.details[0].field_violations[0].field == "client.redirect_uris"


def test_error_descriptions_keep_to_the_characters_oauth_allows() -> None:
    assert describable('scope "é\\x" unknown') == "scope ???x? unknown"
    error = OAuthError("invalid_scope", 'unknown scope "ünïcode"')
    assert error.description == "unknown scope ??n?code?" and error.status == 400
    status, body, headers = error()
    assert status == 400 and body == {"error": "invalid_scope", "error_description": "unknown scope ??n?code?"}
    assert ("Cache-Control", "no-store") in headers
    throttled = oauth.too_many_requests("wait", 42)
    assert ("Retry-After", "42") in throttled()[2] and throttled.status == 429


def test_a_revoked_sign_in_ends_every_token_that_names_it() -> None:
    published = latest([Revocation(SESSION, "f" * 32, NOW)])
    assert published.sessions == {"f" * 32: NOW.timestamp()}
    document = revocation_document("https://iam", published.subjects, published.clients, published.sessions)
    revoked = RevocationList.from_document(document, "https://iam")
    # Whenever the token was issued: a revoked sign-in issues nothing more.
    for issued_at in (NOW.timestamp() - 10, NOW.timestamp() + 10):
        assert "its sign-in was revoked" in str(revoked.refusal("alice", "panda-monitor", issued_at, "f" * 32))
    assert revoked.refusal("alice", "panda-monitor", NOW.timestamp(), "another") is None
    assert revoked.refusal("alice", "panda-monitor", NOW.timestamp()) is None
    # A list published without sessions (before they were added) revokes none.
    older = RevocationList.from_document({"issuer": "https://iam", "subjects": [], "clients": []}, "https://iam")
    assert older.sessions == {}
