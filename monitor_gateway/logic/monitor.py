"""What the web monitor's pages show, read from the services' public APIs with the viewer's own
token, so that each person sees exactly what the API lets them see and nothing is computed here
that a service already knows. Every page is a JSON-ready document (protobuf's JSON mapping, the
same the HTTP API writes); the pages render it, and `?json=1` returns it as it is."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from monitor_gateway.domain import monitor_filters as filters
from monitor_gateway.domain.monitor_pages import Paging, page_of, summary_fields
from monitor_gateway.domain.responses import message_document
from monitor_gateway.logic.upstreams import Upstreams
from monitor_gateway.store.descriptors import list_fields
from panda.iam.v1 import iam_service_pb2, iam_service_pb2_grpc
from panda.jedi.v1 import dataset_service_pb2, dataset_service_pb2_grpc, task_service_pb2, task_service_pb2_grpc
from panda.server.v1 import job_service_pb2, job_service_pb2_grpc, queue_service_pb2, queue_service_pb2_grpc
from panda_runtime.contracts.error_codes import by_code

__all__ = ["Monitor", "Refused", "meaning_of"]

Query = Mapping[str, Sequence[str]]
_VIEWER_SECONDS = 60.0
_VIEWERS_KEPT = 10_000
Document = dict[str, Any]


@dataclass
class Refused(Exception):
    """A service refused a read or an action: its status code and its message, for the page."""

    code: grpc.StatusCode
    message: str
    field: str = ""

    def __str__(self) -> str:
        return self.message


def _code_of(number: int) -> grpc.StatusCode:
    return next((code for code in grpc.StatusCode if code.value[0] == number), grpc.StatusCode.UNKNOWN)


def _raise_refusals(response: Any) -> None:
    """A job action's refusals come per job, in the answer, not as the call's status."""
    for result in response.results:
        if result.status.code != grpc.StatusCode.OK.value[0]:
            raise Refused(_code_of(result.status.code), result.status.message)


def meaning_of(code: int | str) -> str:
    """What an error code means, with its name (`1305 PAYLOADEXECUTIONFAILURE`: ...)."""
    known = by_code(int(code))
    return f"{known.name}: {known.meaning}" if known is not None else ""


class Monitor:
    def __init__(self, upstreams: Upstreams, *, deadline_seconds: float) -> None:
        self._deadline = deadline_seconds
        server = upstreams.channel_for("panda.server.v1.JobService")
        jedi = upstreams.channel_for("panda.jedi.v1.TaskService")
        iam = upstreams.channel_for("panda.iam.v1.IamService")
        self._jobs = job_service_pb2_grpc.JobServiceStub(server) if server else None
        self._queues = queue_service_pb2_grpc.QueueServiceStub(server) if server else None
        self._tasks = task_service_pb2_grpc.TaskServiceStub(jedi) if jedi else None
        self._datasets = dataset_service_pb2_grpc.DatasetServiceStub(jedi) if jedi else None
        self._iam = iam_service_pb2_grpc.IamServiceStub(iam) if iam else None
        self._viewers: dict[bytes, tuple[float, Document]] = {}
        self.fields = list_fields()

    async def _call(self, method: Callable[..., Awaitable[Message]] | None, request: Message, token: str) -> Any:
        if method is None:
            raise Refused(grpc.StatusCode.UNAVAILABLE, "no address setting names the service of this page")
        try:
            return await method(request, metadata=(("authorization", f"Bearer {token}"),), timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            raise Refused(error.code(), error.details() or error.code().name) from None

    @staticmethod
    def _filter(query: Query, fields: Mapping[str, filters.FilterField], *, fixed: Sequence[str] = (),
                time_field: str = "update_time") -> str:
        try:
            return filters.api_filter(query, fields, fixed=fixed, time_field=time_field)
        except filters.FilterError as error:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, error.message, field=error.parameter) from None

    # -- who is looking -------------------------------------------------------------------------

    async def who(self, token: str) -> Document:
        """Who the token names (subject, roles, grants), remembered for a minute per token: every
        page asks, to offer only the actions the API would let this person take."""
        key = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        known = self._viewers.get(key)
        if known is not None and known[0] > now:
            return known[1]
        try:
            response = await self._call(self._iam.WhoAmI if self._iam else None, iam_service_pb2.WhoAmIRequest(),
                                        token)
        except Refused:
            # Unknown here: no action is offered, and every read still goes to the services.
            return {}
        viewer = message_document(response)
        if len(self._viewers) >= _VIEWERS_KEPT:
            self._viewers.clear()
        self._viewers[key] = (now + _VIEWER_SECONDS, viewer)
        return viewer

    # -- jobs -------------------------------------------------------------------------------------

    async def _count_jobs(self, token: str, api_filter: str, group_by: Sequence[str], page_size: int = 20) -> Document:
        request = job_service_pb2.CountJobsRequest(filter=api_filter, group_by=list(group_by), page_size=page_size)
        return message_document(await self._call(self._jobs.CountJobs if self._jobs else None, request, token))

    async def _list_jobs(self, token: str, api_filter: str, paging: Paging) -> Document:
        request = job_service_pb2.ListJobsRequest(filter=api_filter, page_size=paging.page_size,
                                                  page_token=paging.page_token, order_by=paging.order_by)
        return message_document(await self._call(self._jobs.ListJobs if self._jobs else None, request, token))

    async def jobs(self, token: str, query: Query, paging: Paging, *, fixed: Sequence[str] = ()) -> Document:
        """A page of jobs and BigPanDA's attribute summary of everything the filter matches."""
        api_filter = self._filter(query, self.fields.jobs, fixed=fixed)
        listed, *summaries = await asyncio.gather(
            self._list_jobs(token, api_filter, paging),
            *(self._count_jobs(token, api_filter, [field]) for field in summary_fields("jobs")))
        return {"filter": api_filter, "jobs": listed["jobs"], "nextPageToken": listed["nextPageToken"],
                "totalSize": listed["totalSize"],
                "summary": {field: summary["groups"] for field, summary in zip(summary_fields("jobs"), summaries,
                                                                                strict=True)}}

    async def job(self, token: str, job_id: int) -> Document:
        response = await self._call(self._jobs.GetJob if self._jobs else None,
                                    job_service_pb2.GetJobRequest(job_id=job_id), token)
        return {"job": message_document(response.job), "errorMeaning": meaning_of(response.job.error_code)
                if response.job.error_code else ""}

    async def errors(self, token: str, query: Query) -> Document:
        """Failures by error code, then by queue and by task, in the window asked (12 hours unless
        the URL names one)."""
        if not any(key in query for key in filters.TIME_KEYS):
            query = {**query, "hours": ["12"]}
        api_filter = self._filter(query, self.fields.jobs, fixed=["state = FAILED"])
        codes, by_queue, by_task = await asyncio.gather(
            self._count_jobs(token, api_filter, ["error_code"], 100),
            self._count_jobs(token, api_filter, ["error_code", "queue"], 500),
            self._count_jobs(token, api_filter, ["error_code", "task_id"], 500))
        rows: dict[str, Document] = {
            group["values"][0]: {"code": group["values"][0], "count": group["count"],
                                 "meaning": meaning_of(group["values"][0]), "queues": [], "tasks": []}
            for group in codes["groups"]}
        for key, counted in (("queues", by_queue), ("tasks", by_task)):
            for group in counted["groups"]:
                code, value = group["values"]
                if code in rows:
                    rows[code][key].append({"value": value, "count": group["count"]})
        return {"filter": api_filter, "totalSize": codes["totalSize"], "byCode": codes["groups"],
                "byCodeAndQueue": by_queue["groups"], "byCodeAndTask": by_task["groups"],
                "meanings": {code: row["meaning"] for code, row in rows.items()}, "rows": list(rows.values()),
                # Failures in groups too small to be listed (the counts return the largest only).
                "leftOff": {"byCode": codes["leftOffCount"], "byCodeAndQueue": by_queue["leftOffCount"],
                            "byCodeAndTask": by_task["leftOffCount"]}}

    async def kill_job(self, token: str, job_id: int, reason: str) -> None:
        _raise_refusals(await self._call(self._jobs.KillJobs if self._jobs else None,
                                         job_service_pb2.KillJobsRequest(job_ids=[job_id], reason=reason), token))

    async def reassign_job(self, token: str, job_id: int, queue: str) -> None:
        if not queue:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "name the queue to move the job to", field="queue")
        _raise_refusals(await self._call(self._jobs.ReassignJobs if self._jobs else None,
                                         job_service_pb2.ReassignJobsRequest(job_ids=[job_id], queue=queue), token))

    # -- tasks ------------------------------------------------------------------------------------

    async def _count_tasks(self, token: str, api_filter: str, group_by: Sequence[str], page_size: int = 20) -> Document:
        request = task_service_pb2.CountTasksRequest(filter=api_filter, group_by=list(group_by), page_size=page_size)
        return message_document(await self._call(self._tasks.CountTasks if self._tasks else None, request, token))

    async def tasks(self, token: str, query: Query, paging: Paging) -> Document:
        api_filter = self._filter(query, self.fields.tasks)
        request = task_service_pb2.ListTasksRequest(filter=api_filter, page_size=paging.page_size,
                                                    page_token=paging.page_token, order_by=paging.order_by)
        listed, *summaries = await asyncio.gather(
            self._call(self._tasks.ListTasks if self._tasks else None, request, token),
            *(self._count_tasks(token, api_filter, [field]) for field in summary_fields("tasks")))
        document = message_document(listed)
        return {"filter": api_filter, "tasks": document["tasks"], "nextPageToken": document["nextPageToken"],
                "totalSize": document.get("totalSize", "0"),
                "summary": {field: summary["groups"] for field, summary in zip(summary_fields("tasks"), summaries,
                                                                                strict=True)}}

    async def task(self, token: str, task_id: int, query: Query, paging: Paging) -> Document:
        """The task, its output dataset, and a page of its jobs with their summary."""
        response = await self._call(self._tasks.GetTask if self._tasks else None,
                                    task_service_pb2.GetTaskRequest(task_id=task_id), token)
        task = message_document(response.task)
        output_name = response.task.params.output_dataset
        jobs, output = await asyncio.gather(
            self.jobs(token, query, paging, fixed=[f"task_id = {task_id}"]),
            self._dataset_or_none(token, output_name, Paging(page_size=100)))
        return {"task": task, "jobs": jobs, "output": output}

    async def task_action(self, token: str, task_id: int, action: str, reason: str) -> None:
        if self._tasks is None:
            raise Refused(grpc.StatusCode.UNAVAILABLE, "no address setting names JEDI")
        if action == "kill":
            await self._call(self._tasks.KillTask, task_service_pb2.KillTaskRequest(task_id=task_id, reason=reason),
                             token)
        elif action == "finish":
            await self._call(self._tasks.FinishTask,
                             task_service_pb2.FinishTaskRequest(task_id=task_id, reason=reason), token)
        else:
            await self._call(self._tasks.RetryTask, task_service_pb2.RetryTaskRequest(task_id=task_id), token)

    # -- queues, users, datasets ------------------------------------------------------------------

    async def queues_page(self, token: str, paging: Paging) -> Document:
        """The queues, sorted and paged here: a site's queues are few, and their counts and
        pilots are the server's live figures, not columns to sort by in a database."""
        page = page_of((await self.queues(token))["queues"], paging, {
            "queue_id": lambda q: q["queueId"], "status": lambda q: q["status"],
            "pilots": lambda q: int(q.get("connectedPilots", 0)),
            "activated": lambda q: int(q["jobCounts"].get("activated", 0)),
            "running": lambda q: int(q["jobCounts"].get("running", 0))})
        return {"queues": page.rows, "nextPageToken": page.next_page_token, "totalSize": str(page.total)}

    async def queues(self, token: str) -> Document:
        queues: list[Document] = []
        page_token = ""
        while True:
            response = await self._call(self._queues.ListQueues if self._queues else None,
                                        queue_service_pb2.ListQueuesRequest(page_size=1000, page_token=page_token),
                                        token)
            queues += message_document(response)["queues"]
            page_token = response.next_page_token
            if not page_token:
                return {"queues": queues}

    async def queue(self, token: str, queue_id: str, query: Query, paging: Paging) -> Document:
        response = await self._call(self._queues.GetQueue if self._queues else None,
                                    queue_service_pb2.GetQueueRequest(queue_id=queue_id), token)
        jobs = await self.jobs(token, query, paging, fixed=[f"queue = {filters.quoted(queue_id)}"])
        return {"queue": message_document(response.queue), "jobs": jobs}

    async def users(self, token: str, query: Query, paging: Paging) -> Document:
        """Every owner the viewer may see, with their jobs and tasks by state, sorted and paged."""
        jobs_filter = self._filter(query, self.fields.jobs)
        tasks_filter = self._filter({key: value for key, value in query.items() if key in self.fields.tasks},
                                    self.fields.tasks)
        jobs, tasks = await asyncio.gather(self._count_jobs(token, jobs_filter, ["owner", "state"], 1000),
                                           self._count_tasks(token, tasks_filter, ["owner", "state"], 1000))
        people: dict[str, Document] = {}
        for key, counted in (("jobs", jobs), ("tasks", tasks)):
            for group in counted["groups"]:
                owner, state = group["values"]
                person = people.setdefault(owner, {"owner": owner, "jobs": [], "tasks": [], "jobsTotal": 0,
                                                   "tasksTotal": 0})
                person[key].append({"state": state, "count": group["count"]})
                person[f"{key}Total"] += int(group["count"])
        page = page_of(list(people.values()), paging, {
            "owner": lambda p: p["owner"], "jobs": lambda p: p["jobsTotal"], "tasks": lambda p: p["tasksTotal"]})
        return {"jobs": jobs["groups"], "tasks": tasks["groups"], "users": page.rows,
                "nextPageToken": page.next_page_token, "totalSize": str(page.total)}

    async def datasets(self, token: str, query: Query, paging: Paging) -> Document:
        api_filter = self._filter(query, self.fields.datasets, time_field="create_time")
        request = dataset_service_pb2.ListDatasetsRequest(filter=api_filter, page_size=paging.page_size,
                                                          page_token=paging.page_token, order_by=paging.order_by)
        response = await self._call(self._datasets.ListDatasets if self._datasets else None, request, token)
        return {"filter": api_filter, **message_document(response)}

    async def dataset(self, token: str, dataset_id: str, paging: Paging) -> Document:
        response = await self._call(self._datasets.GetDataset if self._datasets else None,
                                    dataset_service_pb2.GetDatasetRequest(dataset_id=dataset_id), token)
        files = await self._call(self._datasets.ListDatasetFiles if self._datasets else None,
                                 dataset_service_pb2.ListDatasetFilesRequest(
                                     dataset_id=dataset_id, page_size=paging.page_size,
                                     page_token=paging.page_token), token)
        return {"dataset": message_document(response.dataset), **message_document(files)}

    async def _dataset_or_none(self, token: str, dataset_id: str, paging: Paging) -> Document | None:
        if not dataset_id:
            return None
        try:
            return await self.dataset(token, dataset_id, paging)
        except Refused as refused:
            if refused.code == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    # -- the dashboard ----------------------------------------------------------------------------

    async def dashboard(self, token: str, query: Query) -> Document:
        """Jobs by state per queue and pilots connected (from the queues), tasks by state, and the
        failures of the last hours by error code."""
        hours = query.get("hours", ["12"])
        failed_filter = self._filter({"hours": hours}, self.fields.jobs, fixed=["state = FAILED"])
        queues, tasks, failures = await asyncio.gather(
            self.queues(token), self._count_tasks(token, "", ["state"]),
            self._count_jobs(token, failed_filter, ["error_code"]))
        return {"queues": queues["queues"], "tasksByState": tasks["groups"], "failuresByCode": failures["groups"],
                "failuresTotal": failures["totalSize"], "hours": hours[0],
                "pilotsConnected": sum(int(queue.get("connectedPilots", 0)) for queue in queues["queues"]),
                "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
