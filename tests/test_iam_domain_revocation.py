"""Revocation without a process: which changes revoke tokens, what the provider publishes, how
long it keeps an entry, and what the shared token check makes of the list (the rule it applies
to every token, the documents it refuses, and how it keeps the list fresh)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from iam_svc.domain import revocation
from iam_svc.domain.accounts import UserChanges
from iam_svc.domain.revocation import CLIENT, SUBJECT, Latest, Revocation, latest, retention, revokes_tokens
from panda_runtime.service.revocation import RevocationFeed, RevocationList, revocation_document

ISSUER = "https://iam.example"
AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T = AT.timestamp()


def test_disabling_revokes_and_other_changes_do_not() -> None:
    assert revokes_tokens(UserChanges(enabled=False))
    assert not revokes_tokens(UserChanges(enabled=True))
    assert not revokes_tokens(UserChanges(display_name="Alice", email="a@example.org", password_hash="x"))


def test_an_entry_is_kept_until_every_token_issued_before_it_expired() -> None:
    longest = 4 * 24 * 3600 + 30
    assert retention(longest) >= timedelta(seconds=longest)
    assert retention(longest) - timedelta(seconds=longest) == revocation.RETENTION_MARGIN


def test_the_published_list_holds_the_latest_revocation_of_each_name() -> None:
    published = latest([
        Revocation(SUBJECT, "alice", AT),
        Revocation(SUBJECT, "alice", AT + timedelta(hours=1)),
        Revocation(SUBJECT, "bob", AT),
        Revocation(CLIENT, "site-pilot", AT),
        Revocation("unknown-kind", "x", AT),
    ])
    assert published == Latest(subjects={"alice": T + 3600, "bob": T}, clients={"site-pilot": T}, sessions={})
    document = revocation_document(ISSUER, published.subjects, published.clients)
    assert document == {
        "issuer": ISSUER,
        "subjects": [{"sub": "alice", "revoked_at": T + 3600}, {"sub": "bob", "revoked_at": T}],
        "clients": [{"client_id": "site-pilot", "revoked_at": T}],
        "sessions": [],
    }
    assert RevocationList.from_document(json.loads(json.dumps(document)), ISSUER) == RevocationList(
        subjects={"alice": T + 3600, "bob": T}, clients={"site-pilot": T})


def test_a_token_issued_at_or_before_its_revocation_is_refused_one_issued_after_is_not() -> None:
    revoked = RevocationList(subjects={"alice": T + 0.5}, clients={"site-pilot": T})
    # iat has whole seconds: a token of the same second as the revocation is refused (safe side).
    for issued_at in (T - 86400, T, T + 0.5):
        assert "user alice was disabled or deleted" in str(revoked.refusal("alice", "panda-cli", issued_at))
    assert revoked.refusal("alice", "panda-cli", T + 1) is None
    assert revoked.refusal("bob", "panda-cli", T - 10) is None
    # A deleted client: its own tokens and those of people who signed in through it.
    assert "client site-pilot" in str(revoked.refusal("site-pilot", "site-pilot", T))
    assert revoked.refusal("bob", "site-pilot", T) is not None
    assert revoked.refusal("site-pilot", "site-pilot", T + 1) is None
    assert revoked.refusal("bob", "", T) is None


@pytest.mark.parametrize("document", [
    [],
    {"issuer": "https://elsewhere.example", "subjects": []},
    {"issuer": ISSUER, "subjects": {"alice": T}},
    {"issuer": ISSUER, "subjects": [{"sub": "alice"}]},
    {"issuer": ISSUER, "subjects": [{"sub": "alice", "revoked_at": "yesterday"}]},
    {"issuer": ISSUER, "subjects": [{"sub": "alice", "revoked_at": True}]},
    {"issuer": ISSUER, "subjects": [{"sub": 7, "revoked_at": T}]},
    {"issuer": ISSUER, "clients": [{"client_id": "x", "revoked_at": float("nan")}]},
    {"issuer": ISSUER, "clients": ["site-pilot"]},
])
def test_a_malformed_list_is_refused(document: object) -> None:
    with pytest.raises(ValueError):
        RevocationList.from_document(document, ISSUER)


def test_an_empty_document_revokes_nothing() -> None:
    assert RevocationList.from_document({"issuer": ISSUER + "/"}, ISSUER) == RevocationList()


def test_the_feed_refetches_and_keeps_the_last_list_when_the_issuer_fails() -> None:
    answers: list[httpx.Response] = [
        httpx.Response(200, json=revocation_document(ISSUER, {}, {})),
        httpx.Response(200, json=revocation_document(ISSUER, {"alice": T}, {})),
        httpx.Response(503, text="down"),
        httpx.Response(200, json={"issuer": "https://elsewhere.example"}),
    ]
    fetches: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetches.append(str(request.url))
        return answers[min(len(fetches), len(answers)) - 1]

    async def scenario() -> list[RevocationList | None]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            feed = RevocationFeed(ISSUER, f"{ISSUER}/revocations", http, refresh_seconds=0.01)
            seen = [await feed.current()]
            for _ in range(500):  # the refetch that brings alice's revocation
                if await feed.current() != seen[0]:
                    break
                await asyncio.sleep(0.01)
            seen.append(await feed.current())
            # A fetch begins only after the one before it was dealt with: by the sixth, the 503
            # and the other issuer's list have been read, and refused.
            for _ in range(500):
                if len(fetches) >= 6:
                    break
                await asyncio.sleep(0.01)
            seen.append(await feed.current())
            await feed.close()
            return seen

    seen = asyncio.run(scenario())
    assert fetches[0] == f"{ISSUER}/revocations"
    assert seen == [RevocationList(), RevocationList(subjects={"alice": T}), RevocationList(subjects={"alice": T})]


def test_the_feed_has_no_list_until_one_could_be_fetched() -> None:
    async def scenario() -> RevocationList | None:
        transport = httpx.MockTransport(lambda request: httpx.Response(500))
        async with httpx.AsyncClient(transport=transport) as http:
            feed = RevocationFeed(ISSUER, f"{ISSUER}/revocations", http, refresh_seconds=1)
            try:
                return await feed.current()
            finally:
                await feed.close()

    assert asyncio.run(scenario()) is None
