"""The HTTP/JSON gateway in front of a real server, JEDI and identity service, over real sockets:
every annotated RPC reached through its route, answers equal to the gRPC call's, errors with
grpc-gateway's statuses and the service's typed details, streams as NDJSON and server-sent
events (resumed with Last-Event-ID), the caller's token passed through, limits, the OpenAPI
document and its page, and a schemathesis run with no 5xx answer. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from monitor_gateway.domain.requests import message_class
from monitor_gateway.domain.routes import Route
from monitor_gateway.domain.statuses import http_status
from monitor_gateway.main import all_routes
from panda_runtime.client.credentials import ClientCredentialsToken
from tests.jedi_support import JediHandle, adler32_of, new_jedi
from tests.server_support import QueueStubs, ensure_storage_element, token_channel
from tools.cluster import (
    GatewayHandle,
    IdentityHandle,
    ServerHandle,
    drop_database,
    fresh_database,
    start_gateway,
    start_server,
)

pytestmark = pytest.mark.e2e

ROUTES = all_routes()


@dataclass
class Mesh:
    identity: IdentityHandle
    server: ServerHandle
    jedi: JediHandle
    gateway: GatewayHandle
    se_dir: Path

    def http(self, user: str | None = "admin", headers: dict[str, str] | None = None) -> httpx.Client:
        token = {"Authorization": f"Bearer {self.identity.token(user)}"} if user else {}
        return httpx.Client(base_url=self.gateway.url, headers={**token, **(headers or {})}, timeout=30)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         identity: IdentityHandle) -> Iterator[Mesh]:
    base = tmp_path_factory.mktemp(f"gateway-{request.param}")
    database = fresh_database(request.param, base, f"panda_test_{uuid.uuid4().hex[:10]}")
    server = start_server(base, database, identity.trust_env())
    jedi = new_jedi(server, base / "logs", **identity.robot_env("panda-jedi"))
    jedi.start()
    gateway = start_gateway(base, server_address=server.address, iam_address=identity.address,
                            jedi_address=jedi.address, extra_env={"PANDA_GATEWAY_MAX_STREAMS": "40"})
    se_dir = base / "se" / "gwse"
    with token_channel(server.address, identity) as channel:
        ensure_storage_element(QueueStubs(channel).storage, se_dir)
    try:
        yield Mesh(identity, server, jedi, gateway, se_dir)
    finally:
        gateway.stop()
        jedi.stop()
        server.stop()
        drop_database(database)


def _sample(field: FieldDescriptor) -> str:
    return "1" if field.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES) else "gw-sample"


def _leaf(route: Route, variable: str) -> FieldDescriptor:
    message = route.request_type
    field = None
    for part in variable.split("."):
        field = message.fields_by_name[part]
        message = field.message_type
    assert field is not None
    return field


def _fill(route: Route) -> tuple[str, Message]:
    """The route's path with a sample value in each variable, and the request message that path
    means, made here independently of the gateway's own rules."""
    path = route.template.text
    request = message_class(route.request_type)()
    for variable in route.template.variables:
        value = "groups/gw-sample/x" if variable in route.template.multi_segment else _sample(_leaf(route, variable))
        start = path.index("{" + variable)
        path = path[:start] + value + path[path.index("}", start) + 1:]
        holder: Any = request
        parts = variable.split(".")
        for part in parts[:-1]:
            holder = getattr(holder, part)
        setattr(holder, parts[-1], int(value) if value.isdigit() else value)
    return path, request


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.http_method} {r.template.text}")
def test_every_route_reaches_its_rpc_on_its_service(mesh: Mesh, route: Route) -> None:
    """Generated from the descriptors: without a token, the service itself refuses, naming the
    RPC it was asked for: the route went to that RPC of that service."""
    path, _ = _fill(route)
    with mesh.http(None) as http:
        response = http.request(route.http_method, path, json={} if route.body else None)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["code"] == 16 and route.rpc in body["message"], body


READS = [route for route in ROUTES if route.http_method == "GET" and not route.server_streaming]


