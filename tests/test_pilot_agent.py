"""The pilot's own logic without a server: what it says in Hello, how it treats acks and
commands, its command line and error table, and a real run against a closed port."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2, status_pb2

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2
from pilot_agent import error_codes
from pilot_agent.agent import Pilot
from pilot_agent.cli import add_arguments, config_from_args
from pilot_agent.config import PilotConfig
from pilot_agent.departure import EXIT_FAILURE
from pilot_agent.stream import OpenStream, PendingFinal

pytestmark = pytest.mark.timeout(30)

Job = job_pb2.Job


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_pilot(tmp_path: Path, **overrides: object) -> Pilot:
    config = PilotConfig(queue="local", server=f"127.0.0.1:{closed_port()}", workdir=tmp_path / "work")
    for name, value in overrides.items():
        setattr(config, name, value)
    return Pilot(config)


def test_hello_says_who_and_what(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    pilot = make_pilot(tmp_path, cores=3, memory_mb=1234, lifetime=600.0, worker_id="w-1")
    hello = pilot.hello()
    assert hello.pilot_id == pilot.pilot_id and hello.pilot_id.startswith(socket.gethostname())
    assert (hello.queue, hello.node, hello.worker_id) == ("local", socket.gethostname(), "w-1")
    assert hello.resources.cores == 3 and hello.resources.memory_mb == 1234
    assert hello.resources.disk_mb > 0  # measured free space of the work dir
    assert 590 <= hello.resources.walltime_seconds <= 600
    assert hello.version and not hello.held_jobs
    # Unique per process, and kept: a second Hello (a reconnect) says the same id.
    assert pilot.hello().pilot_id == hello.pilot_id != make_pilot(tmp_path).pilot_id


def test_held_jobs_and_refused_ack(tmp_path: Path) -> None:
    pilot = make_pilot(tmp_path)
    pilot._on_jobs(dispatch_pb2.JobAssignments(jobs=[Job(job_id=5, attempt=1), Job(job_id=6, attempt=3)]))
    assert [(h.job_id, h.attempt) for h in pilot.hello().held_jobs] == [(5, 1), (6, 3)]
    # The same job pushed twice is held once.
    pilot._on_jobs(dispatch_pb2.JobAssignments(jobs=[Job(job_id=5, attempt=1)]))
    assert len(pilot.hello().held_jobs) == 2

    refused = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="stale attempt")
    pilot._on_ack(dispatch_pb2.UpdateAck(seq=9, job_id=6, attempt=3, status=refused))
    assert [(h.job_id, h.attempt) for h in pilot.hello().held_jobs] == [(5, 1)]


def test_kill_of_a_job_not_started_is_reported_cancelled_until_acked(tmp_path: Path) -> None:
    pilot = make_pilot(tmp_path)
    pilot._on_jobs(dispatch_pb2.JobAssignments(jobs=[Job(job_id=5, attempt=2)]))
    pilot._on_command(dispatch_pb2.Command(job_id=5, attempt=2, kind=dispatch_pb2.Command.KIND_KILL, reason="user"))
    final = pilot._jobs.unacknowledged[(5, 2)].update
    assert final.state == Job.STATE_CANCELLED and final.error_code == error_codes.PANDAKILL.code
    assert "user" in final.error_diag
    # Still held (the final is not acknowledged), then released by the ack.
    assert [(h.job_id, h.attempt) for h in pilot.hello().held_jobs] == [(5, 2)]
    ok = status_pb2.Status(code=code_pb2.OK)
    pilot._on_ack(dispatch_pb2.UpdateAck(seq=3, job_id=5, attempt=2, status=ok, state=Job.STATE_CANCELLED))
    assert not pilot._jobs.unacknowledged and not pilot.hello().held_jobs


class _ServerSays:
    """A Connect call whose server sends `messages`, then ends the stream."""

    def __init__(self, *messages: dispatch_pb2.ConnectResponse) -> None:
        self._messages = list(messages)

    async def read(self) -> dispatch_pb2.ConnectResponse | object:
        return self._messages.pop(0) if self._messages else grpc.aio.EOF


def test_a_final_update_goes_as_a_batch_of_one_and_an_ack_batch_of_one_releases_it(tmp_path: Path) -> None:
    pilot = make_pilot(tmp_path)
    stream = OpenStream(_ServerSays())  # type: ignore[arg-type]
    pilot._stream = stream
    final = dispatch_pb2.JobUpdate(job_id=5, attempt=2, state=Job.STATE_FINISHED)
    pilot._deliver_final(final)
    sent = stream.outbox.get_nowait()
    assert sent is not None and sent.WhichOneof("message") == "job_updates"
    assert list(sent.job_updates.updates) == [final] and not sent.job_updates.HasField("request_jobs")
    assert list(pilot._jobs.unacknowledged) == [(5, 2)]

    ok = status_pb2.Status(code=code_pb2.OK)
    ack = dispatch_pb2.UpdateAck(seq=sent.seq, job_id=5, attempt=2, status=ok, state=Job.STATE_FINISHED)
    reply = dispatch_pb2.ConnectResponse(update_acks=dispatch_pb2.UpdateAcks(acks=[ack]))
    asyncio.run(pilot._read_loop(_ServerSays(reply)))  # type: ignore[arg-type]
    assert not pilot._jobs.unacknowledged


def test_soft_kill_stops_asking(tmp_path: Path) -> None:
    pilot = make_pilot(tmp_path)
    assert pilot._exit_reason() is None
    pilot._on_command(dispatch_pb2.Command(kind=dispatch_pb2.Command.KIND_SOFT_KILL))
    assert pilot._exit_reason() == "soft kill from the server"
    assert not pilot._wants_work()


def test_unreachable_server_retries_until_idle_then_exits(tmp_path: Path) -> None:
    pilot = make_pilot(tmp_path, idle_timeout=2.0)
    started = time.monotonic()
    code = asyncio.run(pilot.run())
    assert code == EXIT_FAILURE  # it never reached the server
    assert 1.9 < time.monotonic() - started < 8


def test_sigterm_while_idle_exits_with_128_plus_signal(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pilot_agent",
            "--queue",
            "local",
            "--server",
            f"127.0.0.1:{closed_port()}",
            "--workdir",
            str(workdir),
            "--idle-timeout",
            "60",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Signal once the pilot says it started (its handlers are in place by then), not after a
    # guessed delay: a slow start would otherwise meet Python's default SIGTERM.
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if " starting: queue " in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=20)
    stderr = "".join(seen) + rest
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "received SIGTERM" in stderr
    # One line per event, naming the pilot.
    assert all(" pilot=" in line for line in stderr.strip().splitlines())


def test_cli_options_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANDA_SERVER", "10.1.2.3:4567")
    monkeypatch.setenv("PANDA_WORKER_ID", "worker-9")
    monkeypatch.setenv("PANDA_DATA_DIR", str(tmp_path / "data"))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--queue", "q1", "--max-jobs", "2", "--lifetime", "100"]))
    assert (config.queue, config.server, config.worker_id) == ("q1", "10.1.2.3:4567", "worker-9")
    assert (config.max_jobs, config.lifetime, config.idle_timeout, config.looping_timeout) == (2, 100, 300, 7200)
    assert config.heartbeat_interval == 0  # the server's
    assert config.workdir.is_dir() and config.workdir.parent == tmp_path / "data" / "pilots"
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --queue is required
    with pytest.raises(SystemExit):
        parser.parse_args(["--queue", "q", "--idle-timeout", "-1"])


@pytest.mark.parametrize("module", ["pilot_agent.error_codes", "panda_runtime.contracts.error_codes"])
def test_error_table_is_printed_as_markdown_as_the_readme_has_it(module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0] == "| code | name | meaning | used when | set by |"
    assert len(lines) == 2 + len(error_codes.ALL)
    for code in (1099, 1137, 1144, 1150, 1165, 1171, 1172, 1200, 1201, 1212, 1213, 1235, 1301, 1305, 1331):
        assert any(line.startswith(f"| {code} |") and line.endswith("| pilot |") for line in lines), code
    for code in (100, 102, 103, 110):
        assert any(line.startswith(f"| {code} |") and line.endswith("| server |") for line in lines), code
    assert out in (Path(__file__).resolve().parent.parent / "README.md").read_text(), "README's table is stale"
    assert error_codes.signal_error(signal.SIGTERM).code == 1201
    assert error_codes.signal_error(signal.SIGHUP).code == 1200


def test_an_unacknowledged_final_is_resent_with_a_backoff() -> None:
    pending = PendingFinal(dispatch_pb2.JobUpdate(job_id=5, attempt=1, state=Job.STATE_FINISHED))
    waits = []
    for _ in range(8):
        pending.sent(100.0, longest_wait=1800.0)
        waits.append(pending.resend_at - 100.0)
    for wait, nominal in zip(waits, [1, 2, 4, 8, 16, 30, 30, 30], strict=True):
        assert 0.8 * nominal <= wait <= 1.2 * nominal
    # Never less often than the heartbeat interval; and from 1 s again on a new stream.
    pending.sent(100.0, longest_wait=3.0)
    assert pending.resend_at - 100.0 <= 1.2 * 3
    pending.new_stream()
    pending.sent(100.0, longest_wait=1800.0)
    assert pending.resend_at - 100.0 <= 1.2


def test_the_pilot_takes_the_id_the_server_issues_and_resumes_it_on_reconnect(tmp_path: Path) -> None:
    pilot = make_pilot(tmp_path)
    suggested = pilot.hello()
    assert suggested.pilot_id == pilot.pilot_id and suggested.resume_secret == ""
    pilot._take_identity(dispatch_pb2.Welcome(pilot_id=f"{suggested.pilot_id}-1a2b3c4d", resume_secret="s" * 43))
    again = pilot.hello()
    assert (again.pilot_id, again.resume_secret) == (f"{suggested.pilot_id}-1a2b3c4d", "s" * 43)
    # A server that issues no ids leaves the pilot as it was.
    pilot._take_identity(dispatch_pb2.Welcome())
    assert pilot.hello().pilot_id == again.pilot_id
