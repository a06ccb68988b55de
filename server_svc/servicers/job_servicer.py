"""JobService: thin mapping between the contract and the job store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from panda.server.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from panda_runtime.service.db import DbRunner
from panda_runtime.service.errors import InvalidArgument, PermissionDenied, ResourceExhausted, ok_status
from panda_runtime.service.filtering import parse_filter
from panda_runtime.service.pagination import decode_token, encode_token, page_size
from panda_runtime.service.principals import current_principal
from server_svc.dispatcher import DispatchHub
from server_svc.domain.job_specs import validate_job
from server_svc.servicers.convert import (
    event_to_proto,
    job_from_proto,
    job_to_proto,
    state_from_text,
    state_to_proto,
)
from server_svc.settings import ServerSettings
from server_svc.store.job_store import ActionResult, JobStore

FILTER_FIELDS: dict[str, Any] = {
    "job_id": int, "state": state_from_text, "queue": str, "owner": str, "vo": str, "task_id": int,
    "priority": int, "attempt": int, "error_code": int, "create_time": datetime,
    "update_time": datetime, "label": str, "pilot_id": str,
}


def _result_to_proto(result: ActionResult) -> job_service_pb2.JobActionResult:
    return job_service_pb2.JobActionResult(
        job_id=result.job_id,
        status=result.error.to_status() if result.error else ok_status(),
        state=state_to_proto(result.state),
    )


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, settings: ServerSettings, db: DbRunner, store: JobStore, hub: DispatchHub) -> None:
        self._settings = settings
        self._db = db
        self._store = store
        self._hub = hub

    async def SubmitJobs(
        self, request: job_service_pb2.SubmitJobsRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.SubmitJobsResponse:
        if not request.jobs:
            raise InvalidArgument("no jobs to submit", field="jobs")
        if len(request.jobs) > self._settings.max_submit_batch:
            raise ResourceExhausted(
                f"{len(request.jobs)} jobs in one call; at most {self._settings.max_submit_batch}: "
                "split the batch"
            )
        if len(request.request_id) > 64:
            raise InvalidArgument("request_id is longer than 64 characters", field="request_id")
        specs = [job_from_proto(job, self._settings) for job in request.jobs]
        for index, spec in enumerate(specs):
            validate_job(spec, f"jobs[{index}]")
        owner, vo = current_principal().submitting_as(request.owner, request.vo)
        rows = await self._db.run(self._store.submit, specs, owner=owner, vo=vo, request_id=request.request_id)
        self._hub.wake()
        self._hub.events_written.notify()
        return job_service_pb2.SubmitJobsResponse(jobs=[job_to_proto(r) for r in rows])

    async def GetJob(
        self, request: job_service_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.GetJobResponse:
        if request.job_id <= 0:
            raise InvalidArgument("job_id must be positive", field="job_id")
        row = await self._db.run(self._store.get, request.job_id)
        if not current_principal().may_act_for(row["owner"], row["vo"]):
            raise PermissionDenied(f"job {request.job_id} belongs to {row['owner']}: you may not see it")
        return job_service_pb2.GetJobResponse(job=job_to_proto(row))

    async def ListJobs(
        self, request: job_service_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.ListJobsResponse:
        limit = page_size(request.page_size)
        comparisons = parse_filter(request.filter, FILTER_FIELDS)
        position = decode_token(request.page_token, request.filter)
        rows, total = await self._db.run(
            self._store.list, comparisons, limit=limit, before_job_id=int(position.get("before", 0)),
            scope=current_principal().scope(),
        )
        next_token = ""
        if len(rows) == limit and rows[-1]["job_id"] > 1:
            next_token = encode_token({"before": rows[-1]["job_id"]}, request.filter)
        return job_service_pb2.ListJobsResponse(
            jobs=[job_to_proto(r) for r in rows], next_page_token=next_token, total_size=total
        )

    async def KillJobs(
        self, request: job_service_pb2.KillJobsRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.KillJobsResponse:
        job_ids = self._job_ids(request.job_ids)
        results = await self._db.run(self._store.kill, job_ids, request.reason, scope=current_principal().scope())
        pilots = sorted({r.pilot_command[0] for r in results if r.pilot_command})
        if pilots:
            await self._hub.deliver_commands(pilots)
        self._hub.events_written.notify()
        return job_service_pb2.KillJobsResponse(results=[_result_to_proto(r) for r in results])

    async def ReassignJobs(
        self, request: job_service_pb2.ReassignJobsRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.ReassignJobsResponse:
        job_ids = self._job_ids(request.job_ids)
        if not request.queue:
            raise InvalidArgument("queue is required", field="queue")
        results = await self._db.run(
            self._store.reassign, job_ids, request.queue, scope=current_principal().scope()
        )
        self._hub.wake()
        self._hub.events_written.notify()
        return job_service_pb2.ReassignJobsResponse(results=[_result_to_proto(r) for r in results])

    async def SetJobsPriority(
        self, request: job_service_pb2.SetJobsPriorityRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.SetJobsPriorityResponse:
        if bool(request.job_ids) == bool(request.task_id):
            raise InvalidArgument("give either job_ids or task_id", field="job_ids")
        job_ids = self._job_ids(request.job_ids) if request.job_ids else []
        if request.task_id < 0:
            raise InvalidArgument("task_id must be positive", field="task_id")
        updated = await self._db.run(
            self._store.set_priority, request.priority, job_ids=job_ids, task_id=request.task_id,
            scope=current_principal().scope(),
        )
        if updated:
            self._hub.wake()
        return job_service_pb2.SetJobsPriorityResponse(updated_count=updated)

    async def WatchJobs(self, request: job_service_pb2.WatchJobsRequest, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        cursor = request.after_cursor
        if cursor < 0:
            raise InvalidArgument("after_cursor must not be negative", field="after_cursor")
        if not cursor and request.from_now:
            cursor = await self._db.run(self._store.last_cursor)
        job_ids = list(request.job_ids)
        scope = current_principal().scope()
        while not context.done():
            events = await self._db.run(
                self._store.events_after, cursor, job_ids=job_ids, task_id=request.task_id, scope=scope
            )
            for event in events:
                cursor = event["cursor"]
                yield job_service_pb2.WatchJobsResponse(event=event_to_proto(event))
            if not events:
                await self._hub.events_written.wait(timeout=1.0)

    @staticmethod
    def _job_ids(job_ids: Any) -> list[int]:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            raise InvalidArgument("job_ids is empty", field="job_ids")
        if any(i <= 0 for i in ids):
            raise InvalidArgument("job ids must be positive", field="job_ids")
        if len(ids) > 10_000:
            raise ResourceExhausted("at most 10,000 job ids per call")
        return ids


__all__ = ["JobServicer", "job_pb2"]
