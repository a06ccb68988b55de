"""The identity service's HTTP side as an attacker tries it (`panda serve iam` on SQLite and
PostgreSQL, real sockets; each attacker connects from a loopback address of its own, which the
service sees as its client address): hammering someone's password cannot lock them out,
guessing user codes and starting device flows are rate-limited per address, X-Forwarded-For
counts only from a trusted proxy, and no field, however long or strange, gets a 500."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from iam_svc.domain.codes import new_user_code
from iam_svc.domain.form_fields import (
    ACCESS_TOKEN,
    DEVICE_PAGE_FIELDS,
    DEVICE_START_FIELDS,
    MAX_FORM_BYTES,
    REVOKE_FIELDS,
    TOKEN_FIELDS,
)
from iam_svc.domain.throttle import ThrottleLimits
from tests.iam_support import Browser, Iam, Page, http_from, start_iam_beside

pytest_plugins = ["tests.iam_fixtures"]

LIMITS = ThrottleLimits()
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def start_device(iam: Iam, http: httpx.Client, issuer: str | None = None) -> dict[str, str]:
    response = http.post(f"{issuer or iam.issuer}/device_authorization", data={"client_id": "panda-cli"})
    assert response.status_code == 200, response.text
    return {key: str(value) for key, value in response.json().items()}


def sign_in(browser: Browser, iam: Iam, user_code: str, user: str, password: str) -> Page:
    page = browser.open(f"{iam.issuer}/device")
    return browser.submit(page, {"user_code": user_code, "username": user, "password": password})


def test_a_stranger_hammering_alices_password_throttles_the_stranger_not_alice(iam: Iam) -> None:
    stranger = Browser("127.0.0.2")
    failures = 0

    def guess(code: str) -> Page:
        nonlocal failures
        page = sign_in(stranger, iam, code, "alice", f"guess-{failures}")
        if page.status == 401:
            failures += 1
        return page

    # Five wrong passwords use a device code up; the stranger starts another.
    first = start_device(iam, stranger.http)["user_code"]
    for _ in range(LIMITS.sign_in_failures_per_code.count):
        assert guess(first).status == 401
    used_up = guess(first)
    assert used_up.status == 429 and "Too many failed sign-ins with this code" in used_up.text
    # Signing in to an account of one's own clears nothing.
    own = sign_in(stranger, iam, start_device(iam, stranger.http)["user_code"], "bob", "bob-password")
    assert own.status == 200 and "Approve this sign-in?" in own.text
    second = start_device(iam, stranger.http)["user_code"]
    while failures < LIMITS.sign_in_failures_per_address.count:
        assert guess(second).status == 401

    # The stranger's address is throttled now, whatever it tries, and says when to come back.
    for user, password in (("alice", "another-guess"), ("alice", "alice-password"), ("bob", "bob-password")):
        blocked = sign_in(stranger, iam, start_device(iam, stranger.http)["user_code"], user, password)
        assert blocked.status == 429, blocked.text
        assert "Too many failed sign-ins from your address" in blocked.text
    stranger.close()

    # Alice, from her own address, signs in with her password at once, and gets her tokens.
    alice = Browser("127.0.0.3")
    start = start_device(iam, alice.http)
    consent = sign_in(alice, iam, start["user_code"], "alice", "alice-password")
    assert consent.status == 200 and "Signed in as alice" in consent.text, consent.text
    assert "Approved" in alice.submit(consent, button="approve").text
    tokens = alice.http.post(f"{iam.issuer}/token", data={"grant_type": DEVICE_GRANT, "client_id": "panda-cli",
                                                          "device_code": start["device_code"]})
    assert tokens.status_code == 200 and tokens.json()["access_token"], tokens.text
    alice.close()


def test_a_throttled_page_says_when_to_come_back(iam: Iam) -> None:
    stranger = Browser("127.0.0.12")
    for _ in range(LIMITS.sign_in_failures_per_address.count // LIMITS.sign_in_failures_per_code.count):
        code = start_device(iam, stranger.http)["user_code"]
        for _ in range(LIMITS.sign_in_failures_per_code.count):
            assert sign_in(stranger, iam, code, "bob", "wrong").status == 401
    page = stranger.open(f"{iam.issuer}/device")
    form = page.form().fields | {"user_code": start_device(iam, stranger.http)["user_code"], "username": "bob",
                                 "password": "bob-password"}
    response = stranger.http.post(f"{iam.issuer}/device", data=form)
    assert response.status_code == 429
    window = LIMITS.sign_in_failures_per_address.window_seconds
    assert 0 < int(response.headers["retry-after"]) <= window
    assert "Try again in 10 minutes" in response.text
    stranger.close()


def test_guessing_user_codes_is_rate_limited_per_address(iam: Iam) -> None:
    # From loopback, where a proxy would be if there were one: X-Forwarded-For is not believed.
    guesser = Browser("127.0.0.1")
    for number in range(LIMITS.user_code_misses_per_address.count):
        page = guesser.open(f"{iam.issuer}/device")
        missed = guesser.http.post(f"{iam.issuer}/device", headers={"X-Forwarded-For": f"192.0.2.{number}"}, data={
            **page.form().fields, "user_code": new_user_code(), "username": "bob", "password": "bob-password"})
        assert missed.status_code == 400 and "That code is not valid" in missed.text
    real = start_device(iam, guesser.http)
    limited = sign_in(guesser, iam, real["user_code"], "bob", "bob-password")
    assert limited.status == 429 and "Too many codes that do not exist" in limited.text
    guesser.close()
    # The person whose code it is, elsewhere, is not held up.
    owner = Browser("127.0.0.14")
    assert sign_in(owner, iam, real["user_code"], "bob", "bob-password").status == 200
    owner.close()


def test_starting_device_flows_is_rate_limited_per_address(iam: Iam) -> None:
    with http_from("127.0.0.5") as flooder, http_from("127.0.0.15") as other:
        for _ in range(LIMITS.device_starts_per_address.count):
            start_device(iam, flooder)
        refused = flooder.post(f"{iam.issuer}/device_authorization", data={"client_id": "panda-cli"})
        assert refused.status_code == 429 and refused.json()["error"] == "slow_down"
        assert "too many device sign-ins started from this address" in refused.json()["error_description"]
        assert 0 < int(refused.headers["retry-after"]) <= LIMITS.device_starts_per_address.window_seconds
        # A spoofed X-Forwarded-For changes nothing: no proxy is trusted by default.
        spoofed = flooder.post(f"{iam.issuer}/device_authorization", data={"client_id": "panda-cli"},
                               headers={"X-Forwarded-For": "192.0.2.99"})
        assert spoofed.status_code == 429
        start_device(iam, other)


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(iam: Iam) -> None:
    proxied = start_iam_beside(iam, PANDA_IAM_TRUSTED_PROXIES="127.0.0.8")
    try:
        def start(http: httpx.Client, forwarded_for: str) -> int:
            return http.post(f"{proxied.issuer}/device_authorization", data={"client_id": "panda-cli"},
                             headers={"X-Forwarded-For": forwarded_for}).status_code

        with http_from("127.0.0.8") as proxy, http_from("127.0.0.9") as untrusted:
            for _ in range(LIMITS.device_starts_per_address.count):
                assert start(proxy, "192.0.2.1") == 200
            assert start(proxy, "192.0.2.1") == 429
            assert start(proxy, "198.51.100.1, 192.0.2.2") == 200  # the last hop before the proxy counts
            # A client that is not the proxy is counted as itself, whatever it forwards.
            for number in range(LIMITS.device_starts_per_address.count):
                assert start(untrusted, f"192.0.2.{100 + number}") == 200
            assert start(untrusted, "192.0.2.250") == 429
    finally:
        proxied.stop()


# --- every field beyond its rules: 400, never 500 ---------------------------------------------

BAD_VALUES = {
    "oversized": lambda limit: quote("x" * (limit + 1)),
    "NUL": lambda limit: "a%00b",
    "not UTF-8": lambda limit: "caf%C3%28%FF",
}
WORDS = {"oversized": "is longer than", "NUL": "NUL character", "not UTF-8": "not valid UTF-8"}


def _encode(fields: dict[str, str], field: str, raw: str) -> str:
    return "&".join(f"{name}={quote(value)}" for name, value in fields.items() if name != field) + f"&{field}={raw}"


def test_every_field_beyond_its_rules_is_refused_with_400(iam: Iam) -> None:
    http = http_from("127.0.0.6")
    code = start_device(iam, http)
    secret = iam.secrets["site-pilot"]
    json_forms = {
        "/token": (TOKEN_FIELDS, {"grant_type": "client_credentials", "client_id": "site-pilot",
                                  "client_secret": secret, "scope": "wlcg", "device_code": code["device_code"],
                                  "refresh_token": "r"}),
        "/device_authorization": (DEVICE_START_FIELDS, {"client_id": "panda-cli", "scope": "openid"}),
        "/revoke": (REVOKE_FIELDS, {"client_id": "panda-cli", "token": "t", "token_type_hint": "refresh_token"}),
    }
    for path, (limits, good) in json_forms.items():
        for field, limit in limits.items():
            for kind, bad in BAD_VALUES.items():
                response = http.post(f"{iam.issuer}{path}", content=_encode(good, field, bad(limit)), headers=FORM)
                assert response.status_code == 400, (path, field, kind, response.text)
                assert response.json()["error"] == "invalid_request", (path, field, kind)
                description = response.json()["error_description"]
                assert field in description and WORDS[kind] in description, (path, field, kind, description)

    browser = Browser("127.0.0.6")
    page = browser.open(f"{iam.issuer}/device")
    good = {**page.form().fields, "user_code": code["user_code"], "username": "alice", "password": "alice-password"}
    for field, limit in DEVICE_PAGE_FIELDS.items():
        for kind, bad in BAD_VALUES.items():
            response = browser.http.post(f"{iam.issuer}/device", content=_encode(good, field, bad(limit)),
                                         headers=FORM)
            assert response.status_code == 400, (field, kind, response.text)
            assert field in Page("", 400, response.text).text and WORDS[kind] in response.text, (field, kind)
    for kind, bad in BAD_VALUES.items():
        shown = browser.http.get(f"{iam.issuer}/device?user_code={bad(DEVICE_PAGE_FIELDS['user_code'])}")
        assert shown.status_code == 400 and WORDS[kind] in shown.text, (kind, shown.text)
    # Nothing of it was a sign-in: Alice's code still takes her password.
    assert browser.submit(page, {"user_code": code["user_code"], "username": "alice",
                                 "password": "alice-password"}).status == 200
    browser.close()

    huge = "x" * (2 * 1024 * 1024)
    for path in ("/token", "/device_authorization", "/revoke", "/device"):
        too_large = http.post(f"{iam.issuer}{path}", content=f"client_id={huge}", headers=FORM)
        assert too_large.status_code == 400 and f"larger than {MAX_FORM_BYTES // 1024} KiB" in too_large.text, path
        raw = http.post(f"{iam.issuer}{path}", content=b"client_id=caf\xc3\xa9&scope=\xff", headers=FORM)
        assert raw.status_code == 400 and "URL-encoded" in raw.text, (path, raw.text)
        many = http.post(f"{iam.issuer}{path}", content="&".join(f"f{i}=1" for i in range(100)), headers=FORM)
        assert many.status_code == 400 and "more than 32 fields" in many.text, (path, many.text)
        twice = http.post(f"{iam.issuer}{path}", content="client_id=a&scope=x&client_id=b", headers=FORM)
        assert twice.status_code == 400 and "given more than once: client_id" in twice.text, (path, twice.text)
    for who, value in (("client_id", "x" * 65), ("client_id", "pilot\x00"), ("client_secret", "s" * 257)):
        basic = ("site-pilot", value) if who == "client_secret" else (value, secret)
        response = http.post(f"{iam.issuer}/token", data={"grant_type": "client_credentials"}, auth=basic)
        assert response.status_code == 400 and who in response.json()["error_description"], (who, response.text)
    bearer = http.get(f"{iam.issuer}/userinfo", headers={"Authorization": "Bearer " + "x" * (ACCESS_TOKEN + 1)})
    assert bearer.status_code == 400 and "bearer token is longer than" in bearer.text
    http.close()


def test_none_of_it_was_logged_as_a_failure(iam: Iam) -> None:
    log = iam.process.log() if iam.process else ""
    assert "Traceback" not in log, log[-3000:]
