"""Pilot identities, with no database: the ids the server issues, and who may resume one."""

from __future__ import annotations

import pytest

from server_svc.domain.pilots import (
    MAX_PILOT_ID,
    PilotClaim,
    PilotRefused,
    new_identity,
    readable_name,
    resumes,
    secret_digest,
)
from tests.server_domain_support import NOW


def _claim(pilot_id: str = "node1-4242-abc", secret: str = "", subject: str = "site-robot") -> PilotClaim:
    return PilotClaim(pilot_id, secret, subject, "local", "node1")


@pytest.mark.parametrize(("suggested", "subject", "name"), [
    ("node1-4242-abc", "site-robot", "node1-4242-abc"),
    ("", "site-robot", "site-robot"),
    ("wn 12/slot 3 ☃", "x", "wn-12-slot-3"),
    ("../../etc", "x", "etc"),
    ("", "", "pilot"),
    ("a" * 300, "x", "a" * 64),
])
def test_an_issued_id_is_readable(suggested: str, subject: str, name: str) -> None:
    assert readable_name(suggested, subject) == name


def test_a_new_identity_has_a_random_suffix_and_a_secret_kept_only_as_its_digest() -> None:
    identity, secret = new_identity(_claim("wn-1"), NOW)
    other, other_secret = new_identity(_claim("wn-1"), NOW)
    assert identity.pilot_id.startswith("wn-1-") and len(identity.pilot_id) == len("wn-1-") + 8
    assert identity.pilot_id != other.pilot_id and secret != other_secret and len(secret) >= 32
    assert identity.secret_digest == secret_digest(secret) and secret not in identity.secret_digest
    where = (identity.subject, identity.queue, identity.node, identity.first_seen)
    assert where == ("site-robot", "local", "node1", NOW)
    assert len(new_identity(_claim("x" * MAX_PILOT_ID), NOW)[0].pilot_id) <= MAX_PILOT_ID


def test_a_claim_resumes_an_identity_with_its_secret_under_its_subject() -> None:
    identity, secret = new_identity(_claim(), NOW)
    assert resumes(_claim(identity.pilot_id, secret), identity)
    assert not resumes(_claim("a-name-never-issued"), None)  # a first Hello: a new identity


@pytest.mark.parametrize(("secret", "subject", "found", "reason"), [
    ("", "site-robot", True, "the id of an issued identity, without its resume secret"),
    ("guessed", "site-robot", True, "a wrong resume secret"),
    (None, "mallory", True, "an identity issued to site-robot"),
    ("anything", "site-robot", False, "no such pilot identity"),
])
def test_any_other_claim_is_refused_without_saying_why(secret: str | None, subject: str, found: bool,
                                                      reason: str) -> None:
    identity, real = new_identity(_claim(), NOW)
    claim = _claim(identity.pilot_id, real if secret is None else secret, subject)
    with pytest.raises(PilotRefused) as refused:
        resumes(claim, identity if found else None)
    assert refused.value.reason == reason
    assert refused.value.code.name == "PERMISSION_DENIED"
    assert reason not in refused.value.message and "may not speak as that pilot" in refused.value.message
