"""The web monitor's HTTP edge: server-rendered pages under `/monitor/`, each also JSON
(`?json=1` or `Accept: application/json`), and its actions (POST forms with a CSRF token).

Who is looking: the request's `Authorization: Bearer` header (scripts), else the token the
monitor's sign-in keeps in the session cookie. With neither, a page sends the browser to sign in
and JSON gets 401. Every read and action goes to the services with that token, so the services
decide what each person sees and may do.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from monitor_gateway.domain import monitor_pages
from monitor_gateway.domain.monitor_filters import FilterError
from monitor_gateway.domain.statuses import http_status
from monitor_gateway.logic.monitor import Monitor, Refused
from monitor_gateway.servicers.monitor_auth import (
    MONITOR_PATH,
    SESSION_CSRF,
    SESSION_TOKEN,
    MonitorSignIn,
    SignInFailed,
)
from panda_runtime.contracts.jedi import TASK_COMMAND_STATES
from panda_runtime.contracts.server import JOB_COMMAND_STATES

__all__ = ["build_monitor", "session_token"]

log = logging.getLogger("panda.gateway.monitor")

_HERE = Path(__file__).parent
_SECURITY_HEADERS = {
    # Everything the pages use comes from the gateway itself; nothing inline runs.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

Page = Callable[[Request, str], Awaitable[dict[str, Any]]]


def session_token(request: Request) -> str | None:
    """The token a request reads with: its bearer header, else the signed-in session's."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip()
    session = request.scope.get("session")
    token = session.get(SESSION_TOKEN) if session is not None else None
    return str(token) if token else None


def _wants_json(request: Request) -> bool:
    if request.query_params.get("json") not in (None, "", "0", "false"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _query(request: Request) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)
    return query


def _int_path(request: Request, name: str) -> int:
    text = request.path_params[name]
    if not text.isdigit() or len(text) > 19:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"{text!r} is not an id", field=name)
    return int(text)


def _form_token_matches(session: Mapping[str, Any], sent: object) -> bool:
    """Whether a form brought the session's own form token (a form from another site cannot)."""
    expected = session.get(SESSION_CSRF)
    return bool(expected) and isinstance(sent, str) and secrets.compare_digest(sent, str(expected))


