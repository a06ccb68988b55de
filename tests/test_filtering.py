"""List filters, sort orders, group_by and page tokens, with no server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.filtering import Comparison, Filter, parse_filter
from panda_runtime.service.ordering import (
    Ordering,
    SortKey,
    decode_page,
    encode_page,
    parse_group_by,
    parse_order_by,
)
from panda_runtime.service.pagination import MAX_PAGE_SIZE, MAX_TOKEN_LENGTH, decode_token, encode_token, page_size
from server_svc.servicers.job_servicer import FILTER_FIELDS, GROUP_FIELDS, SORT_FIELDS

RUNNING = Comparison("state", "=", "running")
FINISHED = Comparison("state", "=", "finished")
QUEUE_A = Comparison("queue", "=", "a")
SORT_KINDS = {name: FILTER_FIELDS[name] for name in SORT_FIELDS}


def test_conjunction_of_comparisons() -> None:
    parsed = parse_filter('state = RUNNING AND queue = "site-a" AND task_id >= 3', FILTER_FIELDS)
    assert parsed == Filter((
        (Comparison("state", "=", "running"),), (Comparison("queue", "=", "site-a"),),
        (Comparison("task_id", ">=", 3),),
    ))


def test_times_and_lower_case_states() -> None:
    parsed = parse_filter('create_time > "2026-01-02T03:04:05Z" AND state != finished', FILTER_FIELDS)
    assert parsed.comparisons[0].value == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed.comparisons[1] == Comparison("state", "!=", "finished")


def test_empty_filter_matches_everything() -> None:
    assert parse_filter("  ", FILTER_FIELDS) == Filter()
    assert not parse_filter("", FILTER_FIELDS)


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        # AIP-160: OR binds tighter than AND.
        ('state = RUNNING OR state = FINISHED AND queue = "a"', ((RUNNING, FINISHED), (QUEUE_A,))),
        ('queue = "a" AND state = RUNNING OR state = FINISHED', ((QUEUE_A,), (RUNNING, FINISHED))),
        ('(state = RUNNING OR state = FINISHED) AND queue = "a"', ((RUNNING, FINISHED), (QUEUE_A,))),
        ('queue = a AND (state = RUNNING OR state = FINISHED)', ((QUEUE_A,), (RUNNING, FINISHED))),
        ("state = RUNNING OR (state = FINISHED OR queue = a)", ((RUNNING, FINISHED, QUEUE_A),)),
        ("((state = RUNNING))", ((RUNNING,),)),
        # A parenthesized AND standing alone is the same conjunction.
        ("(state = RUNNING AND queue = a) AND state = FINISHED", ((RUNNING,), (QUEUE_A,), (FINISHED,))),
        # A value may be a keyword's word, quoted or not.
        ('label = OR AND label = "AND"', ((Comparison("label", "=", "OR"),), (Comparison("label", "=", "AND"),))),
    ],
)
def test_or_groups_and_parentheses(text: str, groups: tuple[tuple[Comparison, ...], ...]) -> None:
    assert parse_filter(text, FILTER_FIELDS).groups == groups


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stat = RUNNING", "unknown filter field 'stat'"),
        ("state = SLEEPING", "bad value 'SLEEPING' for state"),
        ("state = RUNNING or queue = a", "expected AND or OR between comparisons, found 'or'"),
        ("state = RUNNING queue = a", "expected AND or OR between comparisons, found 'queue'"),
        ("task_id = many", "bad value 'many' for task_id"),
        ("state =", "incomplete"),
        ("state = RUNNING OR", "incomplete"),
        ("state = RUNNING AND", "incomplete"),
        ("OR state = RUNNING", "expected `field OP value`"),
        ("state = RUNNING AND OR queue = a", "expected `field OP value`"),
        ("state = (RUNNING)", "expected `field OP value`"),
        ("(state = RUNNING OR queue = a", "missing `)`"),
        ("(state = RUNNING OR queue = a job_id = 1", "missing `)` in filter"),
        ("state = RUNNING) OR (queue = a", "a `)` with no `(`"),
        ("()", "incomplete"),
        ("(state = RUNNING AND queue = a) OR job_id = 1", "not a parenthesized AND"),
        ("job_id = 1 OR (state = RUNNING AND queue = a)", "not a parenthesized AND"),
        ("(" * 9 + "job_id = 1" + ")" * 9, "nested more than 8 deep"),
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
    with pytest.raises(InvalidArgument, match="another filter or order_by"):
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
        # Every comparison counts, in an OR group as in an AND.
        ("job_id > 1" + " OR job_id > 1" * 32, "at most 32 comparisons"),
        ("(job_id > 1" + " OR job_id > 1" * 16 + ") AND (job_id > 1" + " OR job_id > 1" * 15 + ")",
         "at most 32 comparisons"),
        ("label = " + "x" * 5000, "at most 4096"),
    ],
)
def test_filters_a_query_could_not_hold_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_filter(text, FILTER_FIELDS)
    assert message in raised.value.message
    assert raised.value.details, "BadRequest names the filter"


def test_string_escapes_and_unicode() -> None:
    (comparison,) = parse_filter('label = "caf\\u00e9 \\"x\\" é \\\\ \\."', FILTER_FIELDS).comparisons
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


def test_at_most_32_comparisons_across_groups_are_taken() -> None:
    text = "(job_id > 1" + " OR job_id > 1" * 15 + ") AND (job_id > 1" + " OR job_id > 1" * 15 + ")"
    assert [len(group) for group in parse_filter(text, FILTER_FIELDS).groups] == [16, 16]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("", (SortKey("job_id", True),)),
        ("create_time desc, job_id", (SortKey("create_time", True), SortKey("job_id", False))),
        ("priority DESC", (SortKey("priority", True), SortKey("job_id", True))),
        ("  queue ,state desc ", (SortKey("queue", False), SortKey("state", True), SortKey("job_id", True))),
        ("queue asc", (SortKey("queue", False), SortKey("job_id", False))),
        ("job_id", (SortKey("job_id", False),)),
        # Nothing after the id could change the order.
        ("error_code, job_id desc, queue", (SortKey("error_code", False), SortKey("job_id", True))),
    ],
)
def test_order_by_as_aip_132_writes_it(text: str, keys: tuple[SortKey, ...]) -> None:
    assert parse_order_by(text, SORT_KINDS, "job_id") == Ordering(keys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("create_time sideways", "cannot read 'create_time sideways'"),
        ("create_time,,job_id", "cannot read ''"),
        ("command", "cannot sort by 'command'"),
        ("queue, queue desc", "names 'queue' twice"),
        ("queue, state, owner, priority, label", "at most 4 fields"),
        ("queue; DROP TABLE jobs", "cannot read"),
        ("x" * 2000, "longer than 1,024"),
    ],
)
def test_bad_order_by_names_order_by(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_order_by(text, SORT_KINDS, "job_id")
    assert message in raised.value.message
    assert raised.value.details[0].field_violations[0].field == "order_by"  # type: ignore[attr-defined]


def test_group_by_is_checked_field_by_field() -> None:
    assert parse_group_by(["state", "queue"], GROUP_FIELDS) == ("state", "queue")
    for names, field, message in [
        (["state", "command"], "group_by[1]", "cannot group by 'command'"),
        (["queue", "queue"], "group_by[1]", "names 'queue' twice"),
        (["state", "queue", "owner", "vo", "label"], "group_by", "at most 4"),
    ]:
        with pytest.raises(InvalidArgument) as raised:
            parse_group_by(names, GROUP_FIELDS)
        assert message in raised.value.message
        assert raised.value.details[0].field_violations[0].field == field  # type: ignore[attr-defined]


def test_sorted_page_tokens_hold_the_last_rows_keys_and_are_bound_to_filter_and_order() -> None:
    ordering = parse_order_by("create_time desc, priority", SORT_KINDS, "job_id")
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    token = encode_page(ordering, {"create_time": moment, "priority": -5, "job_id": 42}, "state = RUNNING",
                        "create_time desc, priority")
    assert decode_page(token, ordering, SORT_KINDS, "state = RUNNING", "create_time desc, priority") == (
        moment, -5, 42
    )
    for filter_text, order_by in [("state = FAILED", "create_time desc, priority"), ("state = RUNNING", ""),
                                  ("state = RUNNING", "create_time desc")]:
        with pytest.raises(InvalidArgument, match="another filter or order_by") as raised:
            decode_page(token, ordering, SORT_KINDS, filter_text, order_by)
        assert raised.value.details[0].field_violations[0].field == "page_token"  # type: ignore[attr-defined]
    # The default order's tokens are what they were: the id to list before.
    newest = parse_order_by("", SORT_KINDS, "job_id")
    assert decode_page(encode_token({"before": 9}, "state = RUNNING"), newest, SORT_KINDS, "state = RUNNING", "") == (
        9,
    )


@pytest.mark.parametrize("position", [{"id": 3, "k0": "yesterday", "k1": "1"}, {"id": 3, "k0": "2026-01-01T00:00:00Z"},
                                      {"id": 3, "k0": "2026-01-01T00:00:00Z", "k1": "many"},
                                      {"id": 3, "k0": "2026-01-01T00:00:00Z", "k1": "99999999999"},
                                      {"before": 3, "k0": "2026-01-01T00:00:00Z", "k1": "1"}])
def test_forged_sorted_page_tokens_are_not_ours(position: dict[str, object]) -> None:
    ordering = parse_order_by("create_time desc, priority", SORT_KINDS, "job_id")
    token = encode_token(position, "\x00order_by=create_time desc, priority")
    with pytest.raises(InvalidArgument, match="not one this service issued"):
        decode_page(token, ordering, SORT_KINDS, "", "create_time desc, priority")


def test_a_page_token_holds_the_longest_sort_keys() -> None:
    """Four text keys of their longest, in 4-byte characters: the token is still one of ours."""
    ordering = parse_order_by("owner, label desc, queue, vo", SORT_KINDS, "job_id")
    last = {"owner": "\U0001f600" * 256, "label": '"\\é' * 85, "queue": "q" * 64, "vo": "\U00010348" * 64,
            "job_id": 2**63 - 1}
    token = encode_page(ordering, last, "", "owner, label desc, queue, vo")
    assert len(token) <= MAX_TOKEN_LENGTH
    assert decode_page(token, ordering, SORT_KINDS, "", "owner, label desc, queue, vo") == (
        last["owner"], last["label"], last["queue"], last["vo"], 2**63 - 1
    )