@pytest.mark.parametrize("route", READS, ids=lambda r: f"{r.http_method} {r.template.text}")
def test_every_read_answers_as_its_grpc_call_does(mesh: Mesh, route: Route) -> None:
    """Generated from the descriptors: the same request over HTTP and over gRPC, with the same
    token, gets the same answer: the same status, or the same message in protobuf's JSON."""
    path, request = _fill(route)
    with mesh.http() as http:
        over_http = http.get(path)
    address = {"panda.server": mesh.server.address, "panda.harvester": mesh.server.address,
               "panda.jedi": mesh.jedi.address, "panda.iam": mesh.identity.address}[route.service.rsplit(".", 2)[0]]
    with token_channel(address, mesh.identity) as channel:
        call = channel.unary_unary(route.rpc, request_serializer=type(request).SerializeToString,
                                   response_deserializer=message_class(route.response_type).FromString)
        try:
            direct = call(request, timeout=10)
        except grpc.RpcError as error:
            assert over_http.status_code == http_status(error.code().value[0]), over_http.text
            assert over_http.json()["message"] == error.details()
            return
    assert over_http.status_code == 200, over_http.text
    assert over_http.json() == json_format.MessageToDict(direct, always_print_fields_with_no_presence=True)


def test_the_callers_token_goes_through_untouched(mesh: Mesh) -> None:
    for user in ("admin", "alice"):
        with mesh.http(user) as http:
            assert http.get("/v1/whoami").json()["subject"] == user
    with mesh.http(None, headers={"Authorization": "Bearer not-a-token"}) as http:
        refused = http.get("/v1/whoami")
    assert refused.status_code == 401 and refused.json()["code"] == 16


def _submit(http: httpx.Client, queue: str, **job: Any) -> dict[str, Any]:
    response = http.post("/v1/jobs:submit", json={"jobs": [{"queue": queue, "command": ["true"], **job}]})
    assert response.status_code == 200, response.text
    return response.json()["jobs"][0]  # type: ignore[no-any-return]


@pytest.fixture
def queue(mesh: Mesh) -> str:
    name = f"gw-{uuid.uuid4().hex[:6]}"
    with mesh.http() as http:
        created = http.post("/v1/queues", json={"queueId": name, "status": "STATUS_ONLINE",
                                                "storageElement": mesh.se_dir.name})
    assert created.status_code == 200, created.text
    return name


def test_json_both_ways_is_protobufs_mapping(mesh: Mesh, queue: str) -> None:
    with mesh.http() as http:
        job = _submit(http, queue, priority=7, environment={"STEP": "gw"})
        assert isinstance(job["jobId"], str) and job["jobId"].isdigit()  # int64 as a string
        assert job["state"] == "STATE_ACTIVATED"  # enums by name
        assert job["errorCode"] == 0 and job["pilotId"] == ""  # unpopulated fields are there
        again = http.get(f"/v1/jobs/{job['jobId']}").json()["job"]
        assert (again["priority"], again["environment"]) == (7, {"STEP": "gw"})
        # Field names as written in the .proto are read too; a number for an int64 as well.
        bumped = http.post("/v1/jobs:setPriority", json={"job_ids": [int(job["jobId"])], "priority": 9})
        assert bumped.status_code == 200, bumped.text
        assert http.get(f"/v1/jobs/{job['jobId']}").json()["job"]["priority"] == 9
        unknown = http.post("/v1/jobs:submit", json={"jobs": [{"queue": queue, "command": ["true"], "colour": 1}]})
        assert unknown.status_code == 400
        assert unknown.json()["details"][0]["fieldViolations"][0]["field"] == "colour"


