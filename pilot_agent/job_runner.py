"""One job from start to final update: work dir, stage-in, payload, stage-out.

The runner reports progress (STARTING, RUNNING, heartbeats) through a callback and returns the
final JobUpdate; delivering that update until the server acknowledges it is the agent's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2
from pilot_agent import error_codes
from pilot_agent.error_codes import ErrorCode
from pilot_agent.logs import current_job
from pilot_agent.payload import STDERR_NAME, STDOUT_NAME, Payload, PayloadLimits, PayloadResult, payload_environment
from pilot_agent.storage import StorageElement, StorageError, check_lfn, open_storage_element

__all__ = ["FINAL_STATES", "JobKey", "JobRunner", "JobState", "RunnerOptions", "State", "state_name"]

log = logging.getLogger(__name__)

State = job_pb2.Job.State
JobKey = tuple[int, int]
# A job's state as the protocol numbers it.
JobState: TypeAlias = "job_pb2.Job.State.ValueType"
FINAL_STATES = frozenset({job_pb2.Job.STATE_FINISHED, job_pb2.Job.STATE_FAILED, job_pb2.Job.STATE_CANCELLED})


def state_name(state: JobState) -> str:
    try:
        return job_pb2.Job.State.Name(state).removeprefix("STATE_")
    except ValueError:  # open enum: a value from a newer server
        return str(state)


@dataclass
class RunnerOptions:
    workdir_root: Path
    # Seconds between heartbeats, read before each one (the server's Welcome may change it).
    heartbeat_interval: Callable[[], float]
    # Seconds a payload may run at most from now on (the pilot's lifetime); 0 = no cap.
    time_available: Callable[[], float]
    looping_timeout: float = 7200
    monitor_interval: float = 5.0
    kill_grace: float = 10.0


@dataclass(frozen=True)
class _Stop:
    state: JobState
    error: ErrorCode
    diag: str


class JobRunner:
    """Runs one job. `run()` once; `kill()`, `abandon()`, `request_debug()` from other tasks."""

    def __init__(
        self, job: job_pb2.Job, options: RunnerOptions, send: Callable[[dispatch_pb2.JobUpdate], None]
    ) -> None:
        self.job = job
        self.options = options
        self._send = send
        self.state: JobState = job_pb2.Job.STATE_SENT
        self.workdir = options.workdir_root / f"job_{job.job_id}_{job.attempt}"
        self._payload: Payload | None = None
        self._stop: _Stop | None = None
        self._abandoned = False
        self._debug = asyncio.Event()

    @property
    def key(self) -> JobKey:
        return (self.job.job_id, self.job.attempt)

    # -- control from other tasks ------------------------------------------------------

    def kill(self, error: ErrorCode, diag: str, state: JobState = job_pb2.Job.STATE_FAILED) -> None:
        """Stop the job now (payload, or staging between files) and end it in `state`."""
        if self._stop is None:
            self._stop = _Stop(state, error, diag)
        if self._payload is not None:
            # Called from the stream's task: name our job in the payload's log lines (and its kill task's).
            token = current_job.set(self.job.job_id)
            try:
                self._payload.kill(error, diag)
            finally:
                current_job.reset(token)

    def abandon(self, reason: str) -> None:
        """The job is no longer ours: stop it and report nothing more."""
        log.warning("dropping job %d attempt %d: %s", self.job.job_id, self.job.attempt, reason)
        self._abandoned = True
        self.kill(error_codes.PANDAKILL, f"dropped: {reason}")

    def request_debug(self) -> None:
        """Send the log tail with a heartbeat, now."""
        self._debug.set()

    # -- updates -----------------------------------------------------------------------

    def _update(self, state: JobState, **fields: Any) -> dispatch_pb2.JobUpdate:
        return dispatch_pb2.JobUpdate(job_id=self.job.job_id, attempt=self.job.attempt, state=state, **fields)

    def progress_update(self, *, with_log_tail: bool = False) -> dispatch_pb2.JobUpdate:
        """The current state with fresh measurements: a heartbeat, or a resend after a reconnect."""
        update = self._update(self.state)
        if self._payload is not None:
            usage = self._payload.usage()
            update.max_rss_mb = usage.max_rss_mb
            update.cpu_seconds = round(usage.cpu_seconds, 3)
            if with_log_tail:
                update.log_tail = self._payload.log_tail()
        return update

    def _report(self, state: JobState) -> None:
        self.state = state
        if not self._abandoned:
            log.info("job %d is %s", self.job.job_id, state_name(state))
            self._send(self.progress_update())

    async def _heartbeats(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._debug.wait(), max(0.1, self.options.heartbeat_interval()))
            debug = self._debug.is_set()
            self._debug.clear()
            if not self._abandoned:
                self._send(self.progress_update(with_log_tail=debug))

    # -- the job -----------------------------------------------------------------------

    async def run(self) -> dispatch_pb2.JobUpdate | None:
        """Run the job; the final update, or None when the job was abandoned."""
        heartbeats = asyncio.create_task(self._heartbeats())
        try:
            final = await self._run()
        except Exception as exc:
            log.exception("pilot error while running job %d", self.job.job_id)
            if self._payload is not None:
                self._payload.kill(error_codes.UNKNOWNEXCEPTION, "pilot error")
            final = self._update(
                job_pb2.Job.STATE_FAILED,
                error_code=error_codes.UNKNOWNEXCEPTION.code,
                error_diag=f"pilot error: {type(exc).__name__}: {exc}",
            )
        finally:
            heartbeats.cancel()
        if self._abandoned:
            return None
        outcome = f" (error {final.error_code}: {final.error_diag})" if final.error_code else ""
        log.info("job %d ends %s%s", self.job.job_id, state_name(final.state), outcome)
        return final

    def _failure(
        self, error: ErrorCode, diag: str, state: JobState = job_pb2.Job.STATE_FAILED
    ) -> dispatch_pb2.JobUpdate:
        if self._stop is not None:
            # A kill wins over whatever failed while it was stopping us.
            state, error, diag = self._stop.state, self._stop.error, self._stop.diag
        log.warning("job %d: %s (%d %s)", self.job.job_id, diag, error.code, error.name)
        return self._update(state, error_code=error.code, error_diag=diag)

    def _stopped(self) -> dispatch_pb2.JobUpdate | None:
        if self._stop is None:
            return None
        return self._failure(self._stop.error, self._stop.diag)

    async def _run(self) -> dispatch_pb2.JobUpdate:
        self._report(job_pb2.Job.STATE_STARTING)
        try:
            await asyncio.to_thread(self.workdir.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            return self._failure(error_codes.MKDIR, f"cannot create work dir {self.workdir}: {exc}")
        if stopped := self._stopped():
            return stopped
        failure = await self._stage_in()
        if failure is not None:
            return failure
        if stopped := self._stopped():
            return stopped
        result = await self._run_payload()
        if not result.ok:
            update = self._failure(result.error or error_codes.PAYLOADEXECUTIONFAILURE, result.error_diag)
            return self._with_payload_result(update, result)
        update = await self._stage_out()
        return self._with_payload_result(update, result)

    async def _stage_in(self) -> dispatch_pb2.JobUpdate | None:
        inputs = [f for f in self.job.files if f.kind == job_pb2.JobFile.KIND_INPUT]
        for file in inputs:
            if stopped := self._stopped():
                return stopped
            started = time.monotonic()
            try:
                dest = self.workdir / check_lfn(file.lfn, error_codes.STAGEINFAILED)
                element = _open(file, error_codes.STAGEINFAILED)
                await asyncio.to_thread(element.stage_in, file.scope, file.lfn, dest, file.size_bytes, file.adler32)
            except StorageError as exc:
                return self._failure(exc.error, exc.diag)
            log.info("staged in %s:%s from %s in %.2f s", file.scope, file.lfn, file.storage_element,
                     time.monotonic() - started)
        return None

    def _limits(self) -> tuple[PayloadLimits, bool]:
        """The payload's limits, and whether its walltime is cut short by the pilot's lifetime."""
        resources = self.job.resources
        walltime = float(resources.walltime_seconds)
        available = self.options.time_available()
        capped = bool(available) and (not walltime or available < walltime)
        if capped:
            walltime = max(1.0, available)
        limits = PayloadLimits(
            walltime_seconds=walltime,
            memory_mb=resources.memory_mb,
            looping_timeout=self.options.looping_timeout,
        )
        return limits, capped

    async def _run_payload(self) -> PayloadResult:
        limits, capped = self._limits()
        env = payload_environment(self.job.job_id, self.job.attempt, self.workdir, dict(self.job.environment))
        self._payload = Payload(
            list(self.job.command),
            self.workdir,
            env,
            limits,
            monitor_interval=self.options.monitor_interval,
            kill_grace=self.options.kill_grace,
        )
        if self._stop is not None:
            self._payload.kill(self._stop.error, self._stop.diag)
        self._report(job_pb2.Job.STATE_RUNNING)
        result = await self._payload.run()
        if capped and result.error == error_codes.REACHEDMAXTIME:
            diag = f"payload ran out of the pilot's remaining lifetime ({limits.walltime_seconds:.0f} s)"
            result = dataclasses.replace(result, error_diag=diag)
        return result

    def _with_payload_result(self, update: dispatch_pb2.JobUpdate, result: PayloadResult) -> dispatch_pb2.JobUpdate:
        update.exit_code = result.exit_code
        update.max_rss_mb = result.max_rss_mb
        update.cpu_seconds = result.cpu_seconds
        update.log_tail = result.log_tail
        return update

    async def _stage_out(self) -> dispatch_pb2.JobUpdate:
        outputs = [f for f in self.job.files if f.kind in (job_pb2.JobFile.KIND_OUTPUT, job_pb2.JobFile.KIND_LOG)]
        staged: list[job_pb2.JobFile] = []
        for file in outputs:
            if stopped := self._stopped():
                return stopped
            started = time.monotonic()
            try:
                source = self.workdir / check_lfn(file.lfn, error_codes.STAGEOUTFAILED)
                element = _open(file, error_codes.STAGEOUTFAILED)
                if file.kind == job_pb2.JobFile.KIND_LOG:
                    # PanDA's log file: a tarball of the payload's stdout and stderr.
                    await asyncio.to_thread(_write_log_tarball, self.workdir, source)
                # Marked as this job's: a later attempt of it may replace the file, no other job may.
                size, adler32 = await asyncio.to_thread(
                    element.stage_out, source, file.scope, file.lfn, str(self.job.job_id))
            except StorageError as exc:
                return self._failure(exc.error, exc.diag)
            except OSError as exc:
                return self._failure(error_codes.STAGEOUTFAILED, f"cannot write log file {file.lfn}: {exc}")
            log.info(
                "staged out %s:%s to %s: %d bytes, adler32 %s, %.2f s",
                file.scope,
                file.lfn,
                file.storage_element,
                size,
                adler32,
                time.monotonic() - started,
            )
            staged.append(
                job_pb2.JobFile(
                    scope=file.scope,
                    lfn=file.lfn,
                    kind=file.kind,
                    size_bytes=size,
                    adler32=adler32,
                    storage_element=file.storage_element,
                )
            )
        return self._update(job_pb2.Job.STATE_FINISHED, output_files=staged)


def _open(file: job_pb2.JobFile, failure: ErrorCode) -> StorageElement:
    """The file's storage element, through the URL the server gave for it: the job names an
    element only by its configured id, never where it is."""
    try:
        return open_storage_element(file.storage_url)
    except ValueError as exc:
        raise StorageError(failure, f"file {file.lfn} (storage element {file.storage_element or '-'}): {exc}") from exc


def _write_log_tarball(workdir: Path, dest: Path) -> None:
    with tarfile.open(dest, "w:gz") as tar:
        for name in (STDOUT_NAME, STDERR_NAME):
            path = workdir / name
            if path.exists():
                tar.add(path, arcname=f"{workdir.name}/{name}")
