"""JEDI's side of the server: the few calls it makes, through the one client every caller uses
(`panda_runtime.client`: a deadline on every call, the robot's token renewed, retries by gRPC's
own policy), and the conversions between the server's messages (panda.server.v1) and JEDI's
domain types."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import grpc

from jedi_svc.domain.brokerage import QUEUED_STATES, RUNNING_STATES, ElementAccess, QueueInfo
from jedi_svc.domain.jobs import JobDetails, JobEvent, JobSpec, OutputFile
from panda.common.v1 import resources_pb2
from panda.server.v1 import (
    job_pb2,
    job_service_pb2,
    queue_pb2,
    queue_service_pb2,
    storage_service_pb2,
)
from panda_runtime.client import AsyncServerClient, ConnectConfig, ServerClient
from panda_runtime.service.errors import Unavailable

_FILE_KINDS = {"input": job_pb2.JobFile.KIND_INPUT, "output": job_pb2.JobFile.KIND_OUTPUT,
               "log": job_pb2.JobFile.KIND_LOG}
# A stream is re-opened (from its cursor) after this long, so it too has a deadline.
WATCH_DEADLINE_SECONDS = 300.0
# SubmitJobs of a full batch takes the server a while.
SUBMIT_DEADLINE_SECONDS = 120.0


__all__ = ["EventStream", "ServerCalls"]


def state_name(value: job_pb2.Job.State.ValueType) -> str:
    try:
        return job_pb2.Job.State.Name(value).removeprefix("STATE_").lower()
    except ValueError:  # a state a newer server knows
        return f"state-{value}"


def queue_status_name(value: queue_pb2.Queue.Status.ValueType) -> str:
    try:
        return queue_pb2.Queue.Status.Name(value).removeprefix("STATUS_").lower()
    except ValueError:
        return f"status-{value}"


def job_from_spec(spec: JobSpec) -> job_pb2.Job:
    resources = spec["resources"]
    return job_pb2.Job(
        queue=spec["queue"], task_id=spec["task_id"], priority=spec["priority"], max_attempts=spec["max_attempts"],
        command=spec["command"], environment=spec["environment"], label=spec["label"],
        resources=resources_pb2.Resources(cores=resources["cores"], memory_mb=resources["memory_mb"],
                                          walltime_seconds=resources["walltime_seconds"],
                                          disk_mb=resources["disk_mb"]),
        files=[
            job_pb2.JobFile(lfn=f["lfn"], kind=_FILE_KINDS[f["kind"]], size_bytes=f.get("size_bytes", 0),
                            adler32=f.get("adler32", ""), storage_element=f.get("storage_element", ""),
                            scope=f.get("scope", ""))
            for f in spec["files"]
        ],
    )


def details_of(job: job_pb2.Job) -> JobDetails:
    walltime = 0.0
    if job.start_time.seconds and job.end_time.seconds:
        walltime = max(0.0, (job.end_time.ToNanoseconds() - job.start_time.ToNanoseconds()) / 1e9)
    outputs = [
        OutputFile(scope=f.scope, lfn=f.lfn, size_bytes=f.size_bytes, adler32=f.adler32,
                   storage_element=f.storage_element)
        for f in job.files if f.kind == job_pb2.JobFile.KIND_OUTPUT and f.status == job_pb2.JobFile.STATUS_READY
    ]
    return JobDetails(outputs=outputs, max_rss_mb=job.max_rss_mb, walltime_seconds=walltime,
                      cpu_seconds=job.cpu_seconds)


def event_of(message: job_pb2.JobEvent) -> JobEvent:
    return JobEvent(cursor=message.cursor, job_id=message.job_id, task_id=message.task_id,
                    state=state_name(message.state), error_code=message.error_code, reason=message.reason)


class EventStream:
    """A WatchJobs call on a blocking channel, iterated by a daemon thread into a buffer that the
    event loop takes whole. `batch()` returns the events read so far (waiting up to `timeout`
    for at least one), and raises the stream's error once it has ended with one."""

    def __init__(self, config: ConnectConfig, request: job_service_pb2.WatchJobsRequest) -> None:
        self._loop = asyncio.get_running_loop()
        self._client = ServerClient(config)
        self._call = self._client.jobs.WatchJobs(request, timeout=WATCH_DEADLINE_SECONDS)
        self._lock = threading.Lock()
        self._buffer: list[JobEvent] = []
        self._ready = asyncio.Event()
        self._error: BaseException | None = None
        self.ended = False
        self._thread = threading.Thread(target=self._read, name="watch-jobs", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self._call:
                event = event_of(response.event)
                with self._lock:
                    wake = not self._buffer
                    self._buffer.append(event)
                if wake:
                    self._loop.call_soon_threadsafe(self._ready.set)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self._error = error
        except BaseException as error:  # reported to the loop, never lost in a thread
            self._error = error
        finally:
            self.ended = True
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                self._loop.call_soon_threadsafe(self._ready.set)

    async def batch(self, timeout: float, limit: int) -> list[JobEvent]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        with self._lock:
            taken, self._buffer = self._buffer[:limit], self._buffer[limit:]
            if not self._buffer:
                self._ready.clear()
        if not taken and self.ended and self._error is not None:
            raise self._error
        return taken

    @property
    def finished(self) -> bool:
        """The stream ended and everything it delivered was taken."""
        with self._lock:
            return self.ended and not self._buffer

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(5)
        self._client.close()


class ServerCalls:
    """The calls JEDI makes to the server (PANDA_SERVER), with JEDI's own credentials, in JEDI's
    types."""

    def __init__(self, config: ConnectConfig) -> None:
        self.config = config
        self.deadline = config.deadline
        self._client = AsyncServerClient(config)
        self.jobs = self._client.jobs
        self.queues = self._client.queues
        self.storage = self._client.storage

    async def close(self) -> None:
        await self._client.close()

    async def list_queues(self) -> list[QueueInfo]:
        """The server's queues, each with the storage elements that serve it."""
        elements = await self.storage_elements()
        found: list[QueueInfo] = []
        token = ""
        while True:
            response = await self.queues.ListQueues(
                queue_service_pb2.ListQueuesRequest(page_size=1000, page_token=token), timeout=self.deadline)
            for q in response.queues:
                counts = dict(q.job_counts)
                found.append(QueueInfo(
                    queue_id=q.queue_id, status=queue_status_name(q.status), max_cores=q.max_resources.cores,
                    max_memory_mb=q.max_resources.memory_mb, max_walltime_seconds=q.max_resources.walltime_seconds,
                    max_disk_mb=q.max_resources.disk_mb, storage_element=q.storage_element,
                    running=sum(counts.get(s, 0) for s in RUNNING_STATES),
                    queued=sum(counts.get(s, 0) for s in QUEUED_STATES),
                    elements=tuple(e for e in elements if e.serves(q.queue_id)),
                ))
            token = response.next_page_token
            if not token:
                return found

    async def storage_elements(self) -> list[ElementAccess]:
        """The storage elements configured at the server, with the queues and VOs they serve;
        UNAVAILABLE when it does not answer."""
        found: list[ElementAccess] = []
        token = ""
        while True:
            try:
                response = await self.storage.ListStorageElements(
                    storage_service_pb2.ListStorageElementsRequest(page_size=1000, page_token=token),
                    timeout=self.deadline)
            except grpc.aio.AioRpcError as error:
                raise Unavailable(
                    f"cannot ask the server which storage elements it has ({error.code().name}); try again"
                ) from error
            found += [ElementAccess(e.storage_element_id, frozenset(e.queues), frozenset(e.vos))
                      for e in response.storage_elements]
            token = response.next_page_token
            if not token:
                return found

    async def submit_jobs(self, specs: list[JobSpec], request_id: str, *, owner: str, vo: str) -> list[int]:
        """Submit a batch for the task's owner. The request id makes it safe to repeat: gRPC's
        retry policy repeats it when the server is away, and a batch whose call failed
        otherwise is sent again, with the same id, by whoever resolves stored batches."""
        request = job_service_pb2.SubmitJobsRequest(
            jobs=[job_from_spec(s) for s in specs], request_id=request_id, owner=owner, vo=vo)
        response = await self.jobs.SubmitJobs(request, timeout=SUBMIT_DEADLINE_SECONDS)
        return [job.job_id for job in response.jobs]

    async def kill_jobs(self, job_ids: list[int], reason: str) -> dict[int, str]:
        """Kill jobs; returns each job's state after the call (errors are logged)."""
        states: dict[int, str] = {}
        for start in range(0, len(job_ids), 10_000):
            part = job_ids[start : start + 10_000]
            response = await self.jobs.KillJobs(
                job_service_pb2.KillJobsRequest(job_ids=part, reason=reason), timeout=self.deadline)
            for result in response.results:
                states[result.job_id] = state_name(result.state)
        return states

    async def reassign_jobs(self, job_ids: list[int], queue: str) -> list[int]:
        """Move jobs not yet started to `queue`; returns the ids moved."""
        moved: list[int] = []
        for start in range(0, len(job_ids), 10_000):
            part = job_ids[start : start + 10_000]
            response = await self.jobs.ReassignJobs(
                job_service_pb2.ReassignJobsRequest(job_ids=part, queue=queue), timeout=self.deadline)
            moved += [r.job_id for r in response.results if r.status.code == 0]
        return moved

    async def set_task_jobs_priority(self, task_id: int, priority: int) -> int:
        """Give the task's jobs not yet sent to a pilot a new priority; returns how many changed."""
        response = await self.jobs.SetJobsPriority(
            job_service_pb2.SetJobsPriorityRequest(task_id=task_id, priority=priority), timeout=self.deadline)
        return response.updated_count

    async def job_details(self, task_id: int, job_ids: list[int]) -> dict[int, JobDetails]:
        """Outputs and measurements of finished jobs, a page of ListJobs per range of ids."""
        wanted = sorted(set(job_ids))
        found: dict[int, JobDetails] = {}
        start = 0
        while start < len(wanted):
            low = wanted[start]
            end = start
            while end + 1 < len(wanted) and wanted[end + 1] - low < 1000:
                end += 1
            high = wanted[end]
            flt = f"task_id = {task_id} AND job_id >= {low} AND job_id <= {high}"
            token = ""
            while True:
                response = await self.jobs.ListJobs(
                    job_service_pb2.ListJobsRequest(page_size=1000, filter=flt, page_token=token),
                    timeout=self.deadline)
                for job in response.jobs:
                    found[job.job_id] = details_of(job)
                token = response.next_page_token
                if not token:
                    break
            start = end + 1
        missing = [j for j in wanted if j not in found]
        for job_id in missing:
            one = await self.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=self.deadline)
            found[job_id] = details_of(one.job)
        return {j: found[j] for j in wanted}

    def open_watch(self, after_cursor: int, *, from_now: bool = False) -> EventStream:
        """The WatchJobs stream read by a thread of its own, handed over in batches: one hop to
        the event loop per batch rather than per event (the stream carries thousands a second)."""
        request = job_service_pb2.WatchJobsRequest(after_cursor=after_cursor, from_now=from_now)
        return EventStream(self.config, request)

    async def watch(self, after_cursor: int, *, from_now: bool = False) -> AsyncIterator[JobEvent]:
        """Job events after `after_cursor` (or, with from_now and no cursor, from the newest on),
        of every job; ends at the stream's deadline."""
        call = self.jobs.WatchJobs(job_service_pb2.WatchJobsRequest(after_cursor=after_cursor, from_now=from_now),
                                   timeout=WATCH_DEADLINE_SECONDS)
        try:
            async for response in call:
                yield event_of(response.event)
        finally:
            call.cancel()
