"""Brokerage over the server's queues, end to end: only online queues that take the task's
resources get jobs; data locality and the load weigh among them; fair share between users."""

from __future__ import annotations

from pathlib import Path

from panda.jedi.v1 import task_pb2
from panda.server.v1 import job_service_pb2, queue_pb2
from tests.jedi_support import (
    T,
    history_text,
    make_queue,
    register_dataset,
    submit_task,
    task_jobs,
    task_params,
    wait_task,
)
from tests.server_support import ensure_storage_element

pytest_plugins = ["tests.jedi_fixtures"]


def test_offline_and_too_small_queues_never_get_a_job(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, queues_stub, start_pilot, tmp_path: Path
) -> None:
    se = tmp_path / "se"
    make_queue(queues_stub, "good", se / "good")
    make_queue(queues_stub, "off", se / "off", status=queue_pb2.Queue.STATUS_OFFLINE)
    make_queue(queues_stub, "small", se / "small", max_memory_mb=500)
    # The data sits on the small queue's storage element: locality alone would pick it.
    register_dataset(datasets_stub, "big.in", se / "small", 8)
    task = submit_task(tasks_stub, task_params("big", ["big.in"], "big.out", "cat ${IN} > ${OUT}", scout_jobs=0,
                                               resources={"memory_mb": 1000}))
    start_pilot("good")
    start_pilot("small")
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_DONE, history_text(task)
    assert {j.queue for j in task_jobs(jobs_stub, task.task_id)} == {"good"}
    for queue in ("off", "small"):
        listed = jobs_stub.ListJobs(job_service_pb2.ListJobsRequest(filter=f'queue = "{queue}"'), timeout=10)
        assert listed.total_size == 0


def test_data_locality_picks_the_queue_holding_the_inputs(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, queues_stub, start_pilot, tmp_path: Path
) -> None:
    se = tmp_path / "se"
    make_queue(queues_stub, "site-a", se / "a")
    make_queue(queues_stub, "site-b", se / "b")
    register_dataset(datasets_stub, "at.b", se / "b", 6)
    task = submit_task(tasks_stub, task_params("local", ["at.b"], "local.out", "cat ${IN} > ${OUT}", scout_jobs=0))
    start_pilot("site-a")
    start_pilot("site-b")
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_DONE, history_text(task)
    jobs = task_jobs(jobs_stub, task.task_id)
    assert {j.queue for j in jobs} == {"site-b"}
    assert all(f.storage_element == "b" for j in jobs for f in j.files)


def test_jobs_go_only_to_queues_that_may_read_their_inputs(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, queues_stub, start_pilot, tmp_path: Path
) -> None:
    se = tmp_path / "se"
    # The data is on `archive`, which serves queue `reader` only; neither queue's own element holds it.
    ensure_storage_element(queues_stub.storage, se / "archive", queues=["reader"])
    make_queue(queues_stub, "other", se / "other-se")
    make_queue(queues_stub, "reader", se / "reader-se")
    register_dataset(datasets_stub, "fenced.in", se / "archive", 6)
    task = submit_task(tasks_stub, task_params("fenced", ["fenced.in"], "fenced.out", "cat ${IN} > ${OUT}",
                                               scout_jobs=0))
    start_pilot("reader")
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_DONE, history_text(task)
    jobs = task_jobs(jobs_stub, task.task_id)
    assert len(jobs) == 6 and {j.queue for j in jobs} == {"reader"}
    assert {f.storage_element for j in jobs for f in j.files if f.kind == f.KIND_INPUT} == {"archive"}
    # Allowed on `other` alone: no job, pending with the reason, until the data may be read there.
    stuck = submit_task(tasks_stub, task_params("stuck", ["fenced.in"], "stuck.out", "true", scout_jobs=0,
                                                queues=["other"]))
    stuck = wait_task(tasks_stub, stuck.task_id, lambda t: t.state == T.STATE_PENDING, 30, "pending")
    assert "no candidate queue may read user.admin:fenced.in.0000.dat (on archive)" in stuck.state_reason
    assert task_jobs(jobs_stub, stuck.task_id) == []


def test_a_busy_users_next_jobs_go_behind_another_users(  # type: ignore[no-untyped-def]
    jedi, tasks_stub, datasets_stub, jobs_stub, queues_stub, tmp_path: Path
) -> None:
    jedi.stop()
    jedi.env["PANDA_JEDI_FAIR_SHARE_JOBS_PER_POINT"] = "10"
    jedi.start()
    make_queue(queues_stub, "busy", tmp_path / "se" / "busy")
    register_dataset(datasets_stub, "many.in", tmp_path / "se" / "busy", 30)
    register_dataset(datasets_stub, "few.in", tmp_path / "se" / "busy", 3)
    heavy = submit_task(tasks_stub, task_params("heavy", ["many.in"], "heavy.out", "true", scout_jobs=0,
                                                priority=10))
    wait_task(tasks_stub, heavy.task_id, lambda t: t.progress.job_counts.get("activated", 0) == 30, 30, "30 jobs")
    params = task_params("light", ["few.in"], "light.out", "true", scout_jobs=0, priority=10)
    params.owner = "bob"
    light = submit_task(tasks_stub, params)
    wait_task(tasks_stub, light.task_id, lambda t: t.progress.job_counts.get("activated", 0) == 3, 30, "3 jobs")
    alice = [j.priority for j in task_jobs(jobs_stub, heavy.task_id)]
    bob = [j.priority for j in task_jobs(jobs_stub, light.task_id)]
    assert alice[:10] == [10] * 10 and alice[-10:] == [8] * 10
    assert bob == [10, 10, 10]


def test_split_by_events_cuts_files_and_passes_the_ranges(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    register_dataset(datasets_stub, "evts", storage_dir, 3, events=150)
    task = submit_task(tasks_stub, task_params(
        "evsplit", ["evts"], "evsplit.out", "echo ${IN_CSV} ${SKIP_EVENTS} ${MAX_EVENTS} > ${OUT}",
        split_rule=task_pb2.SplitRule(events_per_job=100), scout_jobs=0))
    start_pilot()
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_DONE, history_text(task)
    outputs = sorted((storage_dir / "user.alice" / f"evsplit.out._{i:06d}.out").read_text().strip()
                     for i in range(1, 6))
    assert outputs == sorted([
        "evts.0000.dat 0 100", "evts.0000.dat,evts.0001.dat 100 100", "evts.0001.dat 50 100",
        "evts.0002.dat 0 100", "evts.0002.dat 100 50",
    ])
    assert task.progress.files_finished == 3 and len(task_jobs(jobs_stub, task.task_id)) == 5
