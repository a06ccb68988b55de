"""One job end to end on this machine: work dir, stage-in from a POSIX SE, a real payload,
stage-out with checksums, and the updates the pilot would send."""

from __future__ import annotations

import asyncio
import sys
import tarfile
import textwrap
import zlib
from pathlib import Path

import pytest

from panda.common.v1 import resources_pb2
from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2
from pilot_agent import error_codes
from pilot_agent.job_runner import JobRunner, RunnerOptions

pytestmark = pytest.mark.timeout(30)

Job = job_pb2.Job
JobFile = job_pb2.JobFile


class Recorder:
    """Collects what the runner reports (the agent would put it on the stream)."""

    def __init__(self) -> None:
        self.updates: list[dispatch_pb2.JobUpdate] = []

    def __call__(self, update: dispatch_pb2.JobUpdate) -> None:
        self.updates.append(update)

    def states(self) -> list[int]:
        return [u.state for u in self.updates]


# Every file of these jobs is in this scope: at <se>/user.alice/<lfn>.
SCOPE = "user.alice"


@pytest.fixture
def se(tmp_path: Path) -> Path:
    root = tmp_path / "se"
    (root / SCOPE).mkdir(parents=True)
    return root


def options(tmp_path: Path, heartbeat: float = 3600, available: float = 0) -> RunnerOptions:
    return RunnerOptions(
        workdir_root=tmp_path / "work",
        heartbeat_interval=lambda: heartbeat,
        time_available=lambda: available,
        monitor_interval=0.2,
        kill_grace=1.0,
    )


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def make_job(command: list[str], files: list[JobFile] | None = None, **resources: int) -> Job:
    for file in files or []:
        file.scope = file.scope or SCOPE
    return Job(
        job_id=77,
        attempt=2,
        command=command,
        environment={"GREETING": "hi"},
        resources=resources_pb2.Resources(**resources),
        files=files or [],
    )


def run(runner: JobRunner) -> dispatch_pb2.JobUpdate | None:
    return asyncio.run(runner.run())


def test_job_with_input_output_and_log_finishes(tmp_path: Path, se: Path) -> None:
    data = b"input payload data\n" * 1000
    (se / SCOPE / "in.dat").write_bytes(data)
    url = f"file://{se}"
    job = make_job(
        python(
            """
            import os
            data = open("in.dat", "rb").read()
            open("out.dat", "wb").write(data.upper() + os.environ["GREETING"].encode())
            print("converted", len(data), "bytes")
            """
        ),
        [
            JobFile(
                lfn="in.dat",
                kind=JobFile.KIND_INPUT,
                size_bytes=len(data),
                adler32=f"{zlib.adler32(data):08x}",
                storage_element="se",
                storage_url=url,
            ),
            JobFile(lfn="out.dat", kind=JobFile.KIND_OUTPUT, storage_element="se", storage_url=url),
            JobFile(lfn="job.log.tgz", kind=JobFile.KIND_LOG, storage_element="se", storage_url=url),
        ],
    )
    sent = Recorder()
    final = run(JobRunner(job, options(tmp_path), sent))

    assert final is not None
    assert final.state == Job.STATE_FINISHED, final.error_diag
    assert (final.job_id, final.attempt, final.error_code, final.exit_code) == (77, 2, 0, 0)
    assert sent.states() == [Job.STATE_STARTING, Job.STATE_RUNNING]
    assert all(u.attempt == 2 for u in sent.updates)
    expected = data.upper() + b"hi"
    out, log_file = final.output_files
    assert (out.lfn, out.kind, out.storage_element) == ("out.dat", JobFile.KIND_OUTPUT, "se")
    assert out.size_bytes == len(expected)
    assert out.adler32 == f"{zlib.adler32(expected):08x}"
    assert (se / SCOPE / "out.dat").read_bytes() == expected
    assert log_file.kind == JobFile.KIND_LOG
    with tarfile.open(se / SCOPE / "job.log.tgz") as tar:
        assert sorted(tar.getnames()) == ["job_77_2/payload.stderr", "job_77_2/payload.stdout"]
    workdir = tmp_path / "work" / "job_77_2"
    assert (workdir / "payload.stdout").read_text() == f"converted {len(data)} bytes\n"
    assert "converted" in final.log_tail


def test_missing_input_fails_before_the_payload(tmp_path: Path, se: Path) -> None:
    job = make_job(
        python("open('ran', 'w')"),
        [JobFile(lfn="absent.dat", kind=JobFile.KIND_INPUT, storage_element="se", storage_url=f"file://{se}")],
    )
    sent = Recorder()
    final = run(JobRunner(job, options(tmp_path), sent))
    assert final is not None and final.state == Job.STATE_FAILED
    assert final.error_code == error_codes.MISSINGINPUTFILE.code
    assert "absent.dat" in final.error_diag
    assert sent.states() == [Job.STATE_STARTING]
    assert not (tmp_path / "work" / "job_77_2" / "ran").exists()


def test_file_without_storage_element_is_an_error(tmp_path: Path) -> None:
    job = make_job(python("pass"), [JobFile(lfn="in.dat", kind=JobFile.KIND_INPUT)])
    final = run(JobRunner(job, options(tmp_path), Recorder()))
    assert final is not None and final.state == Job.STATE_FAILED
    assert final.error_code == error_codes.STAGEINFAILED.code
    assert "no storage element" in final.error_diag


