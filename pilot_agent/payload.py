"""Running one payload: a command in its own process group and work dir, watched until it ends.

The payload runs without a shell, under a keeper (`pilot_agent/keeper.py`) that makes sure none
of its processes outlives the pilot, even one killed with SIGKILL; stdout and stderr go to files
in the work dir (kept), and a monitor loop enforces the job's walltime and memory limits and the
looping-job timeout. A kill (for a limit, a server command or the pilot's own shutdown) is
SIGTERM to the whole group, then SIGKILL after a grace period; the first reason given is the one
reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from panda_runtime.settings import credential_variables
from pilot_agent import error_codes
from pilot_agent.error_codes import ErrorCode
from pilot_agent.keeping import KeeperStatus, keeper_command
from pilot_agent.monitor import MIB, ProcessTreeMonitor, Usage, group_members, latest_mtime

__all__ = [
    "LEFTOVER_GRACE_SECONDS", "LOG_TAIL_BYTES", "LOG_TAIL_LINES", "OOM_RSS_SHARE", "STDERR_NAME", "STDOUT_NAME",
    "Payload", "PayloadLimits", "PayloadResult", "payload_environment", "read_log_tail",
]

log = logging.getLogger(__name__)

STDOUT_NAME = "payload.stdout"
STDERR_NAME = "payload.stderr"
LOG_TAIL_LINES = 50
LOG_TAIL_BYTES = 16 * 1024

# A SIGKILL we did not send, with RSS at least this share of the limit, is taken for the OOM killer.
OOM_RSS_SHARE = 0.9
# How long processes left behind by a payload that exited get between SIGTERM and SIGKILL.
LEFTOVER_GRACE_SECONDS = 2.0
# The pilot's own credentials (its token, its robot's secret, its keys, where they are): never
# in the payload's environment.
PILOT_CREDENTIALS = credential_variables()


@dataclass(frozen=True)
class PayloadLimits:
    """What the payload may use; 0 means no limit."""

    walltime_seconds: float = 0
    memory_mb: int = 0
    looping_timeout: float = 7200


@dataclass(frozen=True)
class PayloadResult:
    # Exit status as a shell shows it: the code, or 128 + N when signal N ended the payload.
    exit_code: int
    signal: int
    error: ErrorCode | None
    error_diag: str
    max_rss_mb: int
    cpu_seconds: float
    wall_seconds: float
    log_tail: str

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_code(self) -> int:
        return self.error.code if self.error else 0


def payload_environment(
    job_id: int,
    attempt: int,
    workdir: Path,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The payload's environment: the pilot's without its credentials (PILOT_CREDENTIALS), then
    the job's, then PANDA_JOB_ID/ATTEMPT/WORKDIR."""
    env = {name: value for name, value in (os.environ if base is None else base).items()
           if name not in PILOT_CREDENTIALS}
    env.update(extra or {})
    env["PANDA_JOB_ID"] = str(job_id)
    env["PANDA_ATTEMPT"] = str(attempt)
    env["PANDA_WORKDIR"] = str(workdir)
    return env


def _tail_of_file(path: Path, max_lines: int, max_bytes: int) -> str:
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - max_bytes))
            data = stream.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-max_lines:])


def read_log_tail(workdir: Path, max_lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES) -> str:
    """The last lines of payload.stdout and payload.stderr (stderr last), at most max_bytes of UTF-8."""
    parts = []
    for name in (STDOUT_NAME, STDERR_NAME):
        text = _tail_of_file(workdir / name, max_lines, max_bytes)
        if text:
            parts.append(f"==> {name} <==\n{text}")
    # A payload may print NUL bytes; no text the server stores has them.
    tail = "\n".join(parts).replace("\x00", "\ufffd")
    encoded = tail.encode("utf-8")
    if len(encoded) > max_bytes:
        # Keep the end: the last words of stderr are the ones that explain a failure.
        tail = encoded[-max_bytes:].decode("utf-8", errors="ignore")
    return tail


