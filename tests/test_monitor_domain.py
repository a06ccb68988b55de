"""The web monitor's URL language, without a service: filters as BigPanDA's users write them,
turned into the services' list filters; paging, sorting and the links that keep a view."""

from __future__ import annotations

import datetime

import pytest

from monitor_gateway.domain.monitor_filters import FilterError, api_filter
from monitor_gateway.domain.monitor_pages import Paging, paging_of, with_params
from monitor_gateway.store.descriptors import list_fields

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
# The fields as the gateway has them: the states and kinds read from the contracts.
FIELDS = list_fields()
JOB_FIELDS, TASK_FIELDS, DATASET_FIELDS = FIELDS.jobs, FIELDS.tasks, FIELDS.datasets


@pytest.mark.parametrize(("query", "expected"), [
    ({"state": ["failed"]}, "state = FAILED"),
    ({"state": ["STATE_Failed"]}, "state = FAILED"),
    ({"state": ["failed|cancelled"]}, "(state = FAILED OR state = CANCELLED)"),
    ({"state": ["!finished"]}, "state != FINISHED"),
    ({"state": ["!finished|cancelled"]}, "state != FINISHED AND state != CANCELLED"),
    ({"queue": ["CERN*"]}, 'queue = "CERN*"'),
    ({"owner": ['a"b\\c']}, 'owner = "a\\"b\\\\c"'),
    ({"task_id": ["12"], "error_code": ["1305"]}, "task_id = 12 AND error_code = 1305"),
    ({"hours": ["12"]}, 'update_time > "2026-12-07T00:00:00Z"'),
    ({"days": ["3"]}, 'update_time > "2026-12-04T12:00:00Z"'),
    ({"from": ["2026-12-01"], "to": ["2026-12-02T10:00:00Z"]},
     'update_time >= "2026-12-01T00:00:00Z" AND update_time <= "2026-12-02T10:00:00Z"'),
    ({"page_token": ["x"], "sort": ["-job_id"], "json": ["1"]}, ""),
])
def test_a_url_filter_becomes_the_services_filter(query: dict[str, list[str]], expected: str) -> None:
    assert api_filter(query, JOB_FIELDS, now=NOW) == expected


def test_a_page_adds_its_own_terms_first() -> None:
    assert api_filter({"state": ["running"]}, JOB_FIELDS, now=NOW, fixed=["task_id = 7"]) == \
        "task_id = 7 AND state = RUNNING"


def test_tasks_and_datasets_have_their_own_fields() -> None:
    assert api_filter({"state": ["broken"], "task_name": ["mc23.*"]}, TASK_FIELDS, now=NOW) == \
        'task_name = "mc23.*" AND state = BROKEN'
    assert api_filter({"kind": ["output"]}, DATASET_FIELDS, now=NOW) == "kind = OUTPUT"
    # A job's field is no task's: it is not a filter there (the page ignores it).
    assert api_filter({"queue": ["x"]}, TASK_FIELDS, now=NOW) == ""


@pytest.mark.parametrize(("query", "parameter"), [
    ({"state": ["flying"]}, "state"),
    ({"task_id": ["seven"]}, "task_id"),
    ({"error_code": [""]}, "error_code"),
    ({"hours": ["-1"]}, "hours"),
    ({"days": ["100000"]}, "days"),
    ({"from": ["yesterday"]}, "from"),
])
def test_a_value_the_field_cannot_hold_names_the_url_parameter(query: dict[str, list[str]], parameter: str) -> None:
    with pytest.raises(FilterError) as raised:
        api_filter(query, JOB_FIELDS, now=NOW)
    assert raised.value.parameter == parameter


def test_paging_and_sorting() -> None:
    assert paging_of({}, "jobs") == Paging(100, "", "")
    assert paging_of({"page_size": ["20"], "page_token": ["t"], "sort": ["-update_time"]}, "jobs") == \
        Paging(20, "t", "update_time desc")
    assert paging_of({"sort": ["state"]}, "tasks").order_by == "state"
    for query, parameter in (({"page_size": ["0"]}, "page_size"), ({"page_size": ["1001"]}, "page_size"),
                             ({"sort": ["command"]}, "sort"), ({"sort": ["job_id"]}, "sort")):
        with pytest.raises(FilterError) as raised:
            paging_of(query, "jobs" if query.get("sort") != ["job_id"] else None)
        assert raised.value.parameter == parameter


def test_links_keep_the_view_and_start_again_from_the_first_page() -> None:
    query = {"state": ["failed"], "page_token": ["abc"], "json": ["1"]}
    assert with_params("/monitor/jobs", query, queue="CERN") == "/monitor/jobs?state=failed&queue=CERN"
    assert with_params("/monitor/jobs", query, state=None) == "/monitor/jobs"
    assert with_params("/monitor/jobs", query, page_token="next") == \
        "/monitor/jobs?state=failed&page_token=next"
    assert with_params("/monitor/jobs", {"queue": ["a b&c"]}) == "/monitor/jobs?queue=a+b%26c"


def test_a_list_held_whole_is_sorted_and_paged_by_offset() -> None:
    from monitor_gateway.domain.monitor_pages import page_of

    rows = [{"name": name, "n": n} for name, n in (("b", 2), ("a", 2), ("c", 9), ("d", 1))]
    keys = {"name": lambda r: r["name"], "n": lambda r: r["n"]}
    first = page_of(rows, Paging(3, "", "n desc"), keys)
    assert [r["name"] for r in first.rows] == ["c", "a", "b"] and first.next_page_token == "3" and first.total == 4
    rest = page_of(rows, Paging(3, first.next_page_token, "n desc"), keys)
    assert [r["name"] for r in rest.rows] == ["d"] and rest.next_page_token == ""
    assert [r["name"] for r in page_of(rows, Paging(10, "", ""), keys).rows] == ["a", "b", "c", "d"]
    with pytest.raises(FilterError) as raised:
        page_of(rows, Paging(3, "abc", ""), keys)
    assert raised.value.parameter == "page_token"