def test_the_monitors_reads_over_http_counts_sorted_pages_and_error_codes(mesh: Mesh, queue: str) -> None:
    with mesh.http() as http:
        ids = [_submit(http, queue, priority=p)["jobId"] for p in (3, 9, 5)]
        mine = f'queue = "{queue}"'
        counted = http.get("/v1/jobs:count", params=[
            ("filter", f"{mine} AND (priority > 4 OR priority < 0)"), ("group_by", "state"), ("group_by", "priority"),
        ])
        assert counted.status_code == 200, counted.text
        assert counted.json() == {"groups": [{"values": ["STATE_ACTIVATED", "5"], "count": "1"},
                                             {"values": ["STATE_ACTIVATED", "9"], "count": "1"}],
                                  "totalSize": "2", "leftOffCount": "0"}
        page = http.get("/v1/jobs", params={"filter": mine, "order_by": "priority desc", "page_size": 2}).json()
        assert [job["jobId"] for job in page["jobs"]] == [ids[1], ids[2]]
        rest = http.get("/v1/jobs", params={"filter": mine, "order_by": "priority desc", "page_size": 2,
                                            "page_token": page["nextPageToken"]}).json()
        assert [job["jobId"] for job in rest["jobs"]] == [ids[0]] and rest["nextPageToken"] == ""
        other = http.get("/v1/jobs", params={"filter": mine, "order_by": "priority",
                                             "page_token": page["nextPageToken"]})
        assert other.status_code == 400
        assert other.json()["details"][0]["fieldViolations"][0]["field"] == "page_token"
    with mesh.http("alice") as http:
        codes = http.get("/v1/errorCodes").json()["errorCodes"]
    by_code = {code["code"]: code for code in codes}  # an int32 is a JSON number
    assert (by_code[1305]["name"], by_code[1305]["source"]) == ("PAYLOADEXECUTIONFAILURE", "SOURCE_PILOT")
    assert (by_code[100]["meaning"], by_code[100]["source"]) == ("lost heartbeat", "SOURCE_SERVER")


