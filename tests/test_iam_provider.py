"""The identity provider over its real sockets (`panda serve iam` on SQLite and PostgreSQL):
discovery and JWKS, the three grants and their RFC errors, the device page as a person uses
it, refresh-token rotation, key rotation, who may call IamService, and secrets at rest."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
from sqlalchemy import text

from iam_svc.domain import device
from iam_svc.domain.codes import new_user_code, normalize_user_code
from iam_svc.domain.device import PollResult, poll_result
from iam_svc.domain.keys import generate_signing_key
from iam_svc.store.key_store import KeyStore
from panda.iam.v1 import iam_service_pb2, identity_pb2
from panda_runtime.service.db import make_engine
from tests.iam_support import Browser, Iam, iam_stub, sign_in_and_decide, verify
from tools.cluster import fresh_database

pytest_plugins = ["tests.iam_fixtures"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def post(iam: Iam, path: str, data: dict[str, str], auth: tuple[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{iam.issuer}{path}", data=data, auth=auth, timeout=15)


def start_device(iam: Iam) -> dict[str, object]:
    response = post(iam, "/device_authorization", {"client_id": "panda-cli", "scope": "openid offline_access"})
    assert response.status_code == 200, response.text
    return response.json()


def poll(iam: Iam, device_code: object) -> httpx.Response:
    return post(iam, "/token", {"grant_type": DEVICE_GRANT, "device_code": str(device_code), "client_id": "panda-cli"})


def error_of(response: httpx.Response) -> str:
    return str(response.json()["error"])


def test_discovery_and_jwks(iam: Iam) -> None:
    document = httpx.get(f"{iam.issuer}/.well-known/openid-configuration").json()
    assert document["issuer"] == iam.issuer
    for endpoint in ("authorization_endpoint", "jwks_uri", "token_endpoint", "device_authorization_endpoint",
                     "userinfo_endpoint"):
        assert document[endpoint].startswith(iam.issuer + "/")
    assert set(document["grant_types_supported"]) == {"authorization_code", "client_credentials", DEVICE_GRANT,
                                                      "refresh_token"}
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "none"}
    assert {"openid", "offline_access", "wlcg.groups"} <= set(document["scopes_supported"])
    assert {"wlcg.groups", "panda.queues", "sub", "aud"} <= set(document["claims_supported"])

    keys = httpx.get(document["jwks_uri"]).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["use"] == "sig" and k["alg"] == "RS256" and k["kid"] for k in keys)
    assert jwt.get_unverified_header(iam.token("alice"))["kid"] in {k["kid"] for k in keys}


def test_client_credentials_token_carries_the_robot_identity(iam: Iam) -> None:
    response = post(iam, "/token", {"grant_type": "client_credentials"}, auth=("site-pilot", iam.secrets["site-pilot"]))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 4 * 24 * 3600
    assert "refresh_token" not in body

    principal = verify(iam, body["access_token"])
    assert principal.subject == "site-pilot"
    assert principal.grants == {("panda", "pilot")}
    assert principal.queues == {"local", "local-b"}
    assert principal.may_serve_queue("local") and not principal.may_serve_queue("elsewhere")

    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == iam.issuer and claims["aud"] == "panda-mesh" and claims["sub"] == "site-pilot"
    assert claims["wlcg.ver"] == "1.0" and claims["wlcg.groups"] == ["/panda/pilot"]
    assert claims["panda.queues"] == ["local", "local-b"] and claims["client_id"] == "site-pilot"
    assert claims["exp"] - claims["iat"] == 4 * 24 * 3600 and claims["nbf"] == claims["iat"] and claims["jti"]
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "RS256"

    # client_secret_post works too; JEDI's robot is a service and serves no queue of its own.
    response = post(iam, "/token", {"grant_type": "client_credentials", "client_id": "panda-jedi",
                                    "client_secret": iam.secrets["panda-jedi"]})
    assert response.status_code == 200, response.text
    jedi = verify(iam, response.json()["access_token"])
    assert jedi.grants == {("panda", "service")} and jedi.queues == frozenset()


def test_token_endpoint_errors(iam: Iam) -> None:
    wrong = post(iam, "/token", {"grant_type": "client_credentials"}, auth=("panda-pilot", "not-the-secret"))
    assert wrong.status_code == 401 and error_of(wrong) == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    unknown = post(iam, "/token", {"grant_type": "client_credentials"}, auth=("nobody", "x"))
    assert unknown.status_code == 401 and unknown.json() == wrong.json()
    missing = post(iam, "/token", {"grant_type": "client_credentials"})
    assert missing.status_code == 401 and error_of(missing) == "invalid_client"

    public = post(iam, "/token", {"grant_type": "client_credentials", "client_id": "panda-cli"})
    assert public.status_code == 400 and error_of(public) == "unauthorized_client"
    unsupported = post(iam, "/token", {"grant_type": "password", "client_id": "panda-cli"})
    assert unsupported.status_code == 400 and error_of(unsupported) == "unsupported_grant_type"
    scope = post(iam, "/token", {"grant_type": "client_credentials", "scope": "root"},
                 auth=("panda-pilot", iam.secrets["panda-pilot"]))
    assert scope.status_code == 400 and error_of(scope) == "invalid_scope"
    robot_device = post(iam, "/device_authorization", {"client_id": "panda-pilot",
                                                       "client_secret": iam.secrets["panda-pilot"]})
    assert robot_device.status_code == 400 and error_of(robot_device) == "unauthorized_client"


def test_device_flow_over_http(iam: Iam) -> None:
    start = start_device(iam)
    assert set(start) == {"device_code", "user_code", "verification_uri", "verification_uri_complete",
                          "expires_in", "interval"}
    assert start["verification_uri"] == f"{iam.issuer}/device"
    assert start["verification_uri_complete"] == f"{iam.issuer}/device?user_code={start['user_code']}"
    assert start["expires_in"] == 600 and start["interval"] == 1

    pending = poll(iam, start["device_code"])
    assert pending.status_code == 400 and error_of(pending) == "authorization_pending"
    too_fast = poll(iam, start["device_code"])
    assert too_fast.status_code == 400 and error_of(too_fast) == "slow_down"

    consent, done = sign_in_and_decide(str(start["verification_uri_complete"]), "alice", "alice-password")
    assert "Signed in as alice" in consent.text and "panda-cli" in consent.text
    assert str(start["user_code"]) in consent.text and "/panda/production" in consent.text
    assert "Approved" in done.text

    tokens = poll(iam, start["device_code"])
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["refresh_token"] and body["id_token"] and body["expires_in"] == 24 * 3600
    alice = verify(iam, body["access_token"])
    assert alice.subject == "alice" and alice.grants == {("panda", "user"), ("panda", "production")}
    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_claims["aud"] == "panda-cli" and id_claims["sub"] == "alice"

    again = poll(iam, start["device_code"])
    assert again.status_code == 400 and error_of(again) == "invalid_grant"
    other_client = post(iam, "/token", {"grant_type": DEVICE_GRANT, "device_code": str(start["device_code"])},
                        auth=("panda-pilot", iam.secrets["panda-pilot"]))
    assert other_client.status_code == 400 and error_of(other_client) == "unauthorized_client"


def test_device_flow_denied_and_expired(iam: Iam) -> None:
    denied = start_device(iam)
    _, done = sign_in_and_decide(f"{iam.issuer}/device", "bob", "bob-password", "deny",
                                 user_code=str(denied["user_code"]).lower().replace("-", " "))
    assert "Denied" in done.text
    refused = poll(iam, denied["device_code"])
    assert refused.status_code == 400 and error_of(refused) == "access_denied"

    expired = start_device(iam)
    with iam.db().begin() as conn:
        conn.execute(text("UPDATE iam_device_codes SET expire_time = :t WHERE user_code = :c"),
                     {"t": datetime.now(UTC) - timedelta(seconds=1), "c": expired["user_code"]})
    late = poll(iam, expired["device_code"])
    assert late.status_code == 400 and error_of(late) == "expired_token"
    browser = Browser()
    page = browser.open(str(expired["verification_uri_complete"]))
    after = browser.submit(page, {"username": "bob", "password": "bob-password"})
    browser.close()
    assert after.status == 400
    assert "This code has expired. Run `panda login` again to get a new one." in after.text


def test_device_page_tells_what_went_wrong(iam: Iam) -> None:
    start = start_device(iam)
    browser = Browser()
    page = browser.open(f"{iam.issuer}/device")
    assert page.status == 200 and "Sign in to approve a device" in page.text
    assert "frame-ancestors 'none'" in browser.http.get(f"{iam.issuer}/device").headers["content-security-policy"]

    wrong_code = browser.submit(page, {"user_code": "BCDF-GHJK", "username": "alice", "password": "alice-password"})
    assert wrong_code.status == 400 and "That code is not valid" in wrong_code.text
    wrong_password = browser.submit(wrong_code, {"user_code": str(start["user_code"]), "username": "alice",
                                                 "password": "guess"})
    assert wrong_password.status == 401 and "Wrong username or password." in wrong_password.text
    no_such_user = browser.submit(wrong_password, {"username": "mallory", "password": "alice-password"})
    assert no_such_user.status == 401 and "Wrong username or password." in no_such_user.text

    # A form posted from elsewhere carries no cookie and no matching token.
    forged = httpx.post(f"{iam.issuer}/device", data={"step": "sign_in", "user_code": str(start["user_code"]),
                                                      "username": "alice", "password": "alice-password"})
    assert forged.status_code == 403 and "did not come from this page" in forged.text
    stolen_token = httpx.post(f"{iam.issuer}/device", data={**page.form().fields, "user_code": str(start["user_code"]),
                                                            "username": "alice", "password": "alice-password"})
    assert stolen_token.status_code == 403

    consent = browser.submit(no_such_user, {"username": "alice", "password": "alice-password"})
    assert "Approve this sign-in?" in consent.text
    tampered = browser.submit(consent, {"ticket": consent.form().fields["ticket"] + "x"}, button="approve")
    assert tampered.status == 400 and "Sign in again" in tampered.text
    assert browser.submit(consent, button="approve").status == 200
    twice = browser.submit(consent, button="deny")
    assert twice.status == 400 and "already approved or denied" in twice.text
    browser.close()


def test_refresh_rotates_and_a_spent_token_is_refused(iam: Iam) -> None:
    first = iam.user_tokens("bob")
    refreshed = post(iam, "/token", {"grant_type": "refresh_token", "refresh_token": str(first["refresh_token"]),
                                     "client_id": "panda-cli"})
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert verify(iam, second["access_token"]).subject == "bob"

    narrowed = post(iam, "/token", {"grant_type": "refresh_token", "refresh_token": second["refresh_token"],
                                    "client_id": "panda-cli", "scope": "openid"})
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "openid"
    third = narrowed.json()

    reused = post(iam, "/token", {"grant_type": "refresh_token", "refresh_token": str(first["refresh_token"]),
                                  "client_id": "panda-cli"})
    assert reused.status_code == 400 and error_of(reused) == "invalid_grant"
    assert "already used" in reused.json()["error_description"]
    # The reuse revoked the whole sign-in, the newest token included.
    latest = post(iam, "/token", {"grant_type": "refresh_token", "refresh_token": third["refresh_token"],
                                  "client_id": "panda-cli"})
    assert latest.status_code == 400 and error_of(latest) == "invalid_grant"

    revoked = iam.user_tokens("bob")
    assert post(iam, "/revoke", {"token": str(revoked["refresh_token"]), "client_id": "panda-cli"}).status_code == 200
    after = post(iam, "/token", {"grant_type": "refresh_token", "refresh_token": str(revoked["refresh_token"]),
                                 "client_id": "panda-cli"})
    assert after.status_code == 400 and "revoked" in after.json()["error_description"]


def test_userinfo(iam: Iam) -> None:
    info = httpx.get(f"{iam.issuer}/userinfo", headers={"Authorization": f"Bearer {iam.token('alice')}"})
    assert info.status_code == 200
    assert info.json() | {"email": ""} == {"sub": "alice", "preferred_username": "alice", "name": "alice",
                                           "email": "", "wlcg.groups": ["/panda", "/panda/production"]}
    assert httpx.get(f"{iam.issuer}/userinfo").status_code == 401
    bad = httpx.get(f"{iam.issuer}/userinfo", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]


def test_key_rotation_keeps_issued_tokens_valid(iam: Iam) -> None:
    before = post(iam, "/token", {"grant_type": "client_credentials"},
                  auth=("panda-pilot", iam.secrets["panda-pilot"])).json()["access_token"]
    old_kid = jwt.get_unverified_header(before)["kid"]

    rotated = iam_stub(iam, "admin").RotateSigningKey(iam_service_pb2.RotateSigningKeyRequest(), timeout=30)
    new_kid = rotated.active_key.kid
    assert new_kid != old_kid
    published = {k.kid: k for k in rotated.published_keys}
    assert set(published) >= {old_kid, new_kid}
    assert published[old_kid].retire_time.seconds and published[old_kid].expire_time.seconds >= (
        published[old_kid].retire_time.seconds + 4 * 24 * 3600)

    jwks = {k["kid"] for k in httpx.get(f"{iam.issuer}/jwks").json()["keys"]}
    assert {old_kid, new_kid} <= jwks
    assert verify(iam, before).subject == "panda-pilot"
    after = post(iam, "/token", {"grant_type": "client_credentials"},
                 auth=("panda-pilot", iam.secrets["panda-pilot"])).json()["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    assert verify(iam, after).subject == "panda-pilot"
    # A user token minted before the rotation still opens IamService.
    assert iam_stub(iam, "alice").WhoAmI(iam_service_pb2.WhoAmIRequest(), timeout=10).subject == "alice"


def test_who_may_call_iam_service(iam: Iam) -> None:
    me = iam_stub(iam, "alice").WhoAmI(iam_service_pb2.WhoAmIRequest(), timeout=10)
    assert (me.subject, me.issuer, me.client_id) == ("alice", iam.issuer, "panda-cli")
    assert list(me.groups) == ["/panda", "/panda/production"] and set(me.roles) == {"user", "production"}
    assert me.expire_time.seconds > time.time() + 23 * 3600

    for user, code, words in [
        ("alice", grpc.StatusCode.PERMISSION_DENIED, "alice may not call ListUsers: it needs one of the roles admin"),
        (None, grpc.StatusCode.UNAUTHENTICATED, "needs a bearer token"),
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            iam_stub(iam, user).ListUsers(iam_service_pb2.ListUsersRequest(), timeout=10)
        assert refused.value.code() == code and words in refused.value.details()
    with pytest.raises(grpc.RpcError) as anonymous:
        iam_stub(iam, None).WhoAmI(iam_service_pb2.WhoAmIRequest(), timeout=10)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as robot:
        stub = iam_stub(iam, None)
        token = post(iam, "/token", {"grant_type": "client_credentials"},
                     auth=("panda-pilot", iam.secrets["panda-pilot"])).json()["access_token"]
        stub.RotateSigningKey(iam_service_pb2.RotateSigningKeyRequest(), timeout=10,
                              metadata=[("authorization", f"Bearer {token}")])
    assert robot.value.code() == grpc.StatusCode.PERMISSION_DENIED

    users = iam_stub(iam, "admin").ListUsers(iam_service_pb2.ListUsersRequest(page_size=2), timeout=10)
    assert [u.user_id for u in users.users] == ["admin", "alice"] and users.next_page_token
    rest = iam_stub(iam, "admin").ListUsers(
        iam_service_pb2.ListUsersRequest(page_size=2, page_token=users.next_page_token), timeout=10)
    assert [u.user_id for u in rest.users] == ["bob"]


def test_the_revocation_list_is_published_beside_the_keys(iam: Iam) -> None:
    document = httpx.get(f"{iam.issuer}/.well-known/openid-configuration").json()
    assert document["panda_revocation_list_uri"] == f"{iam.issuer}/revocations"
    admin = iam_stub(iam, "admin")
    admin.CreateUser(iam_service_pb2.CreateUserRequest(user=identity_pb2.User(user_id="leaver", groups=["/panda"])),
                     timeout=10)
    leaver = iam.user_tokens("leaver")
    admin.DeleteUser(iam_service_pb2.DeleteUserRequest(user_id="leaver"), timeout=10)
    admin.CreateClient(iam_service_pb2.CreateClientRequest(client=identity_pb2.Client(
        client_id="old-robot", groups=["/panda/pilot"])), timeout=10)
    admin.DeleteClient(iam_service_pb2.DeleteClientRequest(client_id="old-robot"), timeout=10)

    response = httpx.get(document["panda_revocation_list_uri"])
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    published = response.json()
    assert published["issuer"] == iam.issuer
    subjects = {entry["sub"]: entry["revoked_at"] for entry in published["subjects"]}
    clients = {entry["client_id"]: entry["revoked_at"] for entry in published["clients"]}
    assert "leaver" in subjects and "old-robot" in clients and "alice" not in subjects
    assert all(abs(at - time.time()) < 120 for at in [subjects["leaver"], clients["old-robot"]])
    # The provider's own userinfo refuses the leaver's token as every service does.
    info = httpx.get(f"{iam.issuer}/userinfo", headers={"Authorization": f"Bearer {leaver['access_token']}"})
    assert info.status_code == 401


def test_secrets_are_stored_hashed(iam: Iam) -> None:
    refresh_token = str(iam.user_tokens("alice")["refresh_token"])
    with iam.db().connect() as conn:
        users = dict(conn.execute(text("SELECT name, password_hash FROM iam_users")).all())
        clients = dict(conn.execute(text("SELECT client_id, secret_hash FROM iam_clients")).all())
        refresh = [r[0] for r in conn.execute(text("SELECT token_hash FROM iam_refresh_tokens")).all()]
        device = [r[0] for r in conn.execute(text("SELECT device_code_hash FROM iam_device_codes")).all()]
    assert users["alice"].startswith("$argon2id$") and "alice-password" not in users["alice"]
    assert users["alice"] != users["bob"]
    assert clients["panda-pilot"] and iam.secrets["panda-pilot"] not in clients.values()
    assert clients["panda-cli"] == ""  # public: no secret at all
    assert refresh and refresh_token not in refresh
    assert all(len(h) == 64 for h in refresh + device)
    log = iam.process.log() if iam.process else ""
    assert "alice-password" not in log and iam.secrets["panda-pilot"] not in log and refresh_token not in log


# --- the rules without a process -------------------------------------------------------------


def test_retired_keys_are_published_until_their_tokens_expire(tmp_path: Path) -> None:
    engine = make_engine(fresh_database("sqlite", tmp_path, ""))
    store = KeyStore(engine)
    first = store.ensure_active_key(generate_signing_key)
    assert store.ensure_active_key(generate_signing_key).kid == first.kid  # the first start only

    second = store.rotate(generate_signing_key, longest_token_seconds=3600)
    assert [k.kid for k in store.published_keys(3600)] == [second.kid, first.kid]
    with engine.begin() as conn:
        conn.execute(text("UPDATE iam_signing_keys SET retire_time = :t WHERE kid = :k"),
                     {"t": datetime.now(UTC) - timedelta(seconds=3601), "k": first.kid})
    assert [k.kid for k in store.published_keys(3600)] == [second.kid]
    third = store.rotate(generate_signing_key, longest_token_seconds=3600)
    with engine.connect() as conn:
        kept = set(conn.execute(text("SELECT kid FROM iam_signing_keys")).scalars())
    assert kept == {second.kid, third.kid}  # the expired one is gone for good
    engine.dispose()


def test_device_poll_rules() -> None:
    now = datetime.now(UTC)
    later = now + timedelta(minutes=5)

    def result(state: str, last: datetime | None = None, expire: datetime = later) -> PollResult:
        return poll_result(state, now=now, expire_time=expire, last_poll_time=last, interval=5)

    assert result(device.PENDING) is PollResult.PENDING
    assert result(device.PENDING, last=now - timedelta(seconds=5)) is PollResult.PENDING
    assert result(device.PENDING, last=now - timedelta(seconds=2)) is PollResult.SLOW_DOWN
    assert result(device.APPROVED, last=now) is PollResult.APPROVED
    assert result(device.DENIED) is PollResult.DENIED
    assert result(device.APPROVED, expire=now) is PollResult.EXPIRED
    assert result(device.CONSUMED) is PollResult.ALREADY_USED
    assert normalize_user_code(" wdjb mjht ") == "WDJB-MJHT" and normalize_user_code("WDJB-MJHA") is None
    assert normalize_user_code(new_user_code()) is not None

