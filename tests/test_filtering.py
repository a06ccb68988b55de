"""List filters and page tokens, with no server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.filtering import Comparison, parse_filter
from panda_runtime.service.pagination import MAX_PAGE_SIZE, decode_token, encode_token, page_size
from server_svc.servicers.job_servicer import FILTER_FIELDS


def test_conjunction_of_comparisons() -> None:
    parsed = parse_filter('state = RUNNING AND queue = "site-a" AND task_id >= 3', FILTER_FIELDS)
    assert parsed == [
        Comparison("state", "=", "running"), Comparison("queue", "=", "site-a"), Comparison("task_id", ">=", 3)
    ]


def test_times_and_lower_case_states() -> None:
    parsed = parse_filter('create_time > "2026-01-02T03:04:05Z" AND state != finished', FILTER_FIELDS)
    assert parsed[0].value == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed[1] == Comparison("state", "!=", "finished")


def test_empty_filter_matches_everything() -> None:
    assert parse_filter("  ", FILTER_FIELDS) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stat = RUNNING", "unknown filter field 'stat'"),
        ("state = SLEEPING", "bad value 'SLEEPING' for state"),
        ("state = RUNNING OR queue = a", "only AND"),
        ("task_id = many", "bad value 'many' for task_id"),
        ("state =", "incomplete"),
        ("create_time > yesterday", "not an RFC 3339 time"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_filter(text, FILTER_FIELDS)
    assert message in raised.value.message


def test_page_token_round_trip_and_binding() -> None:
    token = encode_token({"before": 42}, "state = RUNNING")
    assert decode_token(token, "state = RUNNING") == {"before": 42}
    with pytest.raises(InvalidArgument, match="another filter"):
        decode_token(token, "state = FAILED")
    with pytest.raises(InvalidArgument, match="not one this service issued"):
        decode_token("garbage!", "")


def test_page_size_defaults_and_caps() -> None:
    assert page_size(0) == 100
    assert page_size(5000) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        page_size(-1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('label = "\\x"', "truncated \\x escape"),
        ('label = "\\u12"', "truncated \\u escape"),
        ('label = "\\ud800"', "is not a character"),
        ('label = "a\\x00b"', "must not contain NUL"),
        ("label = \"a\x00b\"", "contains a NUL"),
        ("job_id = 99999999999999999999999", "beyond a 64-bit integer"),
        ("priority = -9223372036854775808", "beyond a 32-bit integer"),
        ("job_id > 1" + " AND job_id > 1" * 40, "at most 32 comparisons"),
        ("label = " + "x" * 5000, "at most 4096"),
    ],
)
def test_filters_a_query_could_not_hold_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_filter(text, FILTER_FIELDS)
    assert message in raised.value.message
    assert raised.value.details, "BadRequest names the filter"


def test_string_escapes_and_unicode() -> None:
    (comparison,) = parse_filter('label = "caf\\u00e9 \\"x\\" é \\\\ \\."', FILTER_FIELDS)
    assert comparison.value == 'café "x" é \\ \\.'


@pytest.mark.parametrize("position", [[], {"before": "abc"}, {"before": 10**30}, {"before": -1}, {"before": 1.5},
                                      {"before": True}, {"other": 3}, {"after": "x" * 5000}])
def test_crafted_page_tokens_are_not_ours(position: object) -> None:
    token = encode_token(position, "")  # type: ignore[arg-type]  # what a client may forge
    with pytest.raises(InvalidArgument, match="not one this service issued"):
        decode_token(token, "", {"before": int})
    assert decode_token(encode_token({"before": 7}, ""), "", {"before": int}) == {"before": 7}
    with pytest.raises(InvalidArgument, match="not one this service issued"):
        decode_token("W" * 100_000, "")
