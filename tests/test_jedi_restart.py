"""JEDI crashes: killed with SIGKILL mid-task and restarted, and killed between submitting a
batch of jobs and recording it. Either way the task completes with every input processed
exactly once: no job is made twice, no outcome is lost."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

from jedi_svc.domain.datasets import FileSpec
from jedi_svc.logic.server_client import ServerCalls
from jedi_svc.servicers.convert import params_to_dict, spec_from_params
from jedi_svc.settings import JediSettings
from jedi_svc.store.dataset_store import DatasetStore
from jedi_svc.store.generation_store import GenerationStore
from jedi_svc.store.refine_store import RefineStore
from jedi_svc.store.task_store import TaskStore
from panda.jedi.v1 import task_service_pb2_grpc
from panda.server.v1 import job_pb2
from panda_runtime.client import ConnectConfig
from panda_runtime.client.credentials import ClientCredentialsToken
from panda_runtime.service.db import make_engine
from tests.jedi_support import (
    T,
    adler32_of,
    dataset_files,
    get_task,
    history_text,
    inputs_of,
    new_jedi,
    register_dataset,
    submit_task,
    task_jobs,
    task_params,
    wait_task,
)
from tests.server_support import token_channel

pytest_plugins = ["tests.jedi_fixtures"]
J = job_pb2.Job


def assert_each_input_once(jobs: list[job_pb2.Job], expected: list[str]) -> None:
    finished = collections.Counter(lfn for j in jobs if j.state == J.STATE_FINISHED for lfn in inputs_of(j))
    assert sorted(finished) == sorted(expected), "some input was never processed"
    twice = [lfn for lfn, n in finished.items() if n > 1]
    assert not twice, f"processed twice: {twice}"


def test_sigkill_mid_task_then_restart_completes_it_exactly_once(  # type: ignore[no-untyped-def]
    jedi, tasks_stub, datasets_stub, jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    lfns = register_dataset(datasets_stub, "crash.in", storage_dir, 24)
    task = submit_task(tasks_stub, task_params("crash", ["crash.in"], "crash.out",
                                               "sleep 0.3; cat ${IN} > ${OUT}", scout_jobs=2))
    start_pilot()
    start_pilot()
    wait_task(tasks_stub, task.task_id, lambda t: t.progress.files_finished >= 6, 90, "6 files done")
    jedi.kill()
    time.sleep(3)  # jobs go on ending while JEDI is away; their events wait in the server's log
    jedi.start()
    task = wait_task(tasks_stub, task.task_id, timeout=120)
    assert task.state == T.STATE_DONE, history_text(task)
    jobs = task_jobs(jobs_stub, task.task_id)
    assert len(jobs) == 24 and {j.state for j in jobs} == {J.STATE_FINISHED}
    assert_each_input_once(jobs, lfns)
    outputs = dataset_files(datasets_stub, "crash.out")
    assert len(outputs) == 24 == len({f.lfn for f in outputs})
    assert task.progress.job_counts == {"finished": 24}


def test_crash_between_submit_and_record_creates_no_duplicate(  # type: ignore[no-untyped-def]
    server, database_url: str, jobs_stub, local_queue, storage_dir: Path, start_pilot, tmp_path: Path, identity
) -> None:
    # JEDI's first steps done here, in-process, up to submitting a batch whose answer is "lost".
    engine = make_engine(database_url)
    datasets, tasks = DatasetStore(engine), TaskStore(engine)
    refining, steps = RefineStore(engine), GenerationStore(engine)
    specs = []
    for i in range(7):
        data = f"chunk {i}\n".encode()
        (storage_dir / "user.alice").mkdir(exist_ok=True)
        (storage_dir / "user.alice" / f"lost.{i}").write_bytes(data)
        specs.append(FileSpec(f"lost.{i}", len(data), adler32_of(data), 1, ["local"], "user.alice"))
    datasets.register("lost.in", "alice", "user.alice", specs)
    params = task_params("lost", ["lost.in"], "lost.out", "cat ${IN} > ${OUT}", scout_jobs=0)
    settings = JediSettings(server_address=server.address)
    task_id = tasks.submit(spec_from_params(params, "alice", settings), params_to_dict(params)).task.task_id
    assert refining.refine(task_id) == "defined" and refining.feed(task_id) == "ready"

    async def submit_and_crash() -> list[int]:
        jedi_credentials = ClientCredentialsToken(identity.issuer, "panda-jedi", identity.secrets["panda-jedi"])
        client = ServerCalls(ConnectConfig(server.address, tokens=jedi_credentials))
        try:
            plan = steps.plan_jobs(task_id, await client.list_queues(), batch_size=4, pending_retry=1,
                                   jobs_per_point=100)
            assert plan.batches == [1, 2] and plan.jobs == 7
            request_id, rows = steps.batch(task_id, 1)
            return await client.submit_jobs([r.spec for r in rows], request_id, owner="alice", vo="panda")
        finally:
            await client.close()

    first = asyncio.run(submit_and_crash())
    engine.dispose()
    assert len(first) == 4 and len(task_jobs(jobs_stub, task_id)) == 4

    # JEDI starts: it sends both stored batches (the first one again, with its request id).
    jedi = new_jedi(server, tmp_path / "logs", **identity.robot_env("panda-jedi"))
    jedi.start()
    try:
        start_pilot()
        with token_channel(jedi.address, identity) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            task = wait_task(stub, task_id, timeout=90)
            assert task.state == T.STATE_DONE, history_text(task)
            assert get_task(stub, task_id).progress.files_finished == 7
    finally:
        jedi.stop()
    jobs = task_jobs(jobs_stub, task_id)
    assert len(jobs) == 7 and [j.job_id for j in jobs[:4]] == first
    assert_each_input_once(jobs, [f"lost.{i}" for i in range(7)])
    assert "Traceback" not in jedi.log()