def test_errors_carry_the_services_status_and_details_with_grpc_gateways_http_status(
        mesh: Mesh, queue: str) -> None:
    with mesh.http() as admin, mesh.http("alice") as alice:
        job = _submit(admin, queue)
        missing = admin.get("/v1/jobs/999999")
        assert missing.status_code == 404
        assert missing.json()["details"] == [{"@type": "type.googleapis.com/google.rpc.ResourceInfo",
                                              "resourceType": "job", "resourceName": "jobs/999999",
                                              "owner": "", "description": ""}]
        bad = admin.post("/v1/jobs:submit", json={"jobs": [{"queue": queue, "command": []}]})
        assert bad.status_code == 400 and bad.json()["code"] == 3
        violation = bad.json()["details"][0]
        assert violation["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        assert violation["fieldViolations"][0]["field"].startswith("jobs[0]")
        denied = alice.post("/v1/queues", json={"queueId": "alices-own", "storageElement": mesh.se_dir.name})
        assert denied.status_code == 403 and denied.json()["code"] == 7
        group = f"/panda/gw{uuid.uuid4().hex[:6]}"
        assert admin.post("/v1/groups", json={"path": group}).status_code == 200
        twice = admin.post("/v1/groups", json={"path": group})
        assert twice.status_code == 409 and twice.json()["code"] == 6
        # A group's path has slashes: the route takes the rest of the path.
        assert admin.delete(f"/v1/groups{group}").status_code == 200
        assert group not in {g["path"] for g in admin.get("/v1/groups").json()["groups"]}
        assert admin.get("/v1/jobz").status_code == 404
        wrong_method = admin.put(f"/v1/jobs/{job['jobId']}")
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"
        assert wrong_method.json() == {"code": 12, "message": "Method Not Allowed", "details": []}


def test_harvesters_registry_is_the_servers_over_http(mesh: Mesh, queue: str) -> None:
    """The gateway sends panda.harvester's routes to the server, which keeps harvester's registry:
    an instance registers and reports with its robot's token; anyone signed in reads its worker;
    operators' calls and the instances' own are refused to a user."""
    robot = ClientCredentialsToken(mesh.identity.issuer, "panda-harvester", mesh.identity.secrets["panda-harvester"])
    harvester_id = f"gw-h{uuid.uuid4().hex[:6]}"
    worker_id = f"{harvester_id}-1"
    with httpx.Client(base_url=mesh.gateway.url, headers={"Authorization": f"Bearer {robot.token()}"},
                      timeout=30) as http:
        registered = http.post("/v1/harvesters:register", json={"harvesterId": harvester_id, "version": "1.0",
                                                                "queueConfigs": [{
            "queueId": queue, "online": True, "mapType": "MAP_TYPE_PULL", "messenger": "MESSENGER_GRPC",
            "plugin": "local", "maxWorkers": 5, "queueLimitWorkers": 2}]})
        assert registered.status_code == 200, registered.text
        assert registered.json()["harvester"]["queues"] == [queue]
        reported = http.post(f"/v1/harvesters/{harvester_id}:reportWorkers", json={"workers": [
            {"workerId": worker_id, "queue": queue, "plugin": "local", "state": "STATE_RUNNING"}]})
        assert reported.status_code == 200, reported.text
        assert [result.get("code", 0) for result in reported.json()["results"]] == [0]
    with mesh.http("alice") as http:
        worker = http.get(f"/v1/workers/{worker_id}").json()["worker"]
        assert (worker["state"], worker["harvesterId"], worker["queue"]) == ("STATE_RUNNING", harvester_id, queue)
        listed = http.get("/v1/workers", params={"harvester_id": harvester_id, "states": "STATE_RUNNING"}).json()
        assert [w["workerId"] for w in listed["workers"]] == [worker_id] and listed["totalSize"] == "1"
        counts = http.get(f"/v1/queueConfigs/{queue}").json()["queueConfig"]["workerCounts"]
        assert counts == {"running": "1"}
        assert http.post(f"/v1/workers/{worker_id}:kill", json={}).status_code == 403
        assert http.get("/v1/queueLoads").status_code == 403
    with mesh.http() as http:
        kill = http.post(f"/v1/workers/{worker_id}:kill", json={"reason": "over HTTP"})
        assert kill.status_code == 200, kill.text
        assert (kill.json()["command"]["kind"], kill.json()["command"]["state"]) == ("KIND_KILL_WORKER",
                                                                                     "STATE_PENDING")


def test_resource_ids_with_colons_route_to_the_right_rpc(mesh: Mesh) -> None:
    name = f"mc23:user.admin.gw{uuid.uuid4().hex[:6]}"
    data = b"events\n" * 10
    (mesh.se_dir / "user.admin").mkdir(parents=True, exist_ok=True)
    (mesh.se_dir / "user.admin" / "gw.0001.dat").write_bytes(data)
    with mesh.http() as http:
        registered = http.post("/v1/datasets", json={
            "dataset": {"datasetId": name, "scope": "user.admin"},
            "files": [{"lfn": "gw.0001.dat", "sizeBytes": len(data), "adler32": adler32_of(data),
                       "storageElements": [mesh.se_dir.name]}]})
        assert registered.status_code == 200, registered.text
        assert http.get(f"/v1/datasets/{name}").json()["dataset"]["datasetId"] == name
        files = http.get(f"/v1/datasets/{name}/files").json()["files"]
        assert [f["lfn"] for f in files] == ["gw.0001.dat"]


def test_a_limit_on_request_bodies(mesh: Mesh) -> None:
    with mesh.http() as http:
        huge = http.post("/v1/jobs:submit", content=b"{" + b" " * (5 * 1024 * 1024) + b"}",
                         headers={"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["code"] == 3


def _lines(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for line in response.iter_lines():
        if line.strip():
            found.append(json.loads(line))
            if len(found) == count:
                break
    return found


def _events(response: httpx.Response, count: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(event id, event type, data) of the first `count` server-sent events."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    event_id = kind = ""
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif not line and data:
            found.append((event_id, kind or "message", json.loads("".join(data))))
            event_id, kind, data = "", "", []
            if len(found) == count:
                break
    return found


def test_watch_as_newline_delimited_json(mesh: Mesh, queue: str) -> None:
    with mesh.http() as http:
        first, second = _submit(http, queue), _submit(http, queue)
        ids = [first["jobId"], second["jobId"]]
        with http.stream("GET", "/v1/jobs:watch", params=[("job_ids", i) for i in ids]) as watch:
            assert watch.status_code == 200
            assert watch.headers["content-type"].startswith("application/x-ndjson")
            lines = _lines(watch, 2)
    assert [line["result"]["event"]["jobId"] for line in lines] == ids
    assert all(line["result"]["event"]["state"] == "STATE_ACTIVATED" for line in lines)


def test_watch_as_server_sent_events_resumes_after_the_last_event_id(mesh: Mesh, queue: str) -> None:
    with mesh.http(headers={"Accept": "text/event-stream"}) as http:
        jobs = [_submit(http, queue)["jobId"] for _ in range(3)]
        params = [("job_ids", i) for i in jobs]
        with http.stream("GET", "/v1/jobs:watch", params=params) as watch:
            assert watch.headers["content-type"].startswith("text/event-stream")
            events = _events(watch, 3)
        assert [data["event"]["jobId"] for _, _, data in events] == jobs
        assert [event_id for event_id, _, _ in events] == [data["event"]["cursor"] for _, _, data in events]
        # Reconnecting with the first event's id: the stream goes on with the second.
        with http.stream("GET", "/v1/jobs:watch", params=params,
                         headers={"Last-Event-ID": events[0][0]}) as resumed:
            again = _events(resumed, 2)
        assert [data["event"]["jobId"] for _, _, data in again] == jobs[1:]


def test_a_stream_refused_at_once_is_an_http_error_and_one_that_fails_later_ends_with_an_error_line(
        mesh: Mesh) -> None:
    with mesh.http() as http:
        refused = http.get("/v1/jobs:watch", params={"after_cursor": "-1"})
        assert refused.status_code == 400 and refused.json()["code"] == 3
        not_a_cursor = http.get("/v1/jobs:watch", headers={"Last-Event-ID": "yesterday"})
        assert not_a_cursor.status_code == 400
        # A deadline the caller asked for ends the stream: the last line says how.
        with http.stream("GET", "/v1/jobs:watch", params={"from_now": "true"},
                         headers={"Grpc-Timeout": "500m"}) as watch:
            assert watch.status_code == 200
            lines = _lines(watch, 1)
        assert lines[0]["error"]["code"] == 4  # DEADLINE_EXCEEDED
        with http.stream("GET", "/v1/tasks:watch", params={"from_now": "true"},
                         headers={"Grpc-Timeout": "500m", "Accept": "text/event-stream"}) as watch:
            events = _events(watch, 1)
        assert events[0][1] == "error" and events[0][2]["code"] == 4


def test_one_caller_cannot_take_every_stream(mesh: Mesh) -> None:
    """The gateway serves 40 streams here; one caller gets 4 of them, the next is refused 429,
    and another caller still gets one."""
    with mesh.http("alice") as alice, mesh.http("bob") as bob:
        opened = [alice.stream("GET", "/v1/jobs:watch", params={"from_now": "true"}) for _ in range(4)]
        try:
            for stream in opened:
                assert stream.__enter__().status_code == 200
            refused = alice.get("/v1/jobs:watch", params={"from_now": "true"})
            assert refused.status_code == 429 and refused.json()["code"] == 8
            with bob.stream("GET", "/v1/jobs:watch", params={"from_now": "true"},
                            headers={"Grpc-Timeout": "200m"}) as other:
                assert other.status_code == 200
        finally:
            for stream in opened:
                stream.__exit__(None, None, None)


def test_an_unreachable_service_is_503_naming_the_service_not_its_address(
        mesh: Mesh, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, server_address=mesh.server.address, iam_address=mesh.identity.address)
    try:
        with httpx.Client(base_url=gateway.url,
                          headers={"Authorization": f"Bearer {mesh.identity.token('admin')}"}) as http:
            response = http.get("/v1/tasks/1")
    finally:
        gateway.stop()
    assert response.status_code == 503
    assert response.json()["message"] == "panda.jedi.v1.TaskService is unavailable; try again later"


def test_the_openapi_document_and_its_page_are_served_with_nothing_from_elsewhere(mesh: Mesh) -> None:
    with mesh.http(None) as http:
        document = http.get("/openapi.json").json()
        assert document["openapi"] == "3.1.0" and "/v1/jobs/{job_id}" in document["paths"]
        page = http.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text
        assert "http" not in page.text.replace('lang="en"', "")  # every asset relative, served here
        for asset in ("docs/assets/swagger-ui-bundle.js", "docs/assets/swagger-ui.css", "docs/init.js"):
            assert http.get("/" + asset).status_code == 200, asset


def test_schemathesis_finds_no_server_error(mesh: Mesh, tmp_path: Path) -> None:
    """Property-based requests from /openapi.json against every route but the endless watches,
    as a user without roles: no answer is a 5xx, and every answer is the type the document says."""
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{mesh.gateway.url}/openapi.json",
         "--checks", "not_a_server_error,content_type_conformance,status_code_conformance",
         "--max-examples", "8", "--phases", "coverage,fuzzing", "--exclude-path-regex", ":watch$",
         "--header", f"Authorization: Bearer {mesh.identity.token('bob')}", "--request-timeout", "20",
         "--generation-deterministic", "--no-color"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "failures" not in result.stdout.splitlines()[-1], result.stdout[-3000:]
