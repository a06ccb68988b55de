"""The identity provider's grant rules without a database: how a client authenticates and which
grants it may use, who signs in, what a device-code poll or decision comes to, and refresh-token
rotation with its reuse detection."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from iam_svc.domain import codes, device, oauth, refresh
from iam_svc.domain.accounts import (
    Client,
    User,
    UserChanges,
    authenticate_client,
    check_grant,
    check_grant_types,
    default_grant_types,
    ends_sign_ins,
    sign_in_name,
    signs_in,
)
from iam_svc.domain.device import Decision, DeviceCode, PollResult
from iam_svc.domain.oauth import OAuthError
from iam_svc.domain.passwords import hash_password
from iam_svc.domain.refresh import RefreshOutcome, RefreshToken
from panda_runtime.service.errors import InvalidArgument

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SECRET = "s3cret-of-the-pilot"


def client(client_id: str = "panda-pilot", *, public: bool = False, enabled: bool = True,
           grant_types: tuple[str, ...] = (oauth.CLIENT_CREDENTIALS,)) -> Client:
    return Client(client_id=client_id, description="", public=public,
                  secret_hash="" if public else codes.digest(SECRET), grant_types=grant_types,
                  groups=("/panda/pilot",), queues=("*",), enabled=enabled, create_time=NOW, update_time=NOW)


def user(name: str = "alice", *, password: str = "alice-password", enabled: bool = True) -> User:
    return User(name=name, display_name=name, email="", password_hash=hash_password(password) if password else "",
                enabled=enabled, groups=("/panda",), create_time=NOW, update_time=NOW)


# --- clients ---------------------------------------------------------------------------------


def test_a_confidential_client_authenticates_with_its_secret_only() -> None:
    pilot = client()
    assert authenticate_client(pilot, "panda-pilot", SECRET) is pilot
    refusals = []
    for found, secret in [(pilot, "wrong"), (pilot, None), (pilot, ""), (None, SECRET),
                          (client(enabled=False), SECRET)]:
        with pytest.raises(OAuthError) as refused:
            authenticate_client(found, "panda-pilot", secret)
        refusals.append((refused.value.error, refused.value.status, refused.value.description))
    # Unknown, disabled and wrong secret read the same: nothing is learnt about which clients exist.
    assert len(set(refusals)) == 1 and refusals[0][:2] == ("invalid_client", 401)


def test_a_public_client_authenticates_without_a_secret() -> None:
    cli = client("panda-cli", public=True, grant_types=oauth.PUBLIC_DEFAULT_GRANTS)
    assert authenticate_client(cli, "panda-cli", None) is cli
    assert authenticate_client(cli, "panda-cli", "") is cli
    with pytest.raises(OAuthError) as refused:
        authenticate_client(cli, "panda-cli", "a secret")
    assert refused.value.error == "invalid_client" and "is public" in refused.value.description


def test_a_client_uses_only_its_own_grants() -> None:
    check_grant(client(), oauth.CLIENT_CREDENTIALS)
    with pytest.raises(OAuthError) as refused:
        check_grant(client(), oauth.DEVICE_CODE)
    assert refused.value.error == "unauthorized_client" and refused.value.status == 400
    assert "panda-pilot may not use the grant" in refused.value.description


def test_grant_types_of_a_new_client() -> None:
    assert default_grant_types(public=True) == (oauth.DEVICE_CODE, oauth.REFRESH_TOKEN)
    assert default_grant_types(public=False) == (oauth.CLIENT_CREDENTIALS,)
    assert check_grant_types([], public=True) == [oauth.DEVICE_CODE, oauth.REFRESH_TOKEN]
    assert check_grant_types([], public=False) == [oauth.CLIENT_CREDENTIALS]
    assert check_grant_types([" device ", "device_code", "refresh_token"], public=True) == [
        oauth.DEVICE_CODE, oauth.REFRESH_TOKEN]
    with pytest.raises(InvalidArgument, match="unknown grant type 'password'"):
        check_grant_types(["password"], public=False)
    with pytest.raises(InvalidArgument, match="cannot use client_credentials"):
        check_grant_types(["client_credentials"], public=True)


# --- people ----------------------------------------------------------------------------------


def test_who_signs_in() -> None:
    alice = user()
    assert signs_in(alice, "alice-password")
    assert not signs_in(alice, "guess")
    assert not signs_in(None, "alice-password")
    assert not signs_in(user(enabled=False), "alice-password")
    assert not signs_in(user(password=""), "")  # no password set: no password sign-in
    assert sign_in_name("  Alice ") == "alice"


def test_disabling_an_account_ends_its_sign_ins() -> None:
    assert ends_sign_ins(UserChanges(enabled=False))
    assert not ends_sign_ins(UserChanges(enabled=True))
    assert not ends_sign_ins(UserChanges(email="a@b.c"))


# --- device codes ----------------------------------------------------------------------------


def code(state: str = device.PENDING, *, last_poll: datetime | None = None,
         expire: datetime = NOW + timedelta(minutes=5), client_id: str = "panda-cli") -> DeviceCode:
    return DeviceCode(user_code="WDJB-MJHT", client_id=client_id, scope="openid", state=state, user_name="",
                      create_time=NOW - timedelta(minutes=5), expire_time=expire, poll_interval=5,
                      last_poll_time=last_poll)


def test_a_poll_of_an_unknown_code_or_another_clients_reads_the_same() -> None:
    assert device.poll(None, "panda-cli", NOW) is None
    assert device.poll(code(client_id="other"), "panda-cli", NOW) is None
    assert device.poll(code(), "panda-cli", NOW) is PollResult.PENDING
    assert device.poll(code(last_poll=NOW - timedelta(seconds=1)), "panda-cli", NOW) is PollResult.SLOW_DOWN


def test_what_a_poll_changes() -> None:
    slowed = device.after_poll(code(), PollResult.SLOW_DOWN, NOW)
    assert slowed.poll_interval == 5 + device.SLOW_DOWN_STEP_SECONDS and slowed.last_poll_time == NOW
    assert slowed.state == device.PENDING
    taken = device.after_poll(code(device.APPROVED), PollResult.APPROVED, NOW)
    assert taken.state == device.CONSUMED and taken.poll_interval == 5  # one set of tokens per code
    waiting = device.after_poll(code(), PollResult.PENDING, NOW)
    assert (waiting.state, waiting.poll_interval, waiting.last_poll_time) == (device.PENDING, 5, NOW)


def test_what_a_poll_without_tokens_answers() -> None:
    answers = {result: device.poll_error(result, 10) for result in PollResult if result is not PollResult.APPROVED}
    assert {result: error.error for result, error in answers.items()} == {
        PollResult.PENDING: "authorization_pending", PollResult.SLOW_DOWN: "slow_down",
        PollResult.DENIED: "access_denied", PollResult.EXPIRED: "expired_token",
        PollResult.ALREADY_USED: "invalid_grant",
    }
    assert "wait 10 s between polls" in answers[PollResult.SLOW_DOWN].description
    assert all(error.status == 400 for error in answers.values())
    with pytest.raises(ValueError):
        device.poll_error(PollResult.APPROVED, 10)


def test_who_may_still_decide_a_code() -> None:
    assert device.decide(None, NOW) is Decision.UNKNOWN
    assert device.decide(code(), NOW) is Decision.DONE
    assert device.decide(code(expire=NOW), NOW) is Decision.EXPIRED
    assert device.decide(code(device.DENIED), NOW) is Decision.ALREADY_DECIDED
    assert device.decide(code(device.CONSUMED), NOW) is Decision.ALREADY_DECIDED
    # An expired code reads as expired, decided or not.
    assert device.decide(code(device.APPROVED, expire=NOW - timedelta(seconds=1)), NOW) is Decision.EXPIRED


def test_the_device_authorization_response() -> None:
    response = device.authorization_response(issuer="https://iam.example", device_code="dc", user_code="WDJB-MJHT",
                                             expires_in=600, interval=5)
    assert response == {
        "device_code": "dc", "user_code": "WDJB-MJHT", "verification_uri": "https://iam.example/device",
        "verification_uri_complete": "https://iam.example/device?user_code=WDJB-MJHT", "expires_in": 600,
        "interval": 5,
    }


# --- refresh tokens --------------------------------------------------------------------------


def test_refresh_token_rotation_and_reuse() -> None:
    token = RefreshToken(family="f1", client_id="panda-cli", user_name="bob", scope="openid offline_access",
                         state=refresh.ACTIVE, expire_time=NOW + timedelta(days=1))

    def outcome(token: RefreshToken | None, client_id: str = "panda-cli") -> RefreshOutcome:
        return refresh.rotation_outcome(token, client_id, NOW)

    assert outcome(token) is RefreshOutcome.ROTATED
    assert outcome(None) is RefreshOutcome.UNKNOWN
    assert outcome(token, "other") is RefreshOutcome.WRONG_CLIENT
    assert outcome(replace(token, state=refresh.ROTATED)) is RefreshOutcome.REUSED
    assert outcome(replace(token, state=refresh.REVOKED)) is RefreshOutcome.REVOKED
    assert outcome(replace(token, expire_time=NOW)) is RefreshOutcome.EXPIRED
    # Another client presenting a spent token learns nothing and revokes nothing.
    assert outcome(replace(token, state=refresh.ROTATED), "other") is RefreshOutcome.WRONG_CLIENT
    # A spent token is reuse even once expired: the family is revoked all the same.
    assert outcome(replace(token, state=refresh.ROTATED, expire_time=NOW)) is RefreshOutcome.REUSED


def test_what_a_refused_refresh_answers() -> None:
    for outcome in RefreshOutcome:
        if outcome is RefreshOutcome.ROTATED:
            continue
        error = refresh.refusal(outcome)
        assert (error.error, error.status) == ("invalid_grant", 400)
    assert "already used" in refresh.refusal(RefreshOutcome.REUSED).description
    assert "revoked" in refresh.refusal(RefreshOutcome.REVOKED).description
    assert "expired" in refresh.refusal(RefreshOutcome.EXPIRED).description
