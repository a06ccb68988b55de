"""Signing in through the browser (`panda serve iam` on SQLite and PostgreSQL, real HTTP): the
authorization code grant with PKCE as the web monitor uses it, from /authorize's sign-in page to
tokens the services accept, and every way it refuses: a wrong or missing PKCE verifier, no
challenge, a code used twice (its tokens then revoked), an unregistered redirect URI (an error
page, never a redirect), a wrong password, a form without its CSRF token, an expired code."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import grpc
import httpx
import jwt
import pytest
from sqlalchemy import select, text

from iam_svc.domain.throttle import ThrottleLimits
from iam_svc.main import IamSettings, provision
from iam_svc.store.tables import authorization_codes
from panda.iam.v1 import iam_service_pb2, identity_pb2
from tests.iam_support import Iam, Page, iam_stub, verify

pytest_plugins = ["tests.iam_fixtures"]

# The web monitor's client, as every identity service registers it (the gateway at its default
# address: the test processes set no PANDA_GATEWAY).
MONITOR = "panda-monitor"
MONITOR_CALLBACK = "http://127.0.0.1:25380/monitor/auth/callback"
SCOPE = "openid profile offline_access wlcg.groups"


def pkce() -> tuple[str, str]:
    """(verifier, its S256 challenge), as a client makes them (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Person:
    """A browser that keeps cookies and does not follow the redirect back to the client (nothing
    listens there): it reads where it was sent."""

    def __init__(self, iam: Iam, address: str = "127.0.0.1") -> None:
        self.iam = iam
        self.http = httpx.Client(timeout=15, follow_redirects=False,
                                 transport=httpx.HTTPTransport(local_address=address))

    def authorize(self, **params: str) -> httpx.Response:
        return self.http.get(f"{self.iam.issuer}/authorize?{urlencode(params)}")

    def sign_in(self, page: httpx.Response, user: str, password: str, **change: str) -> httpx.Response:
        assert page.status_code == 200, page.text
        form = Page(str(page.url), page.status_code, page.text).form()
        assert form.method == "post" and form.action == "authorize"
        return self.http.post(f"{self.iam.issuer}/authorize",
                              data={**form.fields, "username": user, "password": password, **change})

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def person(iam: Iam) -> Iterator[Person]:
    browser = Person(iam)
    yield browser
    browser.close()


def request(challenge: str, *, client_id: str = MONITOR, redirect_uri: str = MONITOR_CALLBACK, state: str = "",
            nonce: str = "n-0S6_WzA2Mj", scope: str = SCOPE) -> dict[str, str]:
    return {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
            "state": state or secrets.token_urlsafe(12), "nonce": nonce, "code_challenge": challenge,
            "code_challenge_method": "S256"}


def sent_back(response: httpx.Response, redirect_uri: str = MONITOR_CALLBACK) -> dict[str, str]:
    """The parameters the person's browser brings to `redirect_uri`."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.split("?")[0] == redirect_uri, location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def exchange(iam: Iam, code: str, verifier: str | None, *, client_id: str = MONITOR,
             redirect_uri: str = MONITOR_CALLBACK) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "client_id": client_id}
    if verifier is not None:
        form["code_verifier"] = verifier
    return httpx.post(f"{iam.issuer}/token", data=form, timeout=15)


def signed_in(person: Person, user: str = "alice", **params: str) -> tuple[str, str, dict[str, str]]:
    """A whole sign-in up to the code: (code, verifier, what the client asked)."""
    verifier, challenge = pkce()
    asked = request(challenge, **params)
    back = sent_back(person.sign_in(person.authorize(**asked), user, f"{user}-password"), asked["redirect_uri"])
    assert back["state"] == asked["state"]
    return back["code"], verifier, asked


def whoami(iam: Iam, token: str) -> iam_service_pb2.WhoAmIResponse:
    return iam_stub(iam, None).WhoAmI(iam_service_pb2.WhoAmIRequest(), timeout=10,
                                      metadata=[("authorization", f"Bearer {token}")])


def test_the_discovery_document_offers_the_code_flow_with_pkce(iam: Iam) -> None:
    document = httpx.get(f"{iam.issuer}/.well-known/openid-configuration").json()
    assert document["authorization_endpoint"] == f"{iam.issuer}/authorize"
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "authorization_code" in document["grant_types_supported"]
    assert "none" in document["token_endpoint_auth_methods_supported"]


def test_a_person_signs_in_in_the_browser_and_the_tokens_work(iam: Iam, person: Person) -> None:
    verifier, challenge = pkce()
    asked = request(challenge, state="opaque state/ü", nonce="nonce-1234")
    page = person.authorize(**asked)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    shown = Page(str(page.url), 200, page.text)
    assert "Sign in to PanDA mesh web monitor" in shown.text and "http://127.0.0.1:25380" in shown.text
    # Fits a phone; no script, nothing fetched from elsewhere.
    assert 'name="viewport"' in page.text and "<script" not in page.text
    assert "src=" not in page.text and "<link" not in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "form-action 'self' http://127.0.0.1:25380" in policy
    assert {"username", "password", "csrf_token", "code_challenge", "state"} <= set(shown.form().fields)

    back = sent_back(person.sign_in(page, "alice", "alice-password"))
    assert set(back) == {"code", "state"} and back["state"] == "opaque state/ü"

    tokens = exchange(iam, back["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["scope"] == SCOPE and body["expires_in"] == 24 * 3600
    assert body["refresh_token"] and body["id_token"]
    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert (id_claims["aud"], id_claims["sub"], id_claims["nonce"]) == (MONITOR, "alice", "nonce-1234")
    assert id_claims["iss"] == iam.issuer and id_claims["wlcg.groups"] == ["/panda", "/panda/production"]

    # The access token is good at the identity service's gRPC API (the token check every
    # service runs) and at its userinfo endpoint.
    me = whoami(iam, body["access_token"])
    assert (me.subject, me.client_id) == ("alice", MONITOR) and set(me.roles) == {"user", "production"}
    info = httpx.get(f"{iam.issuer}/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.json()["sub"] == "alice"
    # ... and the monitor renews it with its refresh token, as the command line does.
    renewed = httpx.post(f"{iam.issuer}/token", data={"grant_type": "refresh_token", "client_id": MONITOR,
                                                      "refresh_token": body["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    assert verify(iam, renewed.json()["access_token"]).subject == "alice"


def test_without_openid_there_is_no_id_token(iam: Iam, person: Person) -> None:
    code, verifier, _ = signed_in(person, "bob", scope="wlcg.groups")
    body = exchange(iam, code, verifier).json()
    assert body["scope"] == "wlcg.groups" and "id_token" not in body and "refresh_token" not in body
    assert verify(iam, body["access_token"]).subject == "bob"


def test_a_wrong_or_missing_verifier_gets_no_tokens(iam: Iam, person: Person) -> None:
    code, verifier, _ = signed_in(person)
    wrong = exchange(iam, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant", wrong.text
    missing = exchange(iam, code, None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert "code_verifier" in missing.json()["error_description"]
    # Nor with the right verifier from another client (of the same redirect URI), or to another
    # redirect URI.
    iam_stub(iam, "admin").CreateClient(iam_service_pb2.CreateClientRequest(client=identity_pb2.Client(
        client_id="look-alike", type=identity_pb2.Client.TYPE_PUBLIC, redirect_uris=[MONITOR_CALLBACK])), timeout=10)
    other = exchange(iam, code, verifier, client_id="look-alike")
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    moved = exchange(iam, code, verifier, redirect_uri="http://127.0.0.1:25380/elsewhere")
    assert moved.status_code == 400 and moved.json()["error"] == "invalid_grant"
    assert exchange(iam, code, verifier).status_code == 200


def test_a_request_without_a_challenge_goes_back_to_the_client_refused(iam: Iam, person: Person) -> None:
    for change, words in [({"code_challenge": ""}, "code_challenge is required"),
                          ({"code_challenge_method": "plain"}, "must be S256"),
                          ({"code_challenge_method": ""}, "must be S256"),
                          ({"scope": "openid root"}, "unknown scope root"),
                          ({"prompt": "none"}, "sign in")]:
        asked = {key: value for key, value in {**request(pkce()[1]), **change}.items() if value}
        back = sent_back(person.authorize(**asked))
        assert back["state"] == asked["state"] and "code" not in back, back
        assert back["error"] in ("invalid_request", "invalid_scope", "login_required"), back
        assert words in back["error_description"], back
    wrong_type = sent_back(person.authorize(**{**request(pkce()[1]), "response_type": "token"}))
    assert wrong_type["error"] == "unsupported_response_type"


def test_a_code_used_twice_is_refused_and_its_tokens_are_revoked(iam: Iam, person: Person) -> None:
    code, verifier, _ = signed_in(person, "bob")
    first = exchange(iam, code, verifier)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert verify(iam, tokens["access_token"]).subject == "bob"

    again = exchange(iam, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert "already used" in again.json()["error_description"]
    # Every token of that sign-in is refused from now on: its refresh token, and its access
    # token by every service's token check (through the revocation list) and by userinfo.
    refreshed = httpx.post(f"{iam.issuer}/token", data={"grant_type": "refresh_token", "client_id": MONITOR,
                                                        "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    with pytest.raises(Exception, match="its sign-in was revoked"):
        verify(iam, tokens["access_token"])
    info = httpx.get(f"{iam.issuer}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401
    assert any(entry["sid"] for entry in httpx.get(f"{iam.issuer}/revocations").json()["sessions"])
    # Bob's other sign-ins are untouched.
    other_code, other_verifier, _ = signed_in(person, "bob")
    assert verify(iam, exchange(iam, other_code, other_verifier).json()["access_token"]).subject == "bob"


def test_an_expired_code_is_refused(iam: Iam, person: Person) -> None:
    code, verifier, _ = signed_in(person)
    with iam.db().begin() as conn:
        conn.execute(text("UPDATE iam_authorization_codes SET expire_time = :t WHERE state = 'issued'"),
                     {"t": datetime.now(UTC) - timedelta(seconds=1)})
    late = exchange(iam, code, verifier)
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
    assert "expired" in late.json()["error_description"]


def test_codes_are_short_lived_and_stored_as_digests(iam: Iam, person: Person) -> None:
    code, _, asked = signed_in(person)
    with iam.db().connect() as conn:
        rows = conn.execute(select(authorization_codes)).all()
    assert rows and all(code not in row.code_hash and len(row.code_hash) == 64 for row in rows)
    latest = max(rows, key=lambda row: row.create_time)
    assert latest.code_challenge == asked["code_challenge"] and latest.redirect_uri == MONITOR_CALLBACK
    assert 0 < (latest.expire_time - latest.create_time).total_seconds() <= 60


def test_an_unregistered_redirect_uri_is_an_error_page_never_a_redirect(iam: Iam, person: Person) -> None:
    challenge = pkce()[1]
    for change in ({"redirect_uri": "https://evil.example/callback"},
                   {"redirect_uri": MONITOR_CALLBACK + "/more"},
                   {"redirect_uri": ""},
                   {"client_id": "no-such-client"},
                   {"client_id": ""}):
        asked = {key: value for key, value in {**request(challenge), **change}.items() if value}
        page = person.authorize(**asked)
        assert page.status_code == 400 and "location" not in page.headers, (change, page.status_code)
        assert "Sign-in not possible" in page.text and "evil.example/callback" not in page.headers.get(
            "content-security-policy", "")
    # A sign-in form changed on its way back is checked anew: no code goes anywhere unregistered.
    page = person.authorize(**request(challenge))
    tampered = person.sign_in(page, "alice", "alice-password", redirect_uri="https://evil.example/callback")
    assert tampered.status_code == 400 and "location" not in tampered.headers
    # A client without the grant goes back with unauthorized_client... and the command line's
    # client has no redirect URI at all: an error page.
    cli = person.authorize(**request(challenge, client_id="panda-cli"))
    assert cli.status_code == 400 and "location" not in cli.headers


def test_a_wrong_password_says_so_and_sends_no_code(iam: Iam, person: Person) -> None:
    page = person.authorize(**request(pkce()[1]))
    for user, password in (("alice", "not-her-password"), ("nobody", "alice-password")):
        wrong = person.sign_in(page, user, password)
        assert wrong.status_code == 401 and "location" not in wrong.headers
        again = Page(str(wrong.url), 401, wrong.text)
        assert "Wrong username or password." in again.text and again.form().fields["username"] == user
        assert "code=" not in wrong.text
    with iam.db().connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM iam_authorization_codes")).scalar()
    assert sent_back(person.sign_in(page, "alice", "alice-password"))["code"]
    with iam.db().connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM iam_authorization_codes")).scalar() == before + 1


def test_cancel_goes_back_to_the_client_as_access_denied(iam: Iam, person: Person) -> None:
    asked = request(pkce()[1])
    page = person.authorize(**asked)
    back = sent_back(person.sign_in(page, "", "", decision="cancel"))
    assert back == {"error": "access_denied", "state": asked["state"],
                    "error_description": "The resource owner or authorization server denied the request"}


def test_a_form_without_its_csrf_token_is_refused(iam: Iam, person: Person) -> None:
    page = person.authorize(**request(pkce()[1]))
    form = Page(str(page.url), 200, page.text).form().fields
    without = {key: value for key, value in form.items() if key != "csrf_token"}
    missing = person.http.post(f"{iam.issuer}/authorize", data={**without, "username": "alice",
                                                                "password": "alice-password"})
    assert missing.status_code == 403 and "location" not in missing.headers
    assert "did not come from this page" in missing.text
    # A page elsewhere that copied the token cannot send the cookie it is bound to.
    forged = httpx.post(f"{iam.issuer}/authorize", data={**form, "username": "alice", "password": "alice-password"})
    assert forged.status_code == 403 and "location" not in forged.headers


def test_guessing_passwords_on_the_sign_in_page_is_throttled_by_address(iam: Iam) -> None:
    limits = ThrottleLimits()
    guesser, alice = Person(iam, "127.0.0.41"), Person(iam, "127.0.0.42")
    try:
        page = guesser.authorize(**request(pkce()[1]))
        for _ in range(limits.sign_in_failures_per_address.count):
            assert guesser.sign_in(page, "alice", "guess").status_code == 401
        blocked = guesser.sign_in(page, "alice", "alice-password")
        assert blocked.status_code == 429 and "location" not in blocked.headers
        assert 0 < int(blocked.headers["retry-after"]) <= limits.sign_in_failures_per_address.window_seconds
        assert "Too many failed sign-ins from your address" in blocked.text
        # Alice, from her own address, is not held up.
        assert sent_back(alice.sign_in(alice.authorize(**request(pkce()[1])), "alice", "alice-password"))["code"]
    finally:
        guesser.close()
        alice.close()


def test_clients_register_redirect_uris_that_are_https_or_loopback(iam: Iam, person: Person) -> None:
    admin = iam_stub(iam, "admin")
    created = admin.CreateClient(iam_service_pb2.CreateClientRequest(client=identity_pb2.Client(
        client_id="site-portal", type=identity_pb2.Client.TYPE_PUBLIC,
        redirect_uris=["https://portal.example.org/callback", "http://[::1]:8080/cb"])), timeout=10).client
    assert list(created.redirect_uris) == ["https://portal.example.org/callback", "http://[::1]:8080/cb"]
    assert list(created.grant_types) == ["authorization_code", "refresh_token"]
    assert list(admin.GetClient(iam_service_pb2.GetClientRequest(client_id="site-portal"), timeout=10)
                .client.redirect_uris) == list(created.redirect_uris)
    for uris, grants, field in [(["http://portal.example.org/cb"], [], "client.redirect_uris[0]"),
                                (["https://portal.example.org/cb#x"], [], "client.redirect_uris[0]"),
                                (["/callback"], [], "client.redirect_uris[0]"),
                                ([], ["authorization_code"], "client.redirect_uris")]:
        with pytest.raises(grpc.RpcError) as refused:
            admin.CreateClient(iam_service_pb2.CreateClientRequest(client=identity_pb2.Client(
                client_id="bad-portal", type=identity_pb2.Client.TYPE_PUBLIC, redirect_uris=uris,
                grant_types=grants)), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, uris
        assert field in str(refused.value.trailing_metadata()) or field in refused.value.details()
    # The new client signs people in at once, to its own redirect URI only.
    code, verifier, _ = signed_in(person, client_id="site-portal", redirect_uri="https://portal.example.org/callback")
    tokens = exchange(iam, code, verifier, client_id="site-portal", redirect_uri="https://portal.example.org/callback")
    assert tokens.status_code == 200 and verify(iam, tokens.json()["access_token"]).client_id == "site-portal"


def test_the_monitor_client_follows_the_gateways_public_url(iam: Iam, person: Person) -> None:
    public = "https://panda.example.org/monitor/auth/callback"

    def provision_with(**gateway: str) -> None:
        provision(IamSettings(database_url=iam.database_url, iam_issuer=iam.issuer, auth_issuers=[iam.issuer],
                              **gateway))

    provision_with(gateway_public_url="https://panda.example.org/")
    try:
        monitor = iam_stub(iam, "admin").GetClient(iam_service_pb2.GetClientRequest(client_id=MONITOR), timeout=10)
        assert list(monitor.client.redirect_uris) == [public] and monitor.client.type == identity_pb2.Client.TYPE_PUBLIC
        assert sent_back(person.sign_in(person.authorize(**request(pkce()[1], redirect_uri=public)), "bob",
                                        "bob-password"), public)["code"]
        assert person.authorize(**request(pkce()[1])).status_code == 400  # the old address no more
        # A plain-http public URL is no redirect URI: the monitor's sign-in is off, never sent there.
        provision_with(gateway_public_url="http://panda.example.org")
        assert not iam_stub(iam, "admin").GetClient(iam_service_pb2.GetClientRequest(client_id=MONITOR),
                                                    timeout=10).client.redirect_uris
    finally:
        provision_with(gateway_address="127.0.0.1:25380")


def test_plain_http_beyond_the_loopback_is_refused(iam: Iam) -> None:
    """OAuth over plain http only on the loopback: a request that names another host (as it
    would reach the service through a proxy that did not say it spoke https) is refused."""
    elsewhere = {"Host": "iam.example.org"}
    page = httpx.get(f"{iam.issuer}/authorize", params=request(pkce()[1]), headers=elsewhere)
    assert page.status_code == 400 and "location" not in page.headers and "https" in page.text
    token = httpx.post(f"{iam.issuer}/token", data={"grant_type": "client_credentials"}, headers=elsewhere,
                       auth=("panda-pilot", iam.secrets["panda-pilot"]))
    assert token.status_code == 400 and token.json()["error"] == "insecure_transport"
