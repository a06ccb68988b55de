"""What the web monitor reads from JobService, over real gRPC on SQLite and PostgreSQL: filters
with OR, ListJobs sorted and paged, CountJobs grouped by the database (values, order, who counts
what), and the error-code table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from panda.server.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, queue_pb2, queue_service_pb2
from panda_runtime.contracts import error_codes
from tests.pilot_stream import PilotStream
from tests.server_support import QueueStubs, get_job, submit

J = job_pb2.Job
Stub = job_service_pb2_grpc.JobServiceStub


@dataclass
class Jobs:
    """Alice's six jobs and Bob's three, in two queues: alice's first failed with 1305, her
    second with 1099, her third was killed; the rest are activated."""

    admin: Stub
    alice: Stub
    bob: Stub
    by_id: dict[int, J]


@pytest.fixture
def jobs(channel: grpc.Channel, jobs_stub: Stub, queues_stub: QueueStubs, local_queue: str,
         as_user: Callable[[str], Stub]) -> Jobs:
    queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(
        queue_id="other", status=queue_pb2.Queue.STATUS_ONLINE, storage_element="local")), timeout=10)
    alice, bob = as_user("alice"), as_user("bob")
    hers = submit(alice, *[J(queue="local", command=["true"], priority=p, max_attempts=1, label=label)
                           for p, label in [(9, "x"), (8, "x"), (5, "y"), (5, "y"), (1, "z"), (5, "x")]])
    his = submit(bob, *[J(queue="other", command=["true"], priority=p, label="x") for p in (7, 5, 3)])
    # A pilot takes alice's two best (priority 9 and 8) and fails them.
    pilot = PilotStream(channel, "counting-pilot")
    pilot.request_jobs(2)
    taken = list(pilot.next("job_assignments").job_assignments.jobs)
    assert [job.job_id for job in taken] == [hers[0].job_id, hers[1].job_id]
    for job, code in zip(taken, (1305, 1099), strict=True):
        pilot.update(job.job_id, 1, J.STATE_FAILED, error_code=code, error_diag="failed on purpose")
        assert pilot.next_ack().state == J.STATE_FAILED
    pilot.close()
    alice.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[hers[2].job_id]), timeout=10)
    by_id = {job.job_id: get_job(jobs_stub, job.job_id) for job in (*hers, *his)}
    return Jobs(jobs_stub, alice, bob, by_id)


def _count(stub: Stub, *group_by: str, filter: str = "", page_size: int = 0) -> job_service_pb2.CountJobsResponse:
    return stub.CountJobs(job_service_pb2.CountJobsRequest(filter=filter, group_by=group_by, page_size=page_size),
                          timeout=10)


def _groups(response: job_service_pb2.CountJobsResponse) -> list[tuple[tuple[str, ...], int]]:
    return [(tuple(group.values), group.count) for group in response.groups]


def _bad_field(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    error = refused.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return bad.field_violations[0].field, error.details() or ""


def test_count_jobs_groups_by_the_database_largest_first(jobs: Jobs) -> None:
    by_state = _count(jobs.admin, "state")
    assert _groups(by_state) == [(("STATE_ACTIVATED",), 6), (("STATE_FAILED",), 2), (("STATE_CANCELLED",), 1)]
    assert (by_state.total_size, by_state.left_off_count) == (9, 0)

    # Two fields: each group's values in group_by order; ties by their values.
    assert _groups(_count(jobs.admin, "queue", "state")) == [
        (("local", "STATE_ACTIVATED"), 3), (("other", "STATE_ACTIVATED"), 3), (("local", "STATE_FAILED"), 2),
        (("local", "STATE_CANCELLED"), 1),
    ]
    # Numbers in decimal, as the JSON mapping writes them; the errors summary is a call of this.
    failures = _count(jobs.admin, "error_code", filter="state = FAILED")
    assert _groups(failures) == [(("1099",), 1), (("1305",), 1)]
    assert _groups(_count(jobs.admin, "priority", "label", filter="priority = 5")) == [
        (("5", "x"), 2), (("5", "y"), 2)
    ]
    assert _groups(_count(jobs.admin, "attempt", "task_id", "node")) == [
        (("1", "0", ""), 7), (("1", "0", "test-node"), 2)
    ]
    assert _groups(_count(jobs.admin, "owner", "vo")) == [(("alice", "panda"), 6), (("bob", "panda"), 3)]

    # The most groups asked for; the rest counted as left off.
    top = _count(jobs.admin, "priority", page_size=2)
    assert _groups(top) == [(("5",), 4), (("1",), 1)]
    assert (top.total_size, top.left_off_count) == (9, 4)
    # No group_by: the total alone.
    only = _count(jobs.admin, filter="queue = other")
    assert (list(only.groups), only.total_size, only.left_off_count) == ([], 3, 0)
    none = _count(jobs.admin, "state", filter="queue = nowhere")
    assert (list(none.groups), none.total_size) == ([], 0)


def test_a_user_counts_only_its_own_jobs(jobs: Jobs) -> None:
    assert _groups(_count(jobs.bob, "owner", "state")) == [(("bob", "STATE_ACTIVATED"), 3)]
    assert _count(jobs.bob, "state").total_size == 3
    assert _count(jobs.bob, filter='owner = "alice"').total_size == 0
    hers = _count(jobs.alice, "state")
    assert hers.total_size == 6
    assert _groups(hers) == [(("STATE_ACTIVATED",), 3), (("STATE_FAILED",), 2), (("STATE_CANCELLED",), 1)]


def test_or_in_filters_binds_tighter_than_and(jobs: Jobs) -> None:
    def listed(stub: Stub, text: str) -> set[int]:
        return {j.job_id for j in stub.ListJobs(job_service_pb2.ListJobsRequest(filter=text), timeout=10).jobs}

    ended = {i for i, j in jobs.by_id.items() if j.state in (J.STATE_FAILED, J.STATE_CANCELLED)}
    low = {i for i, j in jobs.by_id.items() if j.priority <= 5}
    # (FAILED OR CANCELLED) AND priority <= 5: the cancelled one alone (both failed were 9 and 8).
    text = "state = FAILED OR state = CANCELLED AND priority <= 5"
    assert listed(jobs.admin, text) == ended & low and len(ended & low) == 1
    assert _count(jobs.admin, filter=text).total_size == 1
    assert listed(jobs.admin, "(state = FAILED OR state = CANCELLED) AND priority <= 5") == ended & low
    assert listed(jobs.admin, "priority <= 5 AND (state = FAILED OR state = CANCELLED)") == ended & low
    assert listed(jobs.admin, 'state = FAILED OR queue = "other"') == {
        i for i, j in jobs.by_id.items() if j.state == J.STATE_FAILED or j.queue == "other"
    }
    # Visibility holds around an OR: bob's "anyone's failed job OR mine" is his own.
    assert listed(jobs.bob, 'state = FAILED OR owner = "bob"') == {
        i for i, j in jobs.by_id.items() if j.owner == "bob"
    }
    assert _groups(_count(jobs.bob, "state", filter='owner = "alice" OR state = ACTIVATED')) == [
        (("STATE_ACTIVATED",), 3)
    ]
    assert _bad_field(lambda: _count(jobs.admin, filter="state = FAILED OR"))[0] == "filter"
    assert _bad_field(lambda: jobs.admin.ListJobs(job_service_pb2.ListJobsRequest(
        filter="(state = FAILED AND queue = a) OR priority > 1"), timeout=10))[0] == "filter"


def test_a_text_with_a_star_is_a_pattern_in_job_filters(jobs: Jobs) -> None:
    def listed(text: str) -> set[int]:
        return {j.job_id for j in jobs.admin.ListJobs(job_service_pb2.ListJobsRequest(filter=text), timeout=10).jobs}

    assert listed('queue = "oth*"') == {i for i, j in jobs.by_id.items() if j.queue == "other"}
    assert listed('queue != "oth*" AND label = "*"') == {i for i, j in jobs.by_id.items() if j.queue == "local"}
    assert listed('label = "x*" OR label = "z"') == {i for i, j in jobs.by_id.items() if j.label in ("x", "z")}
    # LIKE's own wildcards are plain characters: `_` matches an underscore only.
    assert listed('queue = "loca_"') == set()
    assert _count(jobs.admin, "owner", filter='owner = "a*"').total_size == 6


def _all_pages(stub: Stub, order_by: str, page_size: int, filter: str = "") -> list[int]:
    seen: list[int] = []
    token = ""
    while True:
        page = stub.ListJobs(job_service_pb2.ListJobsRequest(
            order_by=order_by, page_size=page_size, page_token=token, filter=filter), timeout=10)
        seen += [j.job_id for j in page.jobs]
        assert len(page.jobs) <= page_size
        token = page.next_page_token
        if not token:
            return seen


@pytest.mark.parametrize(
    ("order_by", "key"),
    [
        ("", lambda j: -j.job_id),
        ("priority desc", lambda j: (-j.priority, -j.job_id)),
        ("priority", lambda j: (j.priority, j.job_id)),
        ("priority desc, job_id", lambda j: (-j.priority, j.job_id)),
        ("label, priority desc", lambda j: (j.label, -j.priority, -j.job_id)),
        ("state desc, queue", lambda j: (_reverse(job_pb2.Job.State.Name(j.state).lower()), j.queue, j.job_id)),
        ("create_time desc, job_id", lambda j: (-j.create_time.ToNanoseconds(), j.job_id)),
        ("update_time", lambda j: (j.update_time.ToNanoseconds(), j.job_id)),
        ("error_code desc", lambda j: (-j.error_code, -j.job_id)),
        ("owner desc, queue, attempt", lambda j: (_reverse(j.owner), j.queue, j.attempt, j.job_id)),
    ],
)
def test_list_jobs_sorted_pages_through_every_job_once(jobs: Jobs, order_by: str,
                                                      key: Callable[[J], object]) -> None:
    expected = [j.job_id for j in sorted(jobs.by_id.values(), key=key)]  # type: ignore[arg-type]
    for size in (1, 2, 4, 100):
        assert _all_pages(jobs.admin, order_by, size) == expected, (order_by, size)
    # Filtered and sorted, as the monitor asks; and a user's sort covers its own jobs only.
    assert _all_pages(jobs.admin, order_by, 2, filter="state = ACTIVATED") == [
        i for i in expected if jobs.by_id[i].state == J.STATE_ACTIVATED
    ]
    assert _all_pages(jobs.bob, order_by, 2) == [i for i in expected if jobs.by_id[i].owner == "bob"]


def _reverse(text: str) -> tuple[int, ...]:
    """A key that sorts ASCII text backwards."""
    return (*(-ord(c) for c in text), 1)


def test_a_page_token_belongs_to_its_filter_and_order(jobs: Jobs) -> None:
    first = jobs.admin.ListJobs(job_service_pb2.ListJobsRequest(order_by="priority desc", page_size=2), timeout=10)
    assert first.total_size == 9 and first.next_page_token
    for other in (job_service_pb2.ListJobsRequest(order_by="priority", page_token=first.next_page_token),
                  job_service_pb2.ListJobsRequest(page_token=first.next_page_token),
                  job_service_pb2.ListJobsRequest(order_by="priority desc", filter="priority > 1",
                                                  page_token=first.next_page_token)):
        field, message = _bad_field(lambda other=other: jobs.admin.ListJobs(other, timeout=10))
        assert field == "page_token" and "another filter or order_by" in message
    field, message = _bad_field(lambda: jobs.admin.ListJobs(job_service_pb2.ListJobsRequest(
        order_by="command desc"), timeout=10))
    assert field == "order_by" and "cannot sort by 'command'" in message
    field, _ = _bad_field(lambda: jobs.admin.ListJobs(job_service_pb2.ListJobsRequest(
        order_by="priority; drop table jobs"), timeout=10))
    assert field == "order_by"


def test_count_jobs_refuses_bad_input_naming_the_field(jobs: Jobs) -> None:
    assert _bad_field(lambda: _count(jobs.admin, "state", "command"))[0] == "group_by[1]"
    assert _bad_field(lambda: _count(jobs.admin, "state", "state"))[0] == "group_by[1]"
    assert _bad_field(lambda: _count(jobs.admin, "state", "queue", "owner", "vo", "label"))[0] == "group_by"
    assert _bad_field(lambda: _count(jobs.admin, "state", page_size=-1))[0] == "page_size"
    assert _bad_field(lambda: _count(jobs.admin, "state", filter="state = SLEEPING"))[0] == "filter"


def test_the_error_code_table_for_any_signed_in_caller(jobs: Jobs) -> None:
    listed = jobs.bob.ListErrorCodes(job_service_pb2.ListErrorCodesRequest(), timeout=10).error_codes
    assert [e.code for e in listed] == [e.code for e in error_codes.ALL] == sorted(e.code for e in listed)
    by_code = {e.code: e for e in listed}
    assert by_code[1305].name == "PAYLOADEXECUTIONFAILURE" and by_code[1305].source == job_pb2.ErrorCode.SOURCE_PILOT
    assert by_code[100].meaning == "lost heartbeat" and by_code[100].source == job_pb2.ErrorCode.SOURCE_SERVER
    assert all(e.used_when and e.meaning and e.name for e in listed)
    # The failures of the fixture, read back as the monitor's error summary does.
    failed = _count(jobs.alice, "error_code", filter="state = FAILED")
    assert [by_code[int(group.values[0])].name for group in failed.groups] == ["STAGEINFAILED",
                                                                               "PAYLOADEXECUTIONFAILURE"]
