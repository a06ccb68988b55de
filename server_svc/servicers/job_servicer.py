"""JobService: requests checked and converted; the work is `logic.jobs.JobOperations`'."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import grpc

from panda.server.v1 import job_service_pb2, job_service_pb2_grpc
from panda_runtime.contracts import error_codes, rules
from panda_runtime.contracts import server as contract
from panda_runtime.service.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from panda_runtime.service.filtering import int32, parse_filter
from panda_runtime.service.idempotency import request_digest
from panda_runtime.service.ordering import decode_page, encode_page, parse_group_by, parse_order_by
from panda_runtime.service.pagination import page_size
from panda_runtime.service.principals import current_principal
from panda_runtime.service.scopes import user_scope, writable_scopes
from server_svc.domain.job_specs import validate_job, validate_queue_id
from server_svc.domain.outputs import assign_scopes
from server_svc.domain.storage import check_file_storage_ids
from server_svc.logic.jobs import JobOperations
from server_svc.servicers.convert import (
    action_result_to_proto,
    count_group_to_proto,
    error_code_to_proto,
    event_to_proto,
    job_from_proto,
    job_to_proto,
    state_from_text,
)
from server_svc.settings import ServerSettings

__all__ = ["FILTER_FIELDS", "GROUP_FIELDS", "SORT_FIELDS", "JobServicer"]

FILTER_FIELDS: dict[str, Any] = {
    "job_id": int, "state": state_from_text, "queue": str, "owner": str, "vo": str, "task_id": int,
    "priority": int32, "attempt": int32, "error_code": int32, "create_time": datetime,
    "update_time": datetime, "label": str, "pilot_id": str, "node": str, "worker_id": str,
}
SORT_FIELDS = contract.JOB_SORT_FIELDS
GROUP_FIELDS = contract.JOB_GROUP_FIELDS
_SORT_KINDS = {name: FILTER_FIELDS[name] for name in SORT_FIELDS}
# Every code, as the API gives it: the table does not change while the server runs.
_ERROR_CODES = job_service_pb2.ListErrorCodesResponse(error_codes=[error_code_to_proto(e) for e in error_codes.ALL])


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, settings: ServerSettings, jobs: JobOperations) -> None:
        self._settings = settings
        self._jobs = jobs

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
        rules.check_request_id(request.request_id)
        rules.check_text(request.owner, "owner", max_length=contract.MAX_OWNER_LENGTH)
        rules.check_text(request.vo, "vo", max_length=contract.MAX_VO_LENGTH)
        specs = [job_from_proto(job, self._settings) for job in request.jobs]
        for index, spec in enumerate(specs):
            validate_job(spec, f"jobs[{index}]")
        check_file_storage_ids(specs)
        caller = current_principal()
        owner, vo = caller.submitting_as(request.owner, request.vo)
        assign_scopes(specs, user_scope(owner), writable_scopes(caller, owner, vo), owner)
        digest = ""
        if request.request_id:
            digest = request_digest(job_service_pb2.SubmitJobsRequest(jobs=request.jobs), owner, vo)
        records = await self._jobs.submit(specs, owner=owner, vo=vo, request_id=request.request_id,
                                          caller=caller.subject, digest=digest)
        return job_service_pb2.SubmitJobsResponse(jobs=[job_to_proto(r) for r in records])

    async def GetJob(
        self, request: job_service_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.GetJobResponse:
        if request.job_id <= 0:
            raise InvalidArgument("job_id must be positive", field="job_id")
        job = await self._jobs.get(request.job_id)
        if not current_principal().may_act_for(job.owner, job.vo):
            raise PermissionDenied(f"job {request.job_id} belongs to {job.owner}: you may not see it")
        return job_service_pb2.GetJobResponse(job=job_to_proto(job))

    async def ListJobs(
        self, request: job_service_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.ListJobsResponse:
        limit = page_size(request.page_size)
        where = parse_filter(request.filter, FILTER_FIELDS)
        ordering = parse_order_by(request.order_by, _SORT_KINDS, "job_id")
        after = decode_page(request.page_token, ordering, _SORT_KINDS, request.filter, request.order_by)
        # One row more than the page: whether another page follows.
        records, total = await self._jobs.list_jobs(
            where, limit=limit + 1, ordering=ordering, after=after, scope=current_principal().scope(),
        )
        next_token = ""
        if len(records) > limit:
            records = records[:limit]
            last = records[-1]
            next_token = encode_page(ordering, {name: getattr(last, name) for name in ordering.fields},
                                     request.filter, request.order_by)
        return job_service_pb2.ListJobsResponse(
            jobs=[job_to_proto(r) for r in records], next_page_token=next_token, total_size=total
        )

    async def CountJobs(
        self, request: job_service_pb2.CountJobsRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.CountJobsResponse:
        limit = page_size(request.page_size)
        where = parse_filter(request.filter, FILTER_FIELDS)
        group_by = parse_group_by(list(request.group_by), GROUP_FIELDS)
        counts = await self._jobs.count_jobs(where, group_by, limit=limit, scope=current_principal().scope())
        # No group_by: no groups, and none left off.
        shown = sum(count for _, count in counts.groups) if group_by else counts.total
        return job_service_pb2.CountJobsResponse(
            groups=[count_group_to_proto(group_by, values, count) for values, count in counts.groups],
            total_size=counts.total, left_off_count=counts.total - shown,
        )

    async def ListErrorCodes(
        self, request: job_service_pb2.ListErrorCodesRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.ListErrorCodesResponse:
        return _ERROR_CODES

    async def KillJobs(
        self, request: job_service_pb2.KillJobsRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.KillJobsResponse:
        job_ids = self._job_ids(request.job_ids)
        contract.check_reason(request.reason)
        results = await self._jobs.kill(job_ids, request.reason, scope=current_principal().scope())
        return job_service_pb2.KillJobsResponse(results=[action_result_to_proto(r) for r in results])

    async def ReassignJobs(
        self, request: job_service_pb2.ReassignJobsRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.ReassignJobsResponse:
        job_ids = self._job_ids(request.job_ids)
        if not request.queue:
            raise InvalidArgument("queue is required", field="queue")
        validate_queue_id(request.queue, "queue")
        results = await self._jobs.reassign(job_ids, request.queue, scope=current_principal().scope())
        return job_service_pb2.ReassignJobsResponse(results=[action_result_to_proto(r) for r in results])

    async def SetJobsPriority(
        self, request: job_service_pb2.SetJobsPriorityRequest, context: grpc.aio.ServicerContext
    ) -> job_service_pb2.SetJobsPriorityResponse:
        if bool(request.job_ids) == bool(request.task_id):
            raise InvalidArgument("give either job_ids or task_id", field="job_ids")
        job_ids = self._job_ids(request.job_ids) if request.job_ids else []
        if request.task_id < 0:
            raise InvalidArgument("task_id must be positive", field="task_id")
        updated = await self._jobs.set_priority(
            request.priority, job_ids=job_ids, task_id=request.task_id, scope=current_principal().scope()
        )
        return job_service_pb2.SetJobsPriorityResponse(updated_count=updated)

    async def WatchJobs(
        self, request: job_service_pb2.WatchJobsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[job_service_pb2.WatchJobsResponse]:
        if request.after_cursor < 0:
            raise InvalidArgument("after_cursor must not be negative", field="after_cursor")
        if request.task_id < 0:
            raise InvalidArgument("task_id must not be negative", field="task_id")
        job_ids = contract.check_job_ids(request.job_ids, limit=contract.MAX_WATCH_JOB_IDS, required=False)
        # Accepted: the caller hears so now, not at the first event, which may be long in coming.
        await context.send_initial_metadata(())
        events = self._jobs.watch(
            request.after_cursor, from_now=request.from_now, job_ids=job_ids, task_id=request.task_id,
            scope=current_principal().scope(), done=context.done,
        )
        async for event in events:
            yield job_service_pb2.WatchJobsResponse(event=event_to_proto(event))

    @staticmethod
    def _job_ids(job_ids: Iterable[int]) -> list[int]:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            raise InvalidArgument("job_ids is empty", field="job_ids")
        if any(i <= 0 for i in ids):
            raise InvalidArgument("job ids must be positive", field="job_ids")
        if len(ids) > 10_000:
            raise ResourceExhausted("at most 10,000 job ids per call")
        return ids
