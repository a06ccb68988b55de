"""The pilot: one Connect stream to the server, and jobs run one after another.

Two loops share the state below. The connection loop keeps a stream open (reconnecting with
backoff), reads what the server sends and, after every (re)connect, re-sends what the server
must not miss: the final updates it has not acknowledged and the state of the running job.
The job loop asks for work when the pilot is free, runs each job, and decides when to exit
(idle, lifetime, max jobs, soft kill, signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any, cast

import grpc

from panda.common.v1 import resources_pb2
from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2
from panda_runtime.client.channels import aio_channel, error_message
from panda_runtime.client.file_stream import FILE_SCHEME, FileStream, is_file_address
from pilot_agent import __version__, error_codes
from pilot_agent.config import Lifetime, PilotConfig, make_pilot_id
from pilot_agent.departure import Departure
from pilot_agent.holdings import Holdings
from pilot_agent.job_runner import JobRunner, RunnerOptions, state_name
from pilot_agent.logs import current_job, name_pilot
from pilot_agent.stream import (
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    WELCOME_TIMEOUT_SECONDS,
    HelloRefused,
    OpenStream,
    PendingFinal,
    Stream,
    command_kind_name,
    open_call,
    say_hello,
    status_name,
)

__all__ = ["DEFAULT_HEARTBEAT_SECONDS", "Pilot"]

log = logging.getLogger(__name__)

# Used until the server's Welcome says otherwise (PanDA's 30 minutes).
DEFAULT_HEARTBEAT_SECONDS = 1800.0


class Pilot:
    def __init__(self, config: PilotConfig) -> None:
        self.config = config
        # The name it suggests, until the server's Welcome issues its id (kept across reconnects,
        # with the secret that resumes it).
        self.pilot_id = config.pilot_id or make_pilot_id()
        self._resume_secret = ""
        self.node = socket.gethostname()
        self.lifetime = Lifetime(config.lifetime)
        self._seq = itertools.count(1)
        self._stream: OpenStream | None = None
        self._server_heartbeat = 0.0
        self._jobs = Holdings()
        self._jobs_started = 0
        self._idle_since = time.monotonic()
        # Why the pilot stops: set once, by whichever comes first.
        self._departure = Departure()
        self._exiting = False  # the job loop is done: jobs arriving now are given back
        self._closing = False
        self._ever_connected = False
        self._welcomed = False  # on the current stream
        self._changed = asyncio.Event()  # wakes the job loop and the exit's delivery wait

    # -- time ---------------------------------------------------------------------------

    def heartbeat_interval(self) -> float:
        return self.config.heartbeat_interval or self._server_heartbeat or DEFAULT_HEARTBEAT_SECONDS

    # -- what the pilot says -----------------------------------------------------------

    def hello(self) -> dispatch_pb2.Hello:
        return dispatch_pb2.Hello(
            pilot_id=self.pilot_id,
            queue=self.config.queue,
            node=self.node,
            resources=self.config.offer(self.lifetime.remaining()),
            worker_id=self.config.worker_id,
            version=__version__,
            held_jobs=self._jobs.held_jobs(),
            resume_secret=self._resume_secret,
        )

    def _send(self, **message: Any) -> bool:
        """Queue a message on the current stream; False when there is none (it is dropped)."""
        stream = self._stream
        if stream is None:
            return False
        stream.send(dispatch_pb2.ConnectRequest(seq=next(self._seq), **message))
        return True

    def _send_update(
        self, update: dispatch_pb2.JobUpdate, then_request: dispatch_pb2.RequestJobs | None = None
    ) -> bool:
        """Send one update (a JobUpdates of one), with the next request in the same message if given."""
        updates = dispatch_pb2.JobUpdates(updates=[update])
        if then_request is not None:
            updates.request_jobs.CopyFrom(then_request)
        return self._send(job_updates=updates)

    def _send_progress(self, update: dispatch_pb2.JobUpdate) -> None:
        # Progress lost while disconnected is not resent as such: the latest state is, on reconnect.
        self._send_update(update)

    def _send_final(self, pending: PendingFinal, then_request: dispatch_pb2.RequestJobs | None = None) -> bool:
        """Send a final update, with the next request in the same message if one is given."""
        sent = self._send_update(pending.update, then_request)
        if sent:
            pending.sent(time.monotonic(), self.heartbeat_interval())
        return sent

    def _deliver_final(self, update: dispatch_pb2.JobUpdate, *, ask_for_more: bool = False) -> None:
        """Send a job's final update until acknowledged; with `ask_for_more`, the request for
        the next job goes in the same message, if the pilot wants one."""
        pending = PendingFinal(update)
        self._jobs.unacknowledged[(update.job_id, update.attempt)] = pending
        stream, request = self._stream, self._job_request() if ask_for_more else None
        if self._send_final(pending, request) and stream is not None and request is not None:
            self._asked(stream, request)

    def _wants_work(self) -> bool:
        return (
            self._exit_reason() is None
            and not self._jobs.queued
            and not self._jobs.running
            and self.lifetime.for_jobs() >= self.lifetime.reserve
        )

    def _job_request(self) -> dispatch_pb2.RequestJobs | None:
        """The request for one more job, if the pilot wants one and has not asked yet."""
        stream = self._stream
        if stream is None or stream.requested_jobs or not self._wants_work():
            return None
        resources = resources_pb2.Resources(
            walltime_seconds=int(self.lifetime.for_jobs()), disk_mb=self.config.free_disk_mb()
        )
        return dispatch_pb2.RequestJobs(count=1, resources=resources)

    def _request_jobs(self) -> None:
        stream, request = self._stream, self._job_request()
        if stream is not None and request is not None and self._send(request_jobs=request):
            self._asked(stream, request)

    @staticmethod
    def _asked(stream: OpenStream, request: dispatch_pb2.RequestJobs) -> None:
        stream.requested_jobs = True
        log.info("asking for a job (%d s of walltime left for it)", request.resources.walltime_seconds)

    # -- the stream ------------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        backoff = BACKOFF_INITIAL_SECONDS
        while not self._closing:
            self._welcomed = False
            try:
                await self._run_stream()
                reason = "the server closed the stream"
            except HelloRefused as exc:
                self._on_refused(str(exc))
                return
            except grpc.aio.AioRpcError as exc:
                reason = error_message(exc)
            except TimeoutError:
                reason = f"no Welcome within {WELCOME_TIMEOUT_SECONDS:.0f} s"
            except Exception as exc:  # a broken stream must never end the pilot
                log.exception("stream failed")
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._stream = None
            if self._closing:
                return
            if self._welcomed:
                backoff = BACKOFF_INITIAL_SECONDS
            delay = backoff * random.uniform(0.8, 1.2)
            what = "stream to %s lost" if self._welcomed else "cannot connect to %s"
            log.warning(what + " (%s); retrying in %.1f s", self.config.server, reason, delay)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    async def _run_stream(self) -> None:
        """One stream from Hello to its end (sets _welcomed once the server accepted us)."""
        # A new channel each time: our backoff, not gRPC's, paces retries. With no network, the
        # stream runs over files in the directory harvester shares (file_stream).
        channel: grpc.aio.Channel | None = None
        if is_file_address(self.config.server):
            call: Stream = cast(Stream, FileStream(Path(self.config.server.removeprefix(FILE_SCHEME))))
        else:
            channel = aio_channel(self.config.server, self.config.tokens)
            call = open_call(channel)
        tasks: list[asyncio.Task[None]] = []
        try:
            hello = self.hello()
            call, welcome = await say_hello(call, dispatch_pb2.ConnectRequest(seq=next(self._seq), hello=hello))
            self._welcomed = self._ever_connected = True
            self._server_heartbeat = float(welcome.heartbeat_interval_seconds)
            self._take_identity(welcome)
            log.info(
                "connected to %s (session %s, heartbeat every %.0f s, holding %d job(s))",
                self.config.server,
                welcome.session_id,
                self.heartbeat_interval(),
                len(hello.held_jobs),
            )
            stream = OpenStream(call)
            self._stream = stream
            writer = asyncio.create_task(stream.write_loop())
            reader = asyncio.create_task(self._read_loop(call))
            tasks = [writer, reader, asyncio.create_task(self._resend_finals_loop())]
            self._after_connect()
            done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                reader.result()
            elif writer.exception() is not None:
                writer.result()  # raises the writer's error
            else:
                await reader  # we said Goodbye and finished writing: the server ends the stream
        finally:
            self._stream = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if channel is not None:
                await channel.close(grace=None)
            else:
                call.cancel()

    def _take_identity(self, welcome: dispatch_pb2.Welcome) -> None:
        """The id the server issued (or resumed) and the secret to resume it with next time."""
        if not welcome.pilot_id:  # a server that issues no ids: the suggested one stays
            return
        if welcome.pilot_id != self.pilot_id:
            log.info("the server issued this pilot the id %s", welcome.pilot_id)
            self.pilot_id = welcome.pilot_id
            name_pilot(self.pilot_id)
        self._resume_secret = welcome.resume_secret

    def _after_connect(self) -> None:
        # What the server must not miss from before the (re)connect, oldest first.
        for pending in list(self._jobs.unacknowledged.values()):
            pending.new_stream()
            self._send_final(pending)
        for runner in self._jobs.running.values():
            self._send_update(runner.progress_update())
        self._request_jobs()
        self._changed.set()

    async def _resend_finals_loop(self) -> None:
        # An unacknowledged final is resent with a backoff (PendingFinal.sent): its round may
        # have failed (a database briefly away), and the server keeps nothing of a failed round.
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            for key, pending in list(self._jobs.unacknowledged.items()):
                if now >= pending.resend_at:
                    log.info("final update still unacknowledged: sending it again", extra={"job_id": key[0]})
                    self._send_final(pending)

    async def _read_loop(self, call: Stream) -> None:
        while True:
            response = await call.read()
            if not isinstance(response, dispatch_pb2.ConnectResponse):  # grpc.aio.EOF
                return
            kind = response.WhichOneof("message")
            if kind == "job_assignments":
                self._on_jobs(response.job_assignments)
            elif kind == "update_acks":
                for ack in response.update_acks.acks:
                    self._on_ack(ack)
            elif kind == "command":
                self._on_command(response.command)
            elif kind == "welcome":
                self._server_heartbeat = float(response.welcome.heartbeat_interval_seconds)
            else:
                log.warning("ignoring an unknown message from the server: %s", kind)

    def _on_jobs(self, assignments: dispatch_pb2.JobAssignments) -> None:
        if self._stream is not None:
            self._stream.requested_jobs = False  # the server used up our credit
        for ack in assignments.acks:  # of the final update sent with our request
            self._on_ack(ack)
        for job in assignments.jobs:
            key = (job.job_id, job.attempt)
            if self._jobs.holds(key):
                log.warning("job assigned twice; ignoring the copy", extra={"job_id": job.job_id})
                continue
            log.info(
                "job assigned: attempt %d, command %s, %d file(s)",
                job.attempt,
                list(job.command),
                len(job.files),
                extra={"job_id": job.job_id},
            )
            self._jobs.queued.append(job)
        if self._exiting:
            self._give_back_queued("the job arrived while the pilot was exiting")
        self._changed.set()

    def _on_ack(self, ack: dispatch_pb2.UpdateAck) -> None:
        key = (ack.job_id, ack.attempt)
        extra = {"job_id": ack.job_id}
        if ack.status.code == grpc.StatusCode.OK.value[0]:
            if self._jobs.unacknowledged.pop(key, None) is not None:
                log.info("final update acknowledged: job is %s", state_name(ack.state), extra=extra)
                self._changed.set()
            return
        code = status_name(ack.status.code)
        why = f"server refused update (seq {ack.seq}): {code}: {ack.status.message}"
        if self._jobs.drop(key, why):
            log.warning("%s; the job is no longer ours", why, extra=extra)
        else:
            log.info("%s (a job we no longer hold)", why, extra=extra)
        self._changed.set()

    def _on_command(self, command: dispatch_pb2.Command) -> None:
        key = (command.job_id, command.attempt)
        extra = {"job_id": command.job_id}
        kind = command_kind_name(command.kind)
        log.info("command %s received: %s", kind, command.reason or "(no reason)", extra=extra)
        if command.kind == dispatch_pb2.Command.KIND_SOFT_KILL:
            self._departure.soft_kill = True
            self._changed.set()
            return
        runner = self._jobs.running.get(key)
        if command.kind == dispatch_pb2.Command.KIND_DEBUG:
            if runner is not None:
                runner.request_debug()
            return
        if command.kind != dispatch_pb2.Command.KIND_KILL:
            log.warning("ignoring unknown command %s", kind, extra=extra)
            return
        diag = f"killed by the server: {command.reason}" if command.reason else "killed by the server"
        if runner is not None:
            runner.kill(error_codes.PANDAKILL, diag, state=job_pb2.Job.STATE_CANCELLED)
            return
        if self._jobs.take_queued(key) is not None:
            self._deliver_final(
                dispatch_pb2.JobUpdate(
                    job_id=command.job_id,
                    attempt=command.attempt,
                    state=job_pb2.Job.STATE_CANCELLED,
                    error_code=error_codes.PANDAKILL.code,
                    error_diag=diag,
                )
            )
            return
        log.info("kill for a job this pilot does not run (attempt %d); ignored", command.attempt, extra=extra)

    def _on_refused(self, why: str) -> None:
        log.error("the server refused this pilot: %s", why)
        self._departure.refused = why
        for runner in self._jobs.running.values():
            runner.abandon("the server refused the pilot's Hello")
        self._changed.set()

    # -- signals -----------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self._departure.on_signal(signum):
            log.warning("received %s again: exiting without waiting for acknowledgements", name)
            self._changed.set()
            return
        log.warning("received %s: stopping the payload, then exiting", name)
        error = error_codes.signal_error(signum)
        for runner in self._jobs.running.values():
            runner.kill(error, f"pilot received {name}")
        self._changed.set()

    # -- the jobs ------------------------------------------------------------------------------

    def _exit_reason(self) -> str | None:
        return self._departure.reason(self._jobs_started, self.config.max_jobs)

    async def _job_loop(self) -> str:
        while True:
            reason = self._exit_reason()
            if reason is not None:
                return reason
            if self._jobs.queued:
                await self._run_job(self._jobs.queued.popleft())
                self._idle_since = time.monotonic()
                continue
            if self.lifetime.for_jobs() < self.lifetime.reserve:
                return f"lifetime nearly over ({self.lifetime.remaining():.0f} s left)"
            self._request_jobs()
            idle_left = self._idle_since + self.config.idle_timeout - time.monotonic()
            if idle_left <= 0:
                return f"no job for {self.config.idle_timeout:g} s"
            until_lifetime_stop = self.lifetime.for_jobs() - self.lifetime.reserve
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.01, min(idle_left, until_lifetime_stop)))

    async def _run_job(self, job: job_pb2.Job) -> None:
        self._jobs_started += 1
        runner = JobRunner(
            job,
            RunnerOptions(
                workdir_root=self.config.workdir,
                heartbeat_interval=self.heartbeat_interval,
                time_available=self.lifetime.for_jobs,
                looping_timeout=self.config.looping_timeout,
                monitor_interval=self.config.monitor_interval,
                kill_grace=self.config.kill_grace,
            ),
            self._send_progress,
        )
        self._jobs.running[runner.key] = runner
        token = current_job.set(job.job_id)
        try:
            final = await runner.run()
        finally:
            del self._jobs.running[runner.key]
            current_job.reset(token)
        if final is not None:
            self._deliver_final(final, ask_for_more=True)

    def _give_back_queued(self, reason: str) -> None:
        """Jobs accepted but never started go back without using an attempt: the server
        returns a pilot's unstarted jobs to activated when the pilot says goodbye."""
        while self._jobs.queued:
            job = self._jobs.queued.popleft()
            log.warning("job not started, given back: pilot exiting (%s)", reason, extra={"job_id": job.job_id})

    def _withdraw_request(self) -> None:
        """Tell the server we take no more jobs, so none is sent while we say goodbye."""
        stream = self._stream
        if stream is not None and stream.requested_jobs:
            self._send(request_jobs=dispatch_pb2.RequestJobs(count=0))
            stream.requested_jobs = False

    async def _deliver_pending(self) -> None:
        """Wait, reconnecting as needed, until the server acknowledged every final update."""
        started, lifetime_left = time.monotonic(), self.lifetime.remaining()
        while self._jobs.unacknowledged and self._departure.may_wait_for_acks():
            left = self._departure.delivery_deadline(started, lifetime_left) - time.monotonic()
            if left <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def _say_goodbye(self, reason: str) -> bool:
        """Goodbye on the open stream, if there is one; the server then ends the stream."""
        self._closing = True  # no reconnect from here on
        stream = self._stream
        if stream is None:
            return False
        self._send(goodbye=dispatch_pb2.Goodbye(reason=reason))
        stream.close()
        return True

    # -- entry ---------------------------------------------------------------------------------

    async def run(self) -> int:
        """Serve the queue until it is time to go; the process exit code."""
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        log.info(
            "pilot %s %s starting: queue %s, server %s, work dir %s, lifetime %g s, idle timeout %g s",
            self.pilot_id,
            __version__,
            self.config.queue,
            self.config.server,
            self.config.workdir,
            self.config.lifetime,
            self.config.idle_timeout,
        )
        connection = asyncio.create_task(self._connection_loop())
        try:
            reason = await self._job_loop()
            log.info("exiting: %s", reason)
            self._exiting = True
            self._withdraw_request()
            self._give_back_queued(reason)
            if self._jobs.unacknowledged:
                log.info("waiting for the server to acknowledge %d final update(s)", len(self._jobs.unacknowledged))
                await self._deliver_pending()
            if self._say_goodbye(reason):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(connection), 5.0)
        finally:
            self._closing = True
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        return self._exit_code()

    def _exit_code(self) -> int:
        if self._departure.refused is None:
            if self._jobs.unacknowledged:
                jobs = ", ".join(f"{job_id} (attempt {attempt})" for job_id, attempt in self._jobs.unacknowledged)
                log.error("final updates never acknowledged for job(s) %s", jobs)
            if self._departure.signal is None and not self._ever_connected:
                log.error("never reached the server at %s", self.config.server)
        return self._departure.exit_code(
            unacknowledged=bool(self._jobs.unacknowledged), ever_connected=self._ever_connected
        )