class MonitorApp:
    def __init__(self, monitor: Monitor, sign_in: MonitorSignIn | None) -> None:
        self._monitor = monitor
        self._sign_in_flow = sign_in
        self._templates = Environment(loader=FileSystemLoader(_HERE / "monitor_templates"),
                                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        self._templates.globals.update(base=MONITOR_PATH, with_params=monitor_pages.with_params,
                                       may_act=monitor_pages.may_act, task_commands=TASK_COMMAND_STATES,
                                       job_commands=JOB_COMMAND_STATES,
                                       job_fields=monitor.fields.jobs, task_fields=monitor.fields.tasks,
                                       quote=quote, sortable=monitor_pages.SORTABLE)

    # -- rendering --------------------------------------------------------------------------------

    def _html(self, request: Request, template: str, data: Mapping[str, Any], status_code: int = 200,
              viewer: Mapping[str, Any] | None = None) -> Response:
        session = request.scope.get("session")
        csrf = ""
        if session is not None:
            csrf = session.get(SESSION_CSRF) or secrets.token_urlsafe(24)
            session[SESSION_CSRF] = csrf
        body = self._templates.get_template(template).render(
            data=data, query=_query(request), path=request.url.path, csrf=csrf,
            signed_in=session_token(request) is not None, viewer=viewer or {})
        return HTMLResponse(body, status_code=status_code, headers=_SECURITY_HEADERS)

    def _refusal(self, request: Request, refused: Refused) -> Response:
        status_code = http_status(refused.code.value[0])
        if status_code == HTTPStatus.UNAUTHORIZED and not _wants_json(request):
            return self._sign_in(request)
        document = {"code": refused.code.value[0], "message": refused.message, "field": refused.field}
        if _wants_json(request):
            return Response(orjson.dumps({"error": document}), status_code=status_code, media_type="application/json")
        return self._html(request, "error.html", {"error": document, "status": status_code,
                                                  "phrase": HTTPStatus(status_code).phrase}, status_code)

    def _sign_in(self, request: Request) -> Response:
        next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{MONITOR_PATH}/auth/login?next={quote(next_path, safe='')}", status_code=303)

    def page(self, template: str, read: Page) -> Callable[[Request], Awaitable[Response]]:
        """A page: the document `read` makes with the viewer's token, as HTML or as JSON."""

        async def endpoint(request: Request) -> Response:
            if self._sign_in_flow is not None:
                await self._sign_in_flow.renew_if_ending(request)
            token = session_token(request)
            if token is None:
                if _wants_json(request):
                    return Response(orjson.dumps({"error": {"code": 16, "message": "sign in first"}}),
                                    status_code=401, media_type="application/json",
                                    headers={"WWW-Authenticate": 'Bearer realm="panda-mesh"'})
                return self._sign_in(request)
            try:
                data, viewer = await asyncio.gather(read(request, token), self._monitor.who(token))
            except FilterError as error:
                return self._refusal(request, Refused(grpc.StatusCode.INVALID_ARGUMENT, error.message,
                                                      field=error.parameter))
            except Refused as refused:
                return self._refusal(request, refused)
            if _wants_json(request):
                return Response(orjson.dumps(data), media_type="application/json")
            return self._html(request, template, data, viewer=viewer)

        return endpoint

    # -- pages ------------------------------------------------------------------------------------

    async def dashboard(self, request: Request, token: str) -> dict[str, Any]:
        return await self._monitor.dashboard(token, _query(request))

    async def jobs(self, request: Request, token: str) -> dict[str, Any]:
        query = _query(request)
        return await self._monitor.jobs(token, query, monitor_pages.paging_of(query, "jobs"))

    async def job(self, request: Request, token: str) -> dict[str, Any]:
        return await self._monitor.job(token, _int_path(request, "job_id"))

    async def tasks(self, request: Request, token: str) -> dict[str, Any]:
        query = _query(request)
        return await self._monitor.tasks(token, query, monitor_pages.paging_of(query, "tasks"))

    async def task(self, request: Request, token: str) -> dict[str, Any]:
        query = _query(request)
        return await self._monitor.task(token, _int_path(request, "task_id"), query,
                                        monitor_pages.paging_of(query, "jobs"))

    async def errors(self, request: Request, token: str) -> dict[str, Any]:
        return await self._monitor.errors(token, _query(request))

    async def queues(self, request: Request, token: str) -> dict[str, Any]:
        query = _query(request)
        return await self._monitor.queues_page(token, monitor_pages.paging_of(query, "queues"))

    async def queue(self, request: Request, token: str) -> dict[str, Any]:
        query = _query(request)
        return await self._monitor.queue(token, request.path_params["queue_id"], query,
                                         monitor_pages.paging_of(query, "jobs"))

    async def users(self, request: Request, token: str) -> dict[str, Any]:
        query = _query(request)
        return await self._monitor.users(token, query, monitor_pages.paging_of(query, "users"))

    async def datasets(self, request: Request, token: str) -> dict[str, Any]:
        query = _query(request)
        return await self._monitor.datasets(token, query, monitor_pages.paging_of(query, "datasets"))

    async def dataset(self, request: Request, token: str) -> dict[str, Any]:
        query = _query(request)
        return await self._monitor.dataset(token, request.path_params["dataset_id"],
                                           monitor_pages.paging_of(query, None))

    # -- signing in and out -----------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if self._sign_in_flow is None:
            return self._refusal(request, Refused(grpc.StatusCode.UNIMPLEMENTED,
                                                  "this monitor has no sign-in: send a bearer token"))
        try:
            return await self._sign_in_flow.start(request, request.query_params.get("next"))
        except Exception as error:  # the identity service's discovery document out of reach
            log.warning("monitor sign-in could not start: %s", error)
            return self._refusal(request, Refused(grpc.StatusCode.UNAVAILABLE,
                                                  "the identity service is unavailable: try again shortly"))

    async def callback(self, request: Request) -> Response:
        if self._sign_in_flow is None:
            return self._refusal(request, Refused(grpc.StatusCode.UNIMPLEMENTED, "this monitor has no sign-in"))
        try:
            return RedirectResponse(await self._sign_in_flow.finish(request), status_code=303)
        except SignInFailed as failed:
            return self._refusal(request, Refused(grpc.StatusCode.PERMISSION_DENIED,
                                                  f"signing in failed: {failed}. Sign in again."))

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        session = request.scope.get("session")
        if session is not None and _form_token_matches(session, form.get("csrf")):
            session.clear()
        return RedirectResponse(MONITOR_PATH + "/", status_code=303)

    # -- actions ----------------------------------------------------------------------------------

    def action(self, act: Callable[[Request, str, str], Awaitable[str]]) -> Callable[[Request], Awaitable[Response]]:
        """A form's POST: signed in, with the session's form token; then back to the page."""

        async def endpoint(request: Request) -> Response:
            token = session_token(request)
            if token is None:
                return self._sign_in(request)
            form = await request.form()
            # A bearer header is not sent by a browser on its own: only the cookie needs the check.
            if not request.headers.get("authorization") and not _form_token_matches(
                    request.scope.get("session") or {}, form.get("csrf")):
                return self._refusal(request, Refused(grpc.StatusCode.PERMISSION_DENIED,
                                                      "the form is stale or not this site's: reload the page",
                                                      field="csrf"))
            reason = str(form.get("reason") or "from the web monitor")[:500]
            try:
                back = await act(request, token, reason)
            except Refused as refused:
                return self._refusal(request, refused)
            return RedirectResponse(back, status_code=303)

        return endpoint

    async def kill_job(self, request: Request, token: str, reason: str) -> str:
        job_id = _int_path(request, "job_id")
        await self._monitor.kill_job(token, job_id, reason)
        return f"{MONITOR_PATH}/jobs/{job_id}"

    async def reassign_job(self, request: Request, token: str, reason: str) -> str:
        job_id = _int_path(request, "job_id")
        form = await request.form()
        await self._monitor.reassign_job(token, job_id, str(form.get("queue") or "").strip()[:64])
        return f"{MONITOR_PATH}/jobs/{job_id}"

    async def task_action(self, request: Request, token: str, reason: str) -> str:
        task_id = _int_path(request, "task_id")
        action = request.path_params["action"]
        if action not in ("kill", "finish", "retry"):
            raise Refused(grpc.StatusCode.NOT_FOUND, f"no action {action!r} on tasks")
        await self._monitor.task_action(token, task_id, action, reason)
        return f"{MONITOR_PATH}/tasks/{task_id}"


def build_monitor(monitor: Monitor, sign_in: MonitorSignIn | None) -> Starlette:
    """The monitor's routes, to be mounted at MONITOR_PATH (under a session middleware)."""
    app = MonitorApp(monitor, sign_in)
    return Starlette(routes=[
        Route("/auth/login", app.login, methods=["GET"]),
        Route("/auth/callback", app.callback, methods=["GET"]),
        Route("/auth/logout", app.logout, methods=["POST"]),
        Route("/", app.page("dashboard.html", app.dashboard), methods=["GET"]),
        Route("/jobs", app.page("jobs.html", app.jobs), methods=["GET"]),
        Route("/jobs/{job_id}", app.page("job.html", app.job), methods=["GET"]),
        Route("/jobs/{job_id}/kill", app.action(app.kill_job), methods=["POST"]),
        Route("/jobs/{job_id}/reassign", app.action(app.reassign_job), methods=["POST"]),
        Route("/tasks", app.page("tasks.html", app.tasks), methods=["GET"]),
        Route("/tasks/{task_id}", app.page("task.html", app.task), methods=["GET"]),
        Route("/tasks/{task_id}/{action}", app.action(app.task_action), methods=["POST"]),
        Route("/errors", app.page("errors.html", app.errors), methods=["GET"]),
        Route("/queues", app.page("queues.html", app.queues), methods=["GET"]),
        Route("/queues/{queue_id}", app.page("queue.html", app.queue), methods=["GET"]),
        Route("/users", app.page("users.html", app.users), methods=["GET"]),
        Route("/datasets", app.page("datasets.html", app.datasets), methods=["GET"]),
        Route("/datasets/{dataset_id:path}", app.page("dataset.html", app.dataset), methods=["GET"]),
        Mount("/static", StaticFiles(directory=_HERE / "monitor_static"), name="monitor-static"),
    ])
