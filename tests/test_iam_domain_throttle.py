"""The device flow's limits and the form rules without a process: who gets throttled (an address,
a code; never the account of someone else's guesses), for how long, and which fields are refused."""

from __future__ import annotations

import pytest

from iam_svc.domain.form_fields import (
    DEVICE_PAGE_FIELDS,
    MAX_FIELDS,
    OTHER_FIELD,
    TOKEN_FIELDS,
    FieldError,
    check_fields,
    check_text,
)
from iam_svc.domain.throttle import (
    Limit,
    SignInThrottle,
    SlidingWindow,
    Throttled,
    ThrottleLimits,
    client_key,
)

LIMITS = ThrottleLimits(sign_in_failures_per_address=Limit(3, 60), sign_in_failures_per_code=Limit(2, 60),
                        user_code_misses_per_address=Limit(3, 60), device_starts_per_address=Limit(2, 60))
STRANGER, ALICE = "203.0.113.7", "198.51.100.20"


def test_a_window_refuses_beyond_its_count_until_the_oldest_event_leaves_it() -> None:
    window = SlidingWindow(Limit(3, 60))
    for second in (100.0, 101.0, 102.0):
        assert window.retry_after("k", second) is None
        window.count("k", second)
    assert window.retry_after("k", 103.0) == 57.0
    assert window.retry_after("other", 103.0) is None
    assert window.retry_after("k", 160.0) is None  # the first left the window
    assert window.take("k", 160.0) is None and window.take("k", 160.5) == pytest.approx(0.5)


def test_a_window_forgets_the_least_recent_keys_beyond_its_size() -> None:
    window = SlidingWindow(Limit(1, 60), max_tracked=2)
    for key in ("a", "b", "c"):
        window.count(key, 100.0)
    assert window.retry_after("a", 100.0) is None
    assert window.retry_after("b", 100.0) is not None and window.retry_after("c", 100.0) is not None


def test_a_stranger_guessing_passwords_throttles_their_address_not_the_account() -> None:
    throttle = SignInThrottle(LIMITS)
    for attempt in range(3):
        assert throttle.before_code(STRANGER, 100.0 + attempt) is None
        throttle.sign_in_failed(STRANGER, f"CODE-{attempt}", 100.0 + attempt)  # one code each: the address counts
    refusal = throttle.before_code(STRANGER, 103.0)
    assert refusal is not None and refusal.why is Throttled.SIGN_IN_FAILURES
    assert refusal.retry_after == 57.0 and refusal.retry_after_seconds == 57
    # Alice, elsewhere, with her own code: nothing stands in her way.
    assert throttle.before_code(ALICE, 103.0) is None
    assert throttle.before_password("ALICE-CODE", 103.0) is None
    assert throttle.before_code(STRANGER, 160.0) is None


def test_failures_with_one_code_use_the_code_up() -> None:
    throttle = SignInThrottle(LIMITS)
    throttle.sign_in_failed(STRANGER, "BCDF-GHJK", 100.0)
    throttle.sign_in_failed(ALICE, "BCDF-GHJK", 101.0)
    refusal = throttle.before_password("BCDF-GHJK", 102.0)
    assert refusal is not None and refusal.why is Throttled.CODE_FAILURES
    assert throttle.before_password("BCDF-GHJL", 102.0) is None
    assert throttle.before_code(STRANGER, 102.0) is None and throttle.before_code(ALICE, 102.0) is None


def test_unknown_codes_are_limited_per_address() -> None:
    throttle = SignInThrottle(LIMITS)
    for attempt in range(3):
        throttle.unknown_code(STRANGER, 100.0 + attempt)
    refusal = throttle.before_code(STRANGER, 103.0)
    assert refusal is not None and refusal.why is Throttled.USER_CODE_MISSES
    assert throttle.before_code(ALICE, 103.0) is None


def test_device_starts_are_limited_per_address_and_refusals_are_not_counted() -> None:
    throttle = SignInThrottle(LIMITS)
    assert throttle.device_start(STRANGER, 100.0) is None
    assert throttle.device_start(STRANGER, 110.0) is None
    refused = throttle.device_start(STRANGER, 111.0)
    assert refused is not None and refused.why is Throttled.DEVICE_STARTS and refused.retry_after == 49.0
    assert throttle.device_start(ALICE, 111.0) is None
    for second in range(112, 160):
        assert throttle.device_start(STRANGER, float(second)) is not None
    assert throttle.device_start(STRANGER, 160.0) is None  # the hammering was not counted


def test_the_default_limits() -> None:
    limits = ThrottleLimits()
    assert limits.sign_in_failures_per_address == Limit(10, 600)
    assert limits.sign_in_failures_per_code == Limit(5, 600)
    assert limits.user_code_misses_per_address == Limit(10, 600)
    assert limits.device_starts_per_address == Limit(30, 600)


@pytest.mark.parametrize(("host", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    (None, "unknown"),
    ("", "unknown"),
    ("some-socket", "some-socket"),
])
def test_client_keys(host: str | None, key: str) -> None:
    assert client_key(host) == key


# --- form fields -----------------------------------------------------------------------------


def test_fields_within_their_limits_pass() -> None:
    check_fields({"grant_type": "client_credentials", "client_id": "x" * 64, "scope": "openid " * 100,
                  "resource": "anything"}, TOKEN_FIELDS)
    check_fields({"password": "pä ss\tword \u2603" + "x" * 1000, "username": "alice"}, DEVICE_PAGE_FIELDS)


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"client_id": "x" * 65}, "client_id", "client_id is longer than 64 characters"),
    ({"device_code": "x" * 129}, "device_code", "device_code is longer than 128 characters"),
    ({"unknown": "x" * (OTHER_FIELD + 1)}, "unknown", f"unknown is longer than {OTHER_FIELD} characters"),
    ({"x" * (OTHER_FIELD + 1): ""}, "field name", "field name is longer"),
    ({"client_id": "pand\x00a"}, "client_id", "client_id contains a NUL character"),
    ({"scope": "openid\nprofile"}, "scope", "scope contains a control character"),
    ({"client_id": "caf\udcc3"}, "client_id", "client_id is not valid UTF-8"),
    ({str(i): "" for i in range(MAX_FIELDS + 1)}, "", f"more than {MAX_FIELDS} fields"),
])
def test_fields_beyond_the_rules_are_refused_by_name(fields: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(FieldError) as refused:
        check_fields(fields, TOKEN_FIELDS)
    assert refused.value.field == field and words in str(refused.value)


def test_a_password_may_hold_anything_but_nul() -> None:
    assert check_text("password", "tab\there", 1024) == "tab\there"
    with pytest.raises(FieldError, match="NUL"):
        check_text("password", "nul\x00here", 1024)
    with pytest.raises(FieldError, match="control character"):
        check_text("username", "tab\there", 128)
