"""TaskService: thin mapping between the contract, the task store and the agents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc

from jedi_svc.domain import task_spec
from jedi_svc.domain.tasks import Task
from jedi_svc.logic.agents import Agents
from jedi_svc.servicers.convert import (
    count_group_to_proto,
    event_to_proto,
    params_to_dict,
    spec_from_params,
    state_from_text,
    task_to_proto,
)
from jedi_svc.settings import JediSettings
from jedi_svc.store.task_store import TaskStore
from panda.jedi.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from panda_runtime.contracts import jedi as jedi_contract
from panda_runtime.contracts import rules
from panda_runtime.contracts import server as server_contract
from panda_runtime.service.db import DbRunner
from panda_runtime.service.errors import InvalidArgument, PermissionDenied
from panda_runtime.service.filtering import int32, parse_filter
from panda_runtime.service.idempotency import request_digest
from panda_runtime.service.notify import Notifier
from panda_runtime.service.ordering import decode_page, encode_page, parse_group_by, parse_order_by
from panda_runtime.service.pagination import page_size
from panda_runtime.service.principals import current_principal

__all__ = ["FILTER_FIELDS", "GROUP_FIELDS", "SORT_FIELDS", "TaskServicer"]

FILTER_FIELDS: dict[str, Any] = {
    "task_id": int, "task_name": str, "owner": str, "vo": str, "working_group": str, "state": state_from_text,
    "priority": int32, "create_time": datetime, "update_time": datetime,
}
SORT_FIELDS = jedi_contract.TASK_SORT_FIELDS
GROUP_FIELDS = jedi_contract.TASK_GROUP_FIELDS
_SORT_KINDS = {name: FILTER_FIELDS[name] for name in SORT_FIELDS}


def _check_owner(task: Task, action: str) -> None:
    """A user acts on its own tasks; production on those of its VO; services and admins on any."""
    principal = current_principal()
    if not principal.may_act_for(task.owner, task.vo):
        raise PermissionDenied(
            f"task {task.task_id} belongs to {task.owner}: {principal.subject} may not {action} it"
        )


def _task_id(value: int) -> int:
    if value <= 0:
        raise InvalidArgument("task_id must be positive", field="task_id")
    return value


class TaskServicer(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(self, settings: JediSettings, db: DbRunner, store: TaskStore, agents: Agents,
                 task_events: Notifier) -> None:
        self._settings = settings
        self._db = db
        self._store = store
        self._agents = agents
        self._task_events = task_events

    async def SubmitTask(
        self, request: task_service_pb2.SubmitTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.SubmitTaskResponse:
        if not request.HasField("params"):
            raise InvalidArgument("params are required", field="params")
        rules.check_request_id(request.request_id)
        params = task_pb2.TaskParams()
        params.CopyFrom(request.params)
        # Checked before they name anyone: an owner or VO with a NUL is no one's.
        rules.check_text(params.owner, "params.owner", max_length=server_contract.MAX_OWNER_LENGTH)
        rules.check_text(params.vo, "params.vo", max_length=server_contract.MAX_VO_LENGTH)
        principal = current_principal()
        params.owner, params.vo = principal.submitting_as(params.owner, params.vo)
        spec = spec_from_params(params, params.owner, self._settings)
        task_spec.validate(spec)
        digest = request_digest(params) if request.request_id else ""
        view = await self._db.run(self._store.submit, spec, params_to_dict(params), request.request_id,
                                  caller=principal.subject, digest=digest)
        self._agents.wake()
        self._task_events.notify()
        return task_service_pb2.SubmitTaskResponse(task=task_to_proto(view))

    async def GetTask(
        self, request: task_service_pb2.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.GetTaskResponse:
        view = await self._db.run(self._store.get, _task_id(request.task_id))
        _check_owner(view.task, "see")
        return task_service_pb2.GetTaskResponse(task=task_to_proto(view))

    async def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.ListTasksResponse:
        limit = page_size(request.page_size)
        where = parse_filter(request.filter, FILTER_FIELDS)
        ordering = parse_order_by(request.order_by, _SORT_KINDS, "task_id")
        after = decode_page(request.page_token, ordering, _SORT_KINDS, request.filter, request.order_by)
        # One row more than the page: whether another page follows.
        views, total = await self._db.run(self._store.list_tasks, where, limit=limit + 1, ordering=ordering,
                                          after=after, scope=current_principal().scope())
        token = ""
        if len(views) > limit:
            views = views[:limit]
            last = views[-1].task
            token = encode_page(ordering, {name: getattr(last, name) for name in ordering.fields},
                                request.filter, request.order_by)
        return task_service_pb2.ListTasksResponse(tasks=[task_to_proto(v) for v in views], next_page_token=token,
                                                  total_size=total)

    async def CountTasks(
        self, request: task_service_pb2.CountTasksRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.CountTasksResponse:
        limit = page_size(request.page_size)
        where = parse_filter(request.filter, FILTER_FIELDS)
        group_by = parse_group_by(list(request.group_by), GROUP_FIELDS)
        counts = await self._db.run(self._store.count_tasks, where, group_by, limit=limit,
                                    scope=current_principal().scope())
        # No group_by: no groups, and none left off.
        shown = sum(count for _, count in counts.groups) if group_by else counts.total
        return task_service_pb2.CountTasksResponse(
            groups=[count_group_to_proto(group_by, values, count) for values, count in counts.groups],
            total_size=counts.total, left_off_count=counts.total - shown,
        )

    async def WatchTasks(
        self, request: task_service_pb2.WatchTasksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[task_service_pb2.WatchTasksResponse]:
        cursor = request.after_cursor
        if cursor < 0:
            raise InvalidArgument("after_cursor must not be negative", field="after_cursor")
        if request.task_id < 0:
            raise InvalidArgument("task_id must not be negative", field="task_id")
        if not cursor and request.from_now:
            cursor = await self._db.run(self._store.last_cursor)
        scope = current_principal().scope()
        # Accepted: the caller hears so now, not at the first event, which may be long in coming.
        await context.send_initial_metadata(())
        while not context.done():
            events = await self._db.run(self._store.events_after, cursor, task_id=request.task_id, scope=scope)
            for event in events:
                cursor = event.cursor
                yield task_service_pb2.WatchTasksResponse(event=event_to_proto(event))
            if not events:
                await self._task_events.wait(1.0)

    async def _command(self, task_id: int, kind: str, **kwargs: Any) -> task_pb2.Task:
        task_id = _task_id(task_id)
        server_contract.check_reason(str(kwargs.get("reason", "")))
        _check_owner((await self._db.run(self._store.get, task_id, history=False)).task, kind)
        view = await self._db.run(self._store.command, task_id, kind, **kwargs)
        self._agents.touch(task_id)
        self._task_events.notify()
        return task_to_proto(view)

    async def KillTask(
        self, request: task_service_pb2.KillTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.KillTaskResponse:
        task = await self._command(request.task_id, "kill", reason=request.reason)
        return task_service_pb2.KillTaskResponse(task=task)

    async def FinishTask(
        self, request: task_service_pb2.FinishTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.FinishTaskResponse:
        task = await self._command(request.task_id, "finish", reason=request.reason)
        return task_service_pb2.FinishTaskResponse(task=task)

    async def RetryTask(
        self, request: task_service_pb2.RetryTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.RetryTaskResponse:
        task = await self._command(request.task_id, "retry", reason=request.reason)
        return task_service_pb2.RetryTaskResponse(task=task)

    async def PauseTask(
        self, request: task_service_pb2.PauseTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.PauseTaskResponse:
        task = await self._command(request.task_id, "pause", reason=request.reason)
        return task_service_pb2.PauseTaskResponse(task=task)

    async def ResumeTask(
        self, request: task_service_pb2.ResumeTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.ResumeTaskResponse:
        task = await self._command(request.task_id, "resume", reason=request.reason)
        return task_service_pb2.ResumeTaskResponse(task=task)

    async def ReassignTask(
        self, request: task_service_pb2.ReassignTaskRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.ReassignTaskResponse:
        queues = [q.strip() for q in request.queues if q.strip()]
        if not queues:
            raise InvalidArgument("give at least one queue", field="queues")
        for name in queues:
            if not task_spec.QUEUE_NAME.fullmatch(name):
                raise InvalidArgument(f"{name[:80]!r} is not a queue name", field="queues")

        task = await self._command(request.task_id, "reassign", reason=request.reason, queues=queues)
        return task_service_pb2.ReassignTaskResponse(task=task)

    async def SetTaskPriority(
        self, request: task_service_pb2.SetTaskPriorityRequest, context: grpc.aio.ServicerContext
    ) -> task_service_pb2.SetTaskPriorityResponse:
        if abs(request.priority) > task_spec.MAX_PRIORITY:
            raise InvalidArgument(f"priority must be within ±{task_spec.MAX_PRIORITY}", field="priority")
        task = await self._command(request.task_id, "priority", priority=request.priority)
        return task_service_pb2.SetTaskPriorityResponse(task=task)
