"""JEDI's API with good and bad input: submission checks, idempotent requests, look-ups,
filters and pages, the task event stream, datasets. No pilots needed."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from panda.jedi.v1 import dataset_pb2, dataset_service_pb2, task_pb2, task_service_pb2
from tests.jedi_support import (
    T,
    dataset_files,
    register_dataset,
    state_name,
    submit_task,
    task_params,
    wait_task,
)

pytest_plugins = ["tests.jedi_fixtures"]


def code_of(call, *args, **kwargs) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=10, **kwargs)
    return caught.value.code()


def test_submission_checks_and_idempotency(tasks_stub, datasets_stub, local_queue, storage_dir: Path) -> None:  # type: ignore[no-untyped-def]
    register_dataset(datasets_stub, "api.in", storage_dir, 3)
    good = task_params("api", ["api.in"], "api.out", "cat ${IN} > ${OUT}", scout_jobs=0)
    bad_cases = {
        "no name": dict(task_name=""),
        "no command": dict(transformation=[]),
        "unknown placeholder": dict(transformation=["sh", "-c", "cat ${INPUT}"]),
        "no inputs": dict(input_datasets=[]),
        "bad dataset name": dict(output_dataset="has space"),
        "pattern without serial": dict(output_file_pattern="{dataset}.out"),
        "negative split": dict(split_rule=task_pb2.SplitRule(files_per_job=-1)),
        "attempts": dict(max_attempts=1000),
        "output is an input": dict(output_dataset="api.in"),
    }
    for what, change in bad_cases.items():
        params = task_pb2.TaskParams()
        params.CopyFrom(good)
        for field, value in change.items():
            params.ClearField(field)
            if isinstance(value, list):
                getattr(params, field).extend(value)
            elif isinstance(value, task_pb2.SplitRule):
                params.split_rule.CopyFrom(value)
            else:
                setattr(params, field, value)
        code = code_of(tasks_stub.SubmitTask, task_service_pb2.SubmitTaskRequest(params=params))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, what

    first = tasks_stub.SubmitTask(task_service_pb2.SubmitTaskRequest(params=good, request_id="r-1"), timeout=10).task
    again = tasks_stub.SubmitTask(task_service_pb2.SubmitTaskRequest(params=good, request_id="r-1"), timeout=10).task
    assert first.task_id == again.task_id
    # Same output dataset, new request: refused.
    assert code_of(tasks_stub.SubmitTask, task_service_pb2.SubmitTaskRequest(params=good)) == \
        grpc.StatusCode.ALREADY_EXISTS
    assert code_of(tasks_stub.GetTask, task_service_pb2.GetTaskRequest(task_id=9999)) == grpc.StatusCode.NOT_FOUND
    assert code_of(tasks_stub.GetTask, task_service_pb2.GetTaskRequest(task_id=0)) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert first.params.owner == "alice" and first.job_resources.memory_mb == 2000
    assert first.params.scout_jobs == 0 and first.params.HasField("scout_jobs")


def test_list_filters_pages_and_watch(tasks_stub, datasets_stub, local_queue, storage_dir: Path) -> None:  # type: ignore[no-untyped-def]
    register_dataset(datasets_stub, "list.in", storage_dir, 1)
    ids = []
    for i, owner in enumerate(["alice", "bob", "alice", "carol", "alice"]):
        params = task_params(f"mc23.list.{i}" if i % 2 == 0 else f"data.list.{i}", ["list.in"], f"list.out.{i}",
                             "true", scout_jobs=0)
        params.owner = owner
        ids.append(submit_task(tasks_stub, params).task_id)

    def listed(flt: str, **kwargs: object) -> task_service_pb2.ListTasksResponse:
        return tasks_stub.ListTasks(task_service_pb2.ListTasksRequest(filter=flt, **kwargs), timeout=10)  # type: ignore[arg-type]

    assert [t.task_id for t in listed('owner = "alice"').tasks] == [ids[4], ids[2], ids[0]]
    assert [t.task_id for t in listed('task_name = "mc23.*"').tasks] == [ids[4], ids[2], ids[0]]
    assert [t.task_id for t in listed('task_name != "mc23.*" AND owner = "bob"').tasks] == [ids[1]]
    assert listed(f"task_id >= {ids[3]}").total_size == 2
    since = listed('create_time > "2000-01-01T00:00:00Z" AND state != BROKEN')
    assert since.total_size == 5
    page = listed("", page_size=2)
    seen = [t.task_id for t in page.tasks]
    while page.next_page_token:
        page = listed("", page_size=2, page_token=page.next_page_token)
        seen += [t.task_id for t in page.tasks]
    assert seen == sorted(ids, reverse=True)
    for flt in ["nope = 1", "state = NOPE", "owner ~ x"]:
        assert code_of(tasks_stub.ListTasks, task_service_pb2.ListTasksRequest(filter=flt)) == \
            grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(tasks_stub.ListTasks, task_service_pb2.ListTasksRequest(
        filter='owner = "bob"', page_token=listed("", page_size=2).next_page_token)) == \
        grpc.StatusCode.INVALID_ARGUMENT

    # The event stream: one task's history from the start, then resumed after a cursor.
    wait_task(tasks_stub, ids[0], lambda t: t.state == T.STATE_RUNNING, 30, "running")
    stream = tasks_stub.WatchTasks(task_service_pb2.WatchTasksRequest(task_id=ids[0]), timeout=5)
    events = []
    for response in stream:
        events.append(response.event)
        if response.event.state == T.STATE_RUNNING:
            stream.cancel()
            break
    assert [state_name(e.state) for e in events] == ["registered", "defined", "ready", "running"]
    assert {e.task_id for e in events} == {ids[0]}
    resumed = tasks_stub.WatchTasks(task_service_pb2.WatchTasksRequest(task_id=ids[0],
                                                                        after_cursor=events[1].cursor), timeout=5)
    first = next(iter(resumed))
    resumed.cancel()
    assert first.event.cursor == events[2].cursor


def test_datasets_register_get_list_and_files(datasets_stub, local_queue, storage_dir: Path) -> None:  # type: ignore[no-untyped-def]
    lfns = register_dataset(datasets_stub, "user.alice.raw", storage_dir, 5, events=7)
    got = datasets_stub.GetDataset(dataset_service_pb2.GetDatasetRequest(dataset_id="user.alice.raw"),
                                   timeout=10).dataset
    assert (got.kind, got.file_count, got.total_events) == (dataset_pb2.Dataset.KIND_INPUT, 5, 35)
    assert got.total_bytes == sum((storage_dir / "user.admin" / lfn).stat().st_size for lfn in lfns)
    files = dataset_files(datasets_stub, "user.alice.raw")
    assert [f.lfn for f in files] == lfns and not files[0].HasField("task_state")
    page = datasets_stub.ListDatasetFiles(dataset_service_pb2.ListDatasetFilesRequest(
        dataset_id="user.alice.raw", page_size=2), timeout=10)
    assert len(page.files) == 2 and page.next_page_token and page.total_size == 5
    listed = datasets_stub.ListDatasets(dataset_service_pb2.ListDatasetsRequest(
        filter='dataset_id = "user.alice.*" AND kind = INPUT'), timeout=10)
    assert [d.dataset_id for d in listed.datasets] == ["user.alice.raw"]

    def register(name: str, *files: dataset_pb2.DatasetFile) -> grpc.StatusCode:
        return code_of(datasets_stub.RegisterDataset, dataset_service_pb2.RegisterDatasetRequest(
            dataset=dataset_pb2.Dataset(dataset_id=name), files=list(files)))

    ok = dataset_pb2.DatasetFile(lfn="a", size_bytes=1, adler32="00620062", storage_elements=["local"])
    assert register("user.alice.raw", ok) == grpc.StatusCode.ALREADY_EXISTS
    assert register("empty") == grpc.StatusCode.INVALID_ARGUMENT
    assert register("dup", ok, ok) == grpc.StatusCode.INVALID_ARGUMENT
    for bad in [dict(lfn="a/b"), dict(adler32="xyz"), dict(storage_elements=[]), dict(storage_elements=["/x"]),
                dict(size_bytes=-1)]:
        broken = dataset_pb2.DatasetFile()
        broken.CopyFrom(ok)
        for field, value in bad.items():
            broken.ClearField(field)
            if isinstance(value, list):
                getattr(broken, field).extend(value)
            else:
                setattr(broken, field, value)
        assert register("bad", broken) == grpc.StatusCode.INVALID_ARGUMENT, bad
    assert code_of(datasets_stub.GetDataset, dataset_service_pb2.GetDatasetRequest(dataset_id="nope")) == \
        grpc.StatusCode.NOT_FOUND
    started = time.monotonic()
    assert code_of(datasets_stub.ListDatasetFiles, dataset_service_pb2.ListDatasetFilesRequest(
        dataset_id="user.alice.raw", task_id=12345)) == grpc.StatusCode.INVALID_ARGUMENT
    assert time.monotonic() - started < 5