def test_missing_output_is_1165_and_nothing_is_registered(tmp_path: Path, se: Path) -> None:
    job = make_job(
        python("print('forgot to write it')"),
        [JobFile(lfn="out.dat", kind=JobFile.KIND_OUTPUT, storage_element="se", storage_url=f"file://{se}")],
    )
    final = run(JobRunner(job, options(tmp_path), Recorder()))
    assert final is not None and final.state == Job.STATE_FAILED
    assert final.error_code == error_codes.MISSINGOUTPUTFILE.code
    assert list(final.output_files) == []
    assert final.exit_code == 0 and "forgot to write it" in final.log_tail


def test_failed_payload_reports_and_skips_stage_out(tmp_path: Path, se: Path) -> None:
    job = make_job(
        python(
            """
            import sys
            open("out.dat", "w").write("partial")
            sys.exit("fatal: bad configuration")
            """
        ),
        [JobFile(lfn="out.dat", kind=JobFile.KIND_OUTPUT, storage_element="se", storage_url=f"file://{se}")],
    )
    final = run(JobRunner(job, options(tmp_path), Recorder()))
    assert final is not None and final.state == Job.STATE_FAILED
    assert final.error_code == error_codes.PAYLOADEXECUTIONFAILURE.code
    assert final.exit_code == 1
    assert "fatal: bad configuration" in final.log_tail
    assert not (se / SCOPE / "out.dat").exists()


def test_kill_command_cancels_with_1144(tmp_path: Path) -> None:
    job = make_job(python("import time; print('working', flush=True); time.sleep(30)"))
    runner = JobRunner(job, options(tmp_path), Recorder())

    async def scenario() -> dispatch_pb2.JobUpdate | None:
        task = asyncio.create_task(runner.run())
        while runner.state != Job.STATE_RUNNING:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        runner.kill(error_codes.PANDAKILL, "killed by the server: test", state=Job.STATE_CANCELLED)
        return await task

    final = asyncio.run(scenario())
    assert final is not None
    assert final.state == Job.STATE_CANCELLED
    assert final.error_code == 1144 and final.error_diag == "killed by the server: test"


def test_abandoned_job_reports_nothing_more(tmp_path: Path) -> None:
    job = make_job(python("import time; time.sleep(30)"))
    sent = Recorder()
    runner = JobRunner(job, options(tmp_path), sent)

    async def scenario() -> dispatch_pb2.JobUpdate | None:
        task = asyncio.create_task(runner.run())
        while runner.state != Job.STATE_RUNNING:
            await asyncio.sleep(0.05)
        runner.abandon("FAILED_PRECONDITION: stale attempt")
        return await task

    assert asyncio.run(scenario()) is None
    assert sent.states() == [Job.STATE_STARTING, Job.STATE_RUNNING]


def test_heartbeats_repeat_running_with_measurements(tmp_path: Path) -> None:
    code = """
        import time
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            pass
    """
    sent = Recorder()
    final = run(JobRunner(make_job(python(code)), options(tmp_path, heartbeat=0.4), sent))
    assert final is not None and final.state == Job.STATE_FINISHED
    heartbeats = [u for u in sent.updates if u.state == Job.STATE_RUNNING][1:]
    assert len(heartbeats) >= 2
    assert heartbeats[-1].cpu_seconds > 0.2 and heartbeats[-1].max_rss_mb > 0
    assert final.cpu_seconds >= heartbeats[-1].cpu_seconds


def test_debug_sends_the_log_tail_with_a_heartbeat(tmp_path: Path) -> None:
    job = make_job(python("import time; print('debug me', flush=True); time.sleep(1.5)"))
    sent = Recorder()
    runner = JobRunner(job, options(tmp_path), sent)

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        while not (tmp_path / "work" / "job_77_2" / "payload.stdout").exists() or runner.state != Job.STATE_RUNNING:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        runner.request_debug()
        await task

    asyncio.run(scenario())
    assert any("debug me" in u.log_tail for u in sent.updates if u.state == Job.STATE_RUNNING)


def test_pilot_lifetime_caps_the_payload(tmp_path: Path) -> None:
    job = make_job(python("import time; time.sleep(30)"), walltime_seconds=3600)
    final = run(JobRunner(job, options(tmp_path, available=1.0), Recorder()))
    assert final is not None and final.state == Job.STATE_FAILED
    assert final.error_code == error_codes.REACHEDMAXTIME.code
    assert "lifetime" in final.error_diag


def test_a_storage_element_named_by_the_job_is_not_where_the_pilot_goes(tmp_path: Path) -> None:
    # Only the server's URL counts: a job that names a directory as its element stages nothing.
    job = make_job(python("pass"), [JobFile(lfn="passwd", kind=JobFile.KIND_INPUT, storage_element="file:///etc")])
    final = run(JobRunner(job, options(tmp_path), Recorder()))
    assert final is not None and final.state == Job.STATE_FAILED
    assert final.error_code == error_codes.STAGEINFAILED.code
    assert "no storage element" in final.error_diag
    assert not (tmp_path / "work" / "job_77_2" / "passwd").exists()
