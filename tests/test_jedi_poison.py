"""One bad task never stalls everyone: tasks whose own data breaks an agent (a split of NaN or
infinite gigabytes stored before the rules were checked, an input file name with a space that the
server refuses, a stored batch the server refuses, a kill whose reason the server refuses, a job row
the watcher cannot read) each go BROKEN with the reason in their history, while another user's
healthy task, submitted after them all, is done within a minute. Real server, JEDI and pilots, on
SQLite and PostgreSQL."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from jedi_svc.domain.datasets import FileSpec
from jedi_svc.domain.splitting import SplitRule
from jedi_svc.domain.task_spec import TaskSpec
from jedi_svc.store.dataset_store import DatasetStore
from jedi_svc.store.task_store import TaskStore
from panda.jedi.v1 import dataset_service_pb2_grpc, task_pb2, task_service_pb2_grpc
from panda_runtime.service.db import make_engine
from tests.jedi_support import (
    JediHandle,
    T,
    get_task,
    history_text,
    make_queue,
    new_jedi,
    register_dataset,
    submit_task,
    task_params,
    wait_task,
)
from tests.server_support import token_channel
from tools.cluster import IdentityHandle, ServerHandle

# The healthy task is done this soon after it is submitted, whatever the others hold.
ON_TIME_SECONDS = 60


@pytest.fixture
def jedi(server: ServerHandle, tmp_path: Path, identity: IdentityHandle) -> Iterator[JediHandle]:
    """JEDI, whose log this module reads itself (a row it cannot read is logged with its traceback)."""
    handle = new_jedi(server, tmp_path / "logs", **identity.robot_env("panda-jedi"))
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.2)
    return found


def stored_before_the_rules(tasks: TaskStore, name: str, split: SplitRule) -> int:
    """A task as an earlier JEDI stored it, past the checks the edge makes now."""
    params = {"task_name": name, "owner": "alice", "transformation": ["true"], "input_datasets": ["poison.in"],
              "output_dataset": f"{name}.out"}
    spec = TaskSpec(task_name=name, owner="alice", working_group="", transformation=["true"],
                    input_datasets=["poison.in"], output_dataset=f"{name}.out",
                    output_file_pattern="{dataset}._{serial}.out", split=split, cores=1, memory_mb=1000,
                    walltime_seconds=0, disk_mb=0, priority=0, max_attempts=1, scout_jobs=0, vo="panda")
    return tasks.submit(spec, params).task.task_id


def test_poisoned_tasks_break_alone_and_a_healthy_task_finishes_on_time(  # type: ignore[no-untyped-def]
    jedi: JediHandle, identity: IdentityHandle, engine: Engine, database_url: str, queues_stub, local_queue: str,
    storage_dir: Path, tmp_path: Path, start_pilot,
) -> None:
    make_queue(queues_stub, "parked", tmp_path / "se" / "parked")  # no pilot: its jobs wait there
    with token_channel(jedi.address, identity, "alice") as alice_channel, \
            token_channel(jedi.address, identity, "bob") as bob_channel:
        alice = task_service_pb2_grpc.TaskServiceStub(alice_channel)
        bob = task_service_pb2_grpc.TaskServiceStub(bob_channel)
        datasets = dataset_service_pb2_grpc.DatasetServiceStub(alice_channel)
        register_dataset(datasets, "poison.in", storage_dir, 2, scope="user.alice")
        register_dataset(dataset_service_pb2_grpc.DatasetServiceStub(bob_channel), "healthy.in", storage_dir, 3,
                         scope="user.bob")
        poisoned: dict[str, tuple[int, tuple[str, ...]]] = {}

        # A split of NaN gigabytes per job (SQLite keeps no NaN: infinity there), as stored before.
        split = math.nan if database_url.startswith("postgresql") else math.inf
        poisoned["nan split"] = (stored_before_the_rules(TaskStore(engine), "poison.nan", SplitRule("size", split)),
                                 ("split rule cannot be used", "finite"))

        # A dataset file name with a space (registered before the names were checked): the server
        # would refuse every job reading it, so JEDI makes none.
        DatasetStore(engine).register("poison.space", "alice", "user.alice", [
            FileSpec("a b.dat", 10, "00000001", 0, [storage_dir.name])])
        task = submit_task(alice, params("poison.space", "poison.space", "true"))
        poisoned["space in a file name"] = (task.task_id, ("would be refused by the server", "logical file name"))

        # A stored batch the server refuses (a label longer than its column), beside the task's
        # jobs waiting on a queue with no pilot.
        task = submit_task(alice, params("poison.batch", "poison.in", "true", queues=["parked"]))
        until(lambda: job_ids(engine, task.task_id), "job at the server")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO jedi_jobs (task_id, serial, batch, state, scout, queue, priority, attempt, content_ids,"
                " spec, output_lfn, last_cursor, error_code, error_diag, max_rss_mb, walltime_used, cpu_seconds,"
                " create_time) VALUES (:task, 999, 999, 'submitting', false, 'parked', 0, 1, '[]', :spec, '', 0, 0,"
                " '', 0, 0, 0, CURRENT_TIMESTAMP)"),
                {"task": task.task_id, "spec": (
                    '{"queue": "parked", "priority": 0, "label": "' + "x" * 300 + '", "task_id": '
                    + str(task.task_id) + ', "max_attempts": 1, "command": ["true"], "environment": {},'
                    ' "resources": {"cores": 1, "memory_mb": 1000, "walltime_seconds": 0, "disk_mb": 0},'
                    ' "files": []}')})
        poisoned["a batch the server refuses"] = (task.task_id, ("submitting batch 999", "INVALID_ARGUMENT"))

        # A kill whose reason the server refuses (longer than a reason may be), accepted before.
        task = submit_task(alice, params("poison.kill", "poison.in", "true", queues=["parked"]))
        until(lambda: job_ids(engine, task.task_id), "job at the server")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO jedi_commands (task_id, kind, args, create_time) "
                              "VALUES (:task, 'kill', :args, CURRENT_TIMESTAMP)"),
                         {"task": task.task_id, "args": '{"reason": "' + "r" * 5000 + '"}'})
        poisoned["a kill the server refuses"] = (task.task_id, ("the kill command", "INVALID_ARGUMENT", "reason"))

        # A job row the watcher cannot read, found when its job ends.
        task = submit_task(alice, params("poison.watch", "poison.in", "sleep 1",
                                         split_rule=task_pb2.SplitRule(files_per_job=2)))
        until(lambda: job_ids(engine, task.task_id), "job at the server")
        with engine.begin() as conn:
            conn.execute(text("UPDATE jedi_jobs SET content_ids = '[[0]]' WHERE task_id = :task"),
                         {"task": task.task_id})
        poisoned["a job row the watcher cannot read"] = (task.task_id, ("applying its jobs' events",))

        # Bob's task, submitted beside them all, is done on time.
        started = time.monotonic()
        healthy = submit_task(bob, params("healthy", "healthy.in", "cat ${IN} > ${OUT}", owner="bob"))
        start_pilot()
        start_pilot()
        done = wait_task(bob, healthy.task_id, timeout=ON_TIME_SECONDS)
        assert done.state == T.STATE_DONE, history_text(done)
        assert done.progress.files_finished == 3
        assert time.monotonic() - started < ON_TIME_SECONDS

        for what, (task_id, words) in poisoned.items():
            broken = wait_task(alice, task_id, lambda t: t.state == T.STATE_BROKEN, 30, "broken")
            assert all(word in broken.state_reason for word in words), f"{what}: {broken.state_reason}"
            (breaking,) = [e for e in broken.history if e.state == T.STATE_BROKEN]
            assert breaking.reason == broken.state_reason, what
            assert get_task(alice, task_id).progress.files_ready == 0, f"{what}: nothing left to run"
    log = jedi.log()
    assert " ERROR " not in log, "a task's failure is the task's, not JEDI's"
    for what, (task_id, _) in poisoned.items():
        if what not in ("nan split", "space in a file name"):  # these break by a rule, in the step itself
            assert f"task {task_id}: " in log and "the task is broken, the others go on" in log, what


def params(name: str, dataset: str, command: str, owner: str = "alice", **fields: object) -> task_pb2.TaskParams:
    made = task_params(name, [dataset], f"{name}.out", command, scout_jobs=0, **fields)
    made.owner = owner
    return made


def job_ids(engine: Engine, task_id: int) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT job_id FROM jedi_jobs WHERE task_id = :task AND job_id IS NOT NULL"),
                                 {"task": task_id}).scalars())