class Payload:
    """One payload run. `run()` once; `kill()` from any task; `usage()` for heartbeats."""

    def __init__(
        self,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        limits: PayloadLimits | None = None,
        *,
        monitor_interval: float = 5.0,
        kill_grace: float = 10.0,
        poll_interval: float = 0.1,
    ) -> None:
        self.argv = list(argv)
        self.workdir = workdir
        self.env = dict(env)
        self.limits = limits or PayloadLimits()
        self.monitor_interval = monitor_interval
        self.kill_grace = kill_grace
        self.poll_interval = poll_interval
        self._keeper: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None  # the payload's, and its process group's
        self._status: KeeperStatus | None = None
        self._monitor: ProcessTreeMonitor | None = None
        self._kill_reason: tuple[ErrorCode, str] | None = None
        self._kill_task: asyncio.Task[None] | None = None
        self._exited = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def kill_reason(self) -> tuple[ErrorCode, str] | None:
        return self._kill_reason

    def usage(self) -> Usage:
        return self._monitor.usage() if self._monitor else Usage(0, 0, 0.0)

    def log_tail(self) -> str:
        return read_log_tail(self.workdir)

    def kill(self, error: ErrorCode, diag: str) -> None:
        """Stop the payload (SIGTERM, then SIGKILL after the grace period) and report `error`."""
        if self._kill_reason is None:
            self._kill_reason = (error, diag)
            log.warning("killing payload: %s (%d %s)", diag, error.code, error.name)
        if self._pid is not None and not self._exited.is_set() and self._kill_task is None:
            self._kill_task = asyncio.get_running_loop().create_task(self._terminate())

    def _signal_tree(self, signum: int) -> None:
        assert self._pid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signum)
        # Processes that left the group (setsid) but are still ours by descent.
        if self._monitor is not None:
            for process in self._monitor.processes():
                with contextlib.suppress(psutil.Error):
                    process.send_signal(signum)

    async def _terminate(self) -> None:
        self._signal_tree(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._exited.wait(), self.kill_grace)
        except TimeoutError:
            log.warning("payload still alive %.0f s after SIGTERM: SIGKILL", self.kill_grace)
            self._signal_tree(signal.SIGKILL)

    def _spawn_failure(self, diag: str, exit_code: int) -> PayloadResult:
        with contextlib.suppress(OSError), open(self.workdir / STDERR_NAME, "a", encoding="utf-8") as stream:
            stream.write(f"pilot: {diag}\n")
        log.error("payload did not start: %s", diag)
        return PayloadResult(
            exit_code=exit_code,
            signal=0,
            error=error_codes.PAYLOADEXECUTIONFAILURE,
            error_diag=diag,
            max_rss_mb=0,
            cpu_seconds=0.0,
            wall_seconds=0.0,
            log_tail=read_log_tail(self.workdir),
        )

    def _exec_failure(self, error_number: int) -> PayloadResult:
        name = self.argv[0]
        if error_number == errno.ENOENT:
            return self._spawn_failure(f"command not found: {name!r}", 127)
        if error_number in (errno.EACCES, errno.EPERM):
            return self._spawn_failure(f"command not executable: {name!r} ({os.strerror(error_number)})", 126)
        return self._spawn_failure(f"cannot execute {name!r}: {os.strerror(error_number)}", 126)

    def _start(self) -> PayloadResult | None:
        """Start the keeper, which starts the payload; a result only when it could not start.
        Called on the thread that runs the event loop: the keeper's parent-death signal comes
        when the thread that started it ends."""
        if not self.argv or not self.argv[0]:
            return self._spawn_failure("job has no command", 127)
        status_fd, keeper_end = os.pipe()
        with open(self.workdir / STDOUT_NAME, "wb") as out, open(self.workdir / STDERR_NAME, "wb") as err:
            try:
                self._keeper = subprocess.Popen(
                    keeper_command(keeper_end, self.env, self.argv),
                    cwd=self.workdir,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=(keeper_end,),
                )
            except OSError as exc:
                os.close(status_fd)
                return self._spawn_failure(f"cannot start the payload in {self.workdir}: {exc.strerror or exc}", 126)
            finally:
                os.close(keeper_end)
        self._status = KeeperStatus(status_fd)
        return None

    async def _payload_started(self) -> int | None:
        """The payload's pid, once the keeper has started it (None if the keeper ended first)."""
        assert self._status is not None
        while (pid := self._status.said("started")) is None:
            if self._status.ended:
                return None
            await self._status.change(self.poll_interval)
        log.info("payload started: pid %d, command %s", pid, self.argv)
        return pid

    async def run(self) -> PayloadResult:
        if self._kill_reason is not None:
            error, diag = self._kill_reason
            return PayloadResult(0, 0, error, diag, 0, 0.0, 0.0, "")
        started = time.monotonic()
        failure = self._start()
        if failure is not None:
            return failure
        assert self._status is not None
        try:
            return await self._run_started(started, self._status)
        finally:
            self._status.close()

    async def _run_started(self, started: float, status_pipe: KeeperStatus) -> PayloadResult:
        try:
            self._pid = await self._payload_started()
            if self._pid is None:
                await asyncio.to_thread(self._reap_keeper)
                return self._spawn_failure("the payload's keeper ended before it started the payload", 126)
            self._monitor = ProcessTreeMonitor(self._pid)
            if self._kill_reason is not None:  # asked while the keeper was starting it
                self._kill_task = asyncio.get_running_loop().create_task(self._terminate())
            status, rusage = await self._watch(started)
        except BaseException:
            # Cancelled, or a bug in the monitor: never leave the payload running behind us.
            if self._pid is not None:
                self._signal_tree(signal.SIGKILL)
            self._reap_keeper()
            raise
        finally:
            self._exited.set()
        status_pipe.read_to_end()
        error_number = status_pipe.said("exec-failed")
        if error_number is not None:
            return self._exec_failure(error_number)
        leftovers = status_pipe.said("leftovers")
        if leftovers:
            log.info("payload left %d process(es) behind: stopped (SIGTERM, then SIGKILL)", leftovers)
        assert self._monitor is not None
        self._monitor.add_rusage(rusage)
        await self._clean_leftovers()
        wall = time.monotonic() - started
        return await self._result(status, wall)

    async def _watch(self, started: float) -> tuple[int, resource.struct_rusage]:
        """Until the keeper ends (it exits as the payload did, once nothing of it is left)."""
        assert self._keeper is not None and self._monitor is not None and self._status is not None
        process, monitor, limits, keeper = self._keeper, self._monitor, self.limits, self._status
        started_epoch = time.time()
        next_sample = time.monotonic()
        # Scanning the work dir is the costly check; PanDA does it every few minutes.
        looping_period = max(self.monitor_interval, min(60.0, limits.looping_timeout / 10))
        next_looping_check = time.monotonic() + looping_period
        while True:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                # Tell Popen it is reaped, so it never waits for a pid that may be reused.
                process.returncode = os.waitstatus_to_exitcode(status)
                return status, rusage
            now = time.monotonic()
            if limits.walltime_seconds and now - started >= limits.walltime_seconds:
                self.kill(
                    error_codes.REACHEDMAXTIME,
                    f"payload exceeded the walltime limit of {limits.walltime_seconds:g} s",
                )
            if now >= next_sample:
                next_sample = now + self.monitor_interval
                usage = await asyncio.to_thread(monitor.sample)
                if limits.memory_mb and usage.rss_bytes > limits.memory_mb * MIB:
                    self.kill(
                        error_codes.PAYLOADEXCEEDMAXMEM,
                        f"payload used {usage.rss_mb} MiB RSS, more than the limit of {limits.memory_mb} MiB",
                    )
                if limits.looping_timeout and now >= next_looping_check:
                    next_looping_check = now + looping_period
                    newest = await asyncio.to_thread(latest_mtime, self.workdir)
                    quiet = time.time() - max(newest, started_epoch)
                    if quiet >= limits.looping_timeout:
                        self.kill(
                            error_codes.LOOPINGJOB,
                            f"looping job: no file in the work dir modified for {quiet:.0f} s "
                            f"(limit {limits.looping_timeout:g} s)",
                        )
            if keeper.ended:  # its pipe closed as it exits: reapable in a moment
                await asyncio.sleep(0.001)
            else:
                await keeper.change(self.poll_interval)

    def _reap_keeper(self) -> None:
        """Wait (at most 5 s) for the keeper, which ends once the payload's processes are gone."""
        assert self._keeper is not None
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(self._keeper.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                self._keeper.returncode = os.waitstatus_to_exitcode(status)
                return
            time.sleep(0.01)

    async def _clean_leftovers(self) -> None:
        """Stop what the payload left running (background children): PanDA kills orphans. The
        keeper did already; this is for a keeper someone killed."""
        assert self._pid is not None
        if self._kill_task is not None:
            self._kill_task.cancel()
        pgid = self._pid

        def remaining() -> bool:
            return bool(group_members(pgid)) or bool(self._monitor and self._monitor.processes())

        if not await asyncio.to_thread(remaining):
            return
        if self._kill_reason is None:
            log.info("payload left processes behind: SIGTERM")
            self._signal_tree(signal.SIGTERM)
            if await self._wait_gone(remaining, LEFTOVER_GRACE_SECONDS):
                return
        self._signal_tree(signal.SIGKILL)
        if not await self._wait_gone(remaining, 5.0):
            log.error("processes of payload group %d survive SIGKILL", pgid)

    @staticmethod
    async def _wait_gone(remaining: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await asyncio.to_thread(remaining):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _result(self, status: int, wall: float) -> PayloadResult:
        assert self._monitor is not None
        code = os.waitstatus_to_exitcode(status)
        signum = -code if code < 0 else 0
        exit_code = 128 + signum if signum else code
        usage = self._monitor.usage()
        error: ErrorCode | None = None
        diag = ""
        if self._kill_reason is not None:
            error, diag = self._kill_reason
        elif signum:
            name = signal.Signals(signum).name if signum in signal.valid_signals() else str(signum)
            limit = self.limits.memory_mb * MIB
            if signum == signal.SIGKILL and limit and usage.max_rss_bytes >= OOM_RSS_SHARE * limit:
                error = error_codes.PAYLOADOUTOFMEMORY
                diag = f"payload got SIGKILL with {usage.max_rss_mb} MiB RSS near its limit (OOM killer?)"
            else:
                error = error_codes.signal_error(signum)
                diag = f"payload killed by signal {name}"
        elif code != 0:
            error = error_codes.PAYLOADEXECUTIONFAILURE
            diag = f"payload exited with code {code}"
        tail = await asyncio.to_thread(read_log_tail, self.workdir)
        log.info(
            "payload ended: exit %d, %s, max RSS %d MiB, CPU %.1f s, wall %.1f s",
            exit_code,
            f"error {error.code} {error.name}" if error else "ok",
            usage.max_rss_mb,
            usage.cpu_seconds,
            wall,
        )
        return PayloadResult(
            exit_code=exit_code,
            signal=signum,
            error=error,
            error_diag=diag,
            max_rss_mb=usage.max_rss_mb,
            cpu_seconds=round(usage.cpu_seconds, 3),
            wall_seconds=round(wall, 3),
            log_tail=tail,
        )
