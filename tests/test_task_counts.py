"""What the web monitor reads from TaskService, over a real JEDI and server on SQLite and
PostgreSQL: filters with OR, ListTasks sorted and paged, CountTasks grouped by the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from panda.jedi.v1 import dataset_pb2, dataset_service_pb2, task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.jedi_support import JediHandle, T, register_dataset, submit_task, task_params, wait_task
from tests.server_support import token_channel
from tools.cluster import IdentityHandle

pytest_plugins = ["tests.jedi_fixtures"]

Stub = task_service_pb2_grpc.TaskServiceStub
# name, owner, priority, working group; the last two are killed.
TASKS = [("mc23.a", "alice", 3, "higgs"), ("data.b", "bob", 7, ""), ("mc23.c", "alice", 7, "higgs"),
         ("data.d", "carol", 1, "top"), ("mc23.e", "alice", 5, "")]


@dataclass
class Tasks:
    admin: Stub
    bob: Stub
    by_id: dict[int, task_pb2.Task]


@pytest.fixture
def bob(jedi: JediHandle, identity: IdentityHandle) -> Iterator[Stub]:
    with token_channel(jedi.address, identity, "bob") as channel:
        yield task_service_pb2_grpc.TaskServiceStub(channel)


@pytest.fixture
def tasks(tasks_stub: Stub, bob: Stub, datasets_stub, local_queue: str, storage_dir: Path) -> Tasks:  # type: ignore[no-untyped-def]
    register_dataset(datasets_stub, "counts.in", storage_dir, 1)
    ids = []
    for name, owner, priority, group in TASKS:
        params = task_params(name, ["counts.in"], f"{name}.out", "true", scout_jobs=0, priority=priority,
                             working_group=group)
        params.owner = owner
        ids.append(submit_task(tasks_stub, params).task_id)
    for task_id in ids[3:]:
        tasks_stub.KillTask(task_service_pb2.KillTaskRequest(task_id=task_id, reason="test"), timeout=10)
    # Their states settle: no pilot runs the jobs of the others.
    for task_id in ids[3:]:
        wait_task(tasks_stub, task_id, lambda t: t.state == T.STATE_ABORTED, 60, "aborted")
    by_id = {task_id: wait_task(tasks_stub, task_id, lambda t: t.state == T.STATE_RUNNING, 60, "running")
             for task_id in ids[:3]}
    by_id.update({task_id: wait_task(tasks_stub, task_id, lambda t: True) for task_id in ids[3:]})
    return Tasks(tasks_stub, bob, by_id)


def _count(stub: Stub, *group_by: str, filter: str = "", page_size: int = 0) -> task_service_pb2.CountTasksResponse:
    return stub.CountTasks(task_service_pb2.CountTasksRequest(filter=filter, group_by=group_by, page_size=page_size),
                           timeout=10)


def _groups(response: task_service_pb2.CountTasksResponse) -> list[tuple[tuple[str, ...], int]]:
    return [(tuple(group.values), group.count) for group in response.groups]


def _bad_field(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return bad.field_violations[0].field


def test_count_tasks_by_the_database(tasks: Tasks) -> None:
    by_state = _count(tasks.admin, "state")
    assert _groups(by_state) == [(("STATE_RUNNING",), 3), (("STATE_ABORTED",), 2)]
    assert (by_state.total_size, by_state.left_off_count) == (5, 0)
    assert _groups(_count(tasks.admin, "owner")) == [(("alice",), 3), (("bob",), 1), (("carol",), 1)]
    assert _groups(_count(tasks.admin, "working_group", "priority")) == [
        (("", "5"), 1), (("", "7"), 1), (("higgs", "3"), 1), (("higgs", "7"), 1), (("top", "1"), 1)
    ]
    top = _count(tasks.admin, "priority", "vo", page_size=1)
    assert (_groups(top), top.total_size, top.left_off_count) == ([(("7", "panda"), 2)], 5, 3)
    only = _count(tasks.admin, filter="state = ABORTED")
    assert (list(only.groups), only.total_size, only.left_off_count) == ([], 2, 0)
    # A user counts its own tasks only.
    assert _groups(_count(tasks.bob, "owner", "state")) == [(("bob", "STATE_RUNNING"), 1)]
    assert _count(tasks.bob, filter='owner = "alice"').total_size == 0
    assert _bad_field(lambda: _count(tasks.admin, "queues")) == "group_by[0]"
    assert _bad_field(lambda: _count(tasks.admin, "state", filter="state = NOPE OR")) == "filter"


def test_or_in_task_filters_binds_tighter_than_and(tasks: Tasks) -> None:
    def listed(text: str) -> set[str]:
        response = tasks.admin.ListTasks(task_service_pb2.ListTasksRequest(filter=text), timeout=10)
        return {t.params.task_name for t in response.tasks}

    assert listed('owner = "bob" OR owner = "carol" AND priority < 5') == {"data.d"}
    assert listed('(owner = "bob" OR owner = "carol") AND priority < 5') == {"data.d"}
    assert listed('owner = "bob" OR (owner = "carol" OR task_name = "mc23.*") AND priority >= 5') == {
        "data.b", "mc23.c", "mc23.e"
    }
    assert listed('task_name = "mc23.*" OR state = ABORTED') == {"mc23.a", "mc23.c", "mc23.e", "data.d"}
    assert _count(tasks.admin, filter='owner = "bob" OR owner = "carol" AND priority < 5').total_size == 1


def _all_pages(stub: Stub, order_by: str, page_size: int) -> list[int]:
    seen: list[int] = []
    token = ""
    while True:
        page = stub.ListTasks(task_service_pb2.ListTasksRequest(order_by=order_by, page_size=page_size,
                                                                page_token=token), timeout=10)
        seen += [t.task_id for t in page.tasks]
        token = page.next_page_token
        if not token:
            return seen


def _reverse(text: str) -> tuple[int, ...]:
    return (*(-ord(c) for c in text), 1)


@pytest.mark.parametrize(
    ("order_by", "key"),
    [
        ("", lambda t: -t.task_id),
        ("priority desc", lambda t: (-t.priority, -t.task_id)),
        ("owner, priority desc", lambda t: (t.params.owner, -t.priority, -t.task_id)),
        ("state, task_id desc", lambda t: (T.State.Name(t.state), -t.task_id)),
        ("task_name desc", lambda t: (_reverse(t.params.task_name), -t.task_id)),
        ("working_group, create_time desc", lambda t: (t.params.working_group, -t.create_time.ToNanoseconds(),
                                                       -t.task_id)),
        ("create_time", lambda t: (t.create_time.ToNanoseconds(), t.task_id)),
    ],
)
def test_list_tasks_sorted_pages_through_every_task_once(tasks: Tasks, order_by: str,
                                                        key: Callable[[task_pb2.Task], object]) -> None:
    expected = [t.task_id for t in sorted(tasks.by_id.values(), key=key)]  # type: ignore[arg-type]
    for size in (1, 2, 100):
        assert _all_pages(tasks.admin, order_by, size) == expected, (order_by, size)
    assert _all_pages(tasks.bob, order_by, 1) == [i for i in expected if tasks.by_id[i].params.owner == "bob"]


def test_a_task_page_token_belongs_to_its_order(tasks: Tasks) -> None:
    first = tasks.admin.ListTasks(task_service_pb2.ListTasksRequest(order_by="priority desc", page_size=2),
                                  timeout=10)
    assert first.next_page_token
    assert _bad_field(lambda: tasks.admin.ListTasks(task_service_pb2.ListTasksRequest(
        order_by="priority", page_token=first.next_page_token), timeout=10)) == "page_token"
    assert _bad_field(lambda: tasks.admin.ListTasks(task_service_pb2.ListTasksRequest(
        order_by="queues"), timeout=10)) == "order_by"


@pytest.mark.parametrize("order_by", ["dataset_id", "dataset_id desc", "create_time desc", "owner, dataset_id desc",
                                      "kind desc, task_id"])
def test_list_datasets_sorted_pages_through_every_dataset_once(tasks: Tasks, datasets_stub, order_by: str) -> None:  # type: ignore[no-untyped-def]
    everything = datasets_stub.ListDatasets(dataset_service_pb2.ListDatasetsRequest(page_size=1000), timeout=10)
    assert len(everything.datasets) >= 2
    seen: list[dataset_pb2.Dataset] = []
    token = ""
    for _ in range(len(everything.datasets) + 1):  # pages that never end fail, not hang
        page = datasets_stub.ListDatasets(dataset_service_pb2.ListDatasetsRequest(
            page_size=2, page_token=token, order_by=order_by), timeout=10)
        seen += page.datasets
        token = page.next_page_token
        if not token:
            break
    assert not token, "the pages did not end"
    assert sorted(d.dataset_id for d in seen) == sorted(d.dataset_id for d in everything.datasets)
    assert len(seen) == len(everything.datasets)

    def key(dataset: dataset_pb2.Dataset) -> tuple[object, ...]:
        values: list[object] = []
        for item in order_by.split(","):
            name, _, direction = item.strip().partition(" ")
            value = getattr(dataset, name)
            if name == "create_time":
                value = value.ToNanoseconds()
            values.append(_Reversed(value) if direction == "desc" else value)
        return tuple(values)

    assert [key(d) for d in seen] == sorted(key(d) for d in seen)
    # A token belongs to its order.
    first = datasets_stub.ListDatasets(dataset_service_pb2.ListDatasetsRequest(page_size=1, order_by=order_by),
                                       timeout=10)
    assert _bad_field(lambda: datasets_stub.ListDatasets(dataset_service_pb2.ListDatasetsRequest(
        page_size=1, page_token=first.next_page_token, order_by="task_id"), timeout=10)) == "page_token"


class _Reversed:
    def __init__(self, value: object) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(self.value == other.value)
