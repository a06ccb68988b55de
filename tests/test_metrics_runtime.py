"""The shared metrics pieces every service uses, in process: `/metrics` served on that path
only, the build info, a database engine's statements and pool, and the HTTP middleware that
names requests by their route's template."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Scope

from panda_runtime.service.db import make_engine
from panda_runtime.service.http_metrics import HttpMetrics
from panda_runtime.service.metrics import (
    EnginePoolCollector,
    build_version,
    serve_metrics,
    start_metrics,
    statement_kind,
)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_are_served_on_their_path_and_nowhere_else() -> None:
    registry = CollectorRegistry()
    Counter("probe_total", "A counter of this test.", registry=registry).inc()
    server = serve_metrics("127.0.0.1", 0, registry)
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, body = _get(f"{base}/metrics")
        assert status == 200 and "probe_total 1.0" in body
        assert _get(f"{base}/metrics?name[]=probe_total")[0] == 200
        for path in ("/", "/favicon.ico", "/metrics/", "/metrics/x", "/other", "/jobs/12"):
            status, body = _get(base + path)
            assert status == 404, path
            assert "probe_total" not in body
    finally:
        server.close()


def test_a_service_s_metrics_name_its_build_and_its_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'metrics.db'}")
    registry = CollectorRegistry()
    before = REGISTRY.get_sample_value("panda_db_statement_seconds_count", {"statement": "select"}) or 0.0
    metrics = start_metrics("127.0.0.1", 0, component="probe", engine=engine, registry=registry)
    try:
        assert metrics.server is None  # port 0: not served
        with engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar()
        after = REGISTRY.get_sample_value("panda_db_statement_seconds_count", {"statement": "select"})
        assert after == before + 1
        assert REGISTRY.get_sample_value("panda_build_info", {"version": build_version(), "component": "probe"}) == 1
        assert registry.get_sample_value("panda_db_pool_connections", {"state": "in_use"}) == 0
        assert (registry.get_sample_value("panda_db_pool_connections", {"state": "idle"}) or 0) >= 1
        assert (registry.get_sample_value("panda_db_pool_capacity") or 0) >= 1
        with engine.connect():
            assert registry.get_sample_value("panda_db_pool_connections", {"state": "in_use"}) == 1
    finally:
        metrics.close()
        engine.dispose()
    assert registry.get_sample_value("panda_db_pool_capacity") is None  # unregistered


def test_the_pool_of_a_postgresql_engine_reports_its_capacity() -> None:
    from tools.cluster import POSTGRES_ADMIN_URL

    engine = make_engine(POSTGRES_ADMIN_URL, pool_size=3)
    try:
        registry = CollectorRegistry()
        registry.register(EnginePoolCollector(engine))
        assert registry.get_sample_value("panda_db_pool_capacity") == 6  # its size and as many more
    finally:
        engine.dispose()


@pytest.mark.parametrize(("statement", "kind"), [
    ("SELECT 1", "select"), ("  select * from jobs", "select"), ("INSERT INTO x VALUES (1)", "insert"),
    ("UPDATE jobs SET a = 1", "update"), ("DELETE FROM x", "delete"), ("WITH locked AS (SELECT 1) SELECT 1", "with"),
    ("BEGIN IMMEDIATE", "begin"), ("PRAGMA journal_mode=WAL", "pragma"), ("(SELECT 1) UNION (SELECT 2)", "select"),
    ("VACUUM", "other"), ("", "other"), ("SELECT pg_try_advisory_xact_lock(1)", "select"),
])
def test_statements_are_labelled_by_their_first_keyword(statement: str, kind: str) -> None:
    assert statement_kind(statement) == kind


# -- HTTP ------------------------------------------------------------------------------------


async def _item(request: Request) -> Response:
    return PlainTextResponse(request.path_params["item_id"])


async def _job(request: Request) -> Response:
    return PlainTextResponse(str(request.path_params["job_id"]))


async def _boom(request: Request) -> Response:
    raise RuntimeError("broken on purpose")


def _app(**options: object) -> Starlette:
    return Starlette(middleware=[Middleware(HttpMetrics, **options)], routes=[  # type: ignore[arg-type]
        Route("/items/{item_id}", _item, methods=["GET"]),
        Route("/boom", _boom),
        Mount("/api/v1", routes=[Route("/jobs/{job_id:int}", _job, methods=["GET", "POST"])]),
        Mount("/static", app=PlainTextResponse("a file")),
    ])


def _requests(route: str, method: str, code: int) -> float:
    return REGISTRY.get_sample_value(
        "panda_http_requests_total", {"route": route, "method": method, "code": str(code)}) or 0.0


def _timed(route: str, method: str) -> float:
    return REGISTRY.get_sample_value(
        "panda_http_request_duration_seconds_count", {"route": route, "method": method}) or 0.0


def _call(app: Starlette, method: str, path: str) -> int:
    async def call() -> int:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.request(method, path)).status_code

    return asyncio.run(call())


def test_http_requests_are_counted_by_route_template_never_by_path() -> None:
    app = _app()
    cases = [
        ("GET", "/items/1", "/items/{item_id}", 200),
        ("GET", "/items/2", "/items/{item_id}", 200),
        ("DELETE", "/items/3", "/items/{item_id}", 405),  # the path matched the route, the method did not
        ("GET", "/api/v1/jobs/7", "/api/v1/jobs/{job_id:int}", 200),  # under a mount: the whole template
        ("GET", "/nowhere/8", "unmatched", 404),
        ("GET", "/api/v1/jobs/not-a-number", "unmatched", 404),
        ("GET", "/static/css/site.css", "/static/{path:path}", 200),  # a mounted app
        ("GET", "/boom", "/boom", 500),  # the app raised: Starlette answers 500
        ("BREW", "/items/4", "/items/{item_id}", 405),  # not a standard method: "other"
    ]
    before = {(route, method, code): _requests(route, "other" if method == "BREW" else method, code)
              for method, _, route, code in cases}
    timed_before = _timed("/items/{item_id}", "GET")
    for method, path, _, code in cases:
        assert _call(app, method, path) == code, path
    expected: dict[tuple[str, str, int], float] = {}
    for method, _, route, code in cases:
        expected[(route, method, code)] = expected.get((route, method, code), 0) + 1
    for (route, method, code), times in expected.items():
        label = "other" if method == "BREW" else method
        assert _requests(route, label, code) == before[(route, method, code)] + times, (route, method, code)
    assert _timed("/items/{item_id}", "GET") == timed_before + 2
    for raw in ("/items/1", "/items/2", "/api/v1/jobs/7", "/nowhere/8"):
        assert _requests(raw, "GET", 200) == 0 and _requests(raw, "GET", 404) == 0


def test_an_app_with_its_own_routes_names_them_itself() -> None:
    def by_first_part(scope: Scope) -> str | None:
        parts = str(scope["path"]).split("/")
        return f"/{parts[1]}/*" if parts[1] == "items" else None

    app = _app(route_name=by_first_part)
    before = _requests("/items/*", "GET", 200), _requests("unmatched", "GET", 200)
    assert _call(app, "GET", "/items/9") == 200
    assert _call(app, "GET", "/api/v1/jobs/9") == 200  # the namer knows no name for it
    assert (_requests("/items/*", "GET", 200), _requests("unmatched", "GET", 200)) == (before[0] + 1, before[1] + 1)
