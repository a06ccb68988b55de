"""JEDI end to end: real server, real JEDI process, real pilots and payloads, on SQLite and
PostgreSQL. A task is split, scouted, run, retried file by file, and ends in the state
PanDA gives it; its output dataset lists what the jobs wrote."""

from __future__ import annotations

import time
from pathlib import Path

from panda.jedi.v1 import dataset_pb2, task_pb2, task_service_pb2
from panda.server.v1 import job_pb2
from tests.jedi_support import (
    T,
    adler32_of,
    dataset_files,
    history_text,
    inputs_of,
    register_dataset,
    submit_task,
    task_jobs,
    task_params,
    wait_task,
)

pytest_plugins = ["tests.jedi_fixtures"]
J = job_pb2.Job
FS = dataset_pb2.TaskFileState


def test_hundred_files_ten_per_job_scouts_first_then_done(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    register_dataset(datasets_stub, "mc.evgen.100", storage_dir, 100, events=50)
    params = task_params("mc.simul", ["mc.evgen.100"], "mc.simul.out",
                         "cat ${IN} > ${OUT} && echo ${SKIP_EVENTS} ${MAX_EVENTS} >> ${OUT}",
                         split_rule=task_pb2.SplitRule(files_per_job=10), scout_jobs=2, max_attempts=2)
    task = submit_task(tasks_stub, params)
    assert task.state == T.STATE_REGISTERED and task.params.task_name == "mc.simul"
    start_pilot()
    start_pilot()
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_DONE, history_text(task)
    assert (task.progress.files_total, task.progress.files_finished) == (100, 100)
    assert task.progress.job_counts == {"finished": 10}

    # Scouts ran first, alone; the others were generated once they ended, with the scouts' requests.
    states = [e.state for e in task.history]
    for earlier, later in [(T.STATE_READY, T.STATE_SCOUTING), (T.STATE_SCOUTING, T.STATE_SCOUTED),
                           (T.STATE_SCOUTED, T.STATE_RUNNING), (T.STATE_RUNNING, T.STATE_DONE)]:
        assert states.index(earlier) < states.index(later), history_text(task)
    assert task.scouts.jobs == 2 and task.scouts.succeeded == 2 and task.scouts.applied
    jobs = task_jobs(jobs_stub, task.task_id)
    assert len(jobs) == 10
    scouts = [j for j in jobs if j.label.endswith("(scout)")]
    rest = [j for j in jobs if not j.label.endswith("(scout)")]
    assert len(scouts) == 2
    last_scout_end = max(j.end_time.ToNanoseconds() for j in scouts)
    assert all(j.create_time.ToNanoseconds() >= last_scout_end for j in rest)
    assert all(j.resources.memory_mb == task.job_resources.memory_mb for j in rest)
    assert all(j.resources.walltime_seconds == task.job_resources.walltime_seconds for j in rest)
    assert sorted(lfn for j in jobs for lfn in inputs_of(j)) == [f"mc.evgen.100.{i:04d}.dat" for i in range(100)]

    # The output dataset: one file per job, with the size and adler32 of what is on the storage element.
    outputs = dataset_files(datasets_stub, "mc.simul.out")
    assert len(outputs) == 10 and task.progress.output_files == 10
    # In the task owner's scope, read from the input dataset's (the admin's).
    assert {f.scope for f in outputs} == {"user.alice"}
    assert {f.scope for j in jobs for f in j.files if f.kind == job_pb2.JobFile.KIND_INPUT} == {"user.admin"}
    for f in outputs:
        data = (storage_dir / f.scope / f.lfn).read_bytes()
        assert (f.size_bytes, f.adler32) == (len(data), adler32_of(data))
        assert f.lfn.startswith("mc.simul.out._0000") and f.job_id
        assert data.endswith(b"0 500\n")  # ${SKIP_EVENTS} ${MAX_EVENTS}: 10 files of 50 events
    assert len({f.lfn for f in outputs}) == 10

    inputs = dataset_files(datasets_stub, "mc.evgen.100", task_id=task.task_id)
    assert {f.task_state.status for f in inputs} == {FS.STATUS_FINISHED}
    assert {f.task_state.attempts for f in inputs} == {1}


def test_failing_files_are_retried_one_per_job_and_fail_alone(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    bad = {4, 9}
    register_dataset(datasets_stub, "data.raw", storage_dir, 12,
                     content=lambda i: b"BAD\n" if i in bad else f"good {i}\n".encode())
    params = task_params("reco", ["data.raw"], "data.reco",
                         "for f in ${IN}; do if grep -q BAD $f; then echo corrupt $f >&2; exit 3; fi; done; "
                         "cat ${IN} > ${OUT}",
                         split_rule=task_pb2.SplitRule(files_per_job=3), scout_jobs=0, max_attempts=2)
    task = submit_task(tasks_stub, params)
    start_pilot()
    start_pilot()
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_FINISHED, history_text(task)
    assert (task.progress.files_finished, task.progress.files_failed) == (10, 2)
    files = {f.lfn: f.task_state for f in dataset_files(datasets_stub, "data.raw", task_id=task.task_id)}
    failed = sorted(lfn for lfn, s in files.items() if s.status == FS.STATUS_FAILED)
    assert failed == ["data.raw.0004.dat", "data.raw.0009.dat"]
    for lfn in failed:
        assert files[lfn].attempts == 2 == files[lfn].max_attempts
        assert files[lfn].error_code == 1305 and files[lfn].error_diag
    # The two jobs with a bad file failed; their six files were retried one per job.
    jobs = task_jobs(jobs_stub, task.task_id)
    assert len(jobs) == 4 + 6
    assert sum(1 for j in jobs if j.state == J.STATE_FAILED) == 4
    retries = jobs[4:]
    assert all(len(inputs_of(j)) == 1 for j in retries)
    assert sorted(inputs_of(j)[0] for j in retries) == sorted(
        f"data.raw.{i:04d}.dat" for i in (3, 4, 5, 9, 10, 11))
    assert all(j.max_attempts == 1 for j in jobs)
    outputs = dataset_files(datasets_stub, "data.reco")
    assert len(outputs) == 2 + 4  # two good jobs of three files, four good retries
    assert len({f.lfn for f in outputs}) == len(outputs)


def test_no_scout_succeeding_breaks_the_task(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    register_dataset(datasets_stub, "broken.in", storage_dir, 6)
    task = submit_task(tasks_stub, task_params("hopeless", ["broken.in"], "hopeless.out", "exit 7", scout_jobs=2))
    start_pilot()
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_BROKEN, history_text(task)
    assert task.state_reason.startswith("no scout succeeded: 2 scout job(s) failed; last: error 1305")
    assert (task.scouts.jobs, task.scouts.failed, task.scouts.succeeded) == (2, 2, 0)
    assert len(task_jobs(jobs_stub, task.task_id)) == 2


def test_all_files_failing_ends_failed(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    register_dataset(datasets_stub, "nogood.in", storage_dir, 3)
    task = submit_task(tasks_stub, task_params("nogood", ["nogood.in"], "nogood.out", "exit 1", scout_jobs=0,
                                               max_attempts=1, max_failure_rate=1.0))
    start_pilot()
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_FAILED, history_text(task)
    assert (task.progress.files_failed, task.progress.output_files) == (3, 0)


def test_too_many_failures_exhaust_the_task_until_finished(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    register_dataset(datasets_stub, "flaky.raw", storage_dir, 12)
    task = submit_task(tasks_stub, task_params("doomed", ["flaky.raw"], "doomed.out", "exit 2", scout_jobs=0,
                                               max_attempts=3, max_failure_rate=0.3))
    start_pilot()
    start_pilot()
    task = wait_task(tasks_stub, task.task_id, lambda t: t.state == T.STATE_EXHAUSTED, 90, "exhausted")
    assert "jobs failed" in task.state_reason and "> 30%" in task.state_reason
    # No new jobs while exhausted: what was submitted ends, nothing more comes.
    task = wait_task(tasks_stub, task.task_id, lambda t: set(t.progress.job_counts) == {"failed"}, 60,
                     "every job ended")
    count = len(task_jobs(jobs_stub, task.task_id))
    time.sleep(1.5)
    assert len(task_jobs(jobs_stub, task.task_id)) == count
    tasks_stub.FinishTask(task_service_pb2.FinishTaskRequest(task_id=task.task_id), timeout=10)
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_FINISHED, history_text(task)
    assert task.progress.files_finished == 0
    assert task.progress.files_cancelled + task.progress.files_failed == 12
