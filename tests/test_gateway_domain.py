"""The gateway's rules without a service: path templates, the route a request finds, the request
message an HTTP request makes, the status table and the OpenAPI document."""

from __future__ import annotations

import json
import random

import pytest
from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.rpc import code_pb2
from openapi_spec_validator import validate

from monitor_gateway.domain.json_plans import message_document
from monitor_gateway.domain.openapi import openapi_document
from monitor_gateway.domain.requests import RequestError, build_request, message_class, parse_grpc_timeout
from monitor_gateway.domain.responses import event_cursor, metadata_headers, ndjson_result, sse_result
from monitor_gateway.domain.routes import RouteTable
from monitor_gateway.domain.statuses import http_status
from monitor_gateway.domain.templates import TemplateError, parse_template
from monitor_gateway.main import all_routes
from panda.iam.v1 import iam_service_pb2
from panda.jedi.v1 import dataset_service_pb2
from panda.server.v1 import job_pb2, job_service_pb2, queue_service_pb2

ROUTES = all_routes()
TABLE = RouteTable.of(ROUTES)


def resolve(method: str, path: str) -> tuple[str, dict[str, str]]:
    found = TABLE.resolve(method, path)
    assert found is not None, f"{method} {path} found no route"
    return found.route.rpc, found.variables


def test_every_annotated_rpc_has_a_route_and_no_two_routes_collide() -> None:
    from monitor_gateway.store.descriptors import annotated_methods

    annotated = {f"/{m.method.containing_service.full_name}/{m.method.name}" for m in annotated_methods() if m.rule}
    assert annotated == {route.rpc for route in ROUTES}
    keys = [(route.http_method, route.template.text) for route in ROUTES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(("method", "path", "rpc", "variables"), [
    ("GET", "/v1/jobs/42", "/panda.server.v1.JobService/GetJob", {"job_id": "42"}),
    ("GET", "/v1/jobs:watch", "/panda.server.v1.JobService/WatchJobs", {}),
    ("POST", "/v1/jobs:kill", "/panda.server.v1.JobService/KillJobs", {}),
    ("GET", "/v1/datasets/mc23:user.me.scoped", "/panda.jedi.v1.DatasetService/GetDataset",
     {"dataset_id": "mc23:user.me.scoped"}),
    ("GET", "/v1/datasets/mc23:user.me.scoped/files", "/panda.jedi.v1.DatasetService/ListDatasetFiles",
     {"dataset_id": "mc23:user.me.scoped"}),
    ("GET", "/v1/datasets/mc23%3Auser.me%2Fscoped", "/panda.jedi.v1.DatasetService/GetDataset",
     {"dataset_id": "mc23:user.me/scoped"}),
    ("POST", "/v1/tasks/7:kill", "/panda.jedi.v1.TaskService/KillTask", {"task_id": "7"}),
    ("GET", "/v1/tasks/7", "/panda.jedi.v1.TaskService/GetTask", {"task_id": "7"}),
    ("DELETE", "/v1/groups/panda/prod", "/panda.iam.v1.IamService/DeleteGroup", {"group": "groups/panda/prod"}),
    ("POST", "/v1/users/al.ice:addMember", "/panda.iam.v1.IamService/AddMember", {"user_id": "al.ice"}),
    ("PATCH", "/v1/queues/CERN-PROD", "/panda.server.v1.QueueService/UpdateQueue", {"queue.queue_id": "CERN-PROD"}),
])
def test_requests_find_their_rpc(method: str, path: str, rpc: str, variables: dict[str, str]) -> None:
    assert resolve(method, path) == (rpc, variables)


def test_paths_without_a_route_find_none_and_say_which_methods_would() -> None:
    assert TABLE.resolve("GET", "/v1/nothing") is None
    assert TABLE.resolve("GET", "/v1/jobs/1/2") is None
    assert TABLE.resolve("PUT", "/v1/jobs/1") is None
    assert TABLE.allowed_methods("/v1/jobs/1") == ["GET"]
    assert TABLE.allowed_methods("/v1/users/bob") == ["DELETE", "GET", "PATCH"]


@pytest.mark.parametrize("text", ["v1/jobs", "/v1/{job id}", "/v1/**/x", "/v1/{a}/{a}", "/v1/jobs:", "/v1/{a"])
def test_templates_outside_the_grammar_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(text)


def route(rpc: str):  # type: ignore[no-untyped-def]
    return next(r for r in ROUTES if r.rpc == rpc)


def test_a_request_takes_its_path_then_its_query() -> None:
    request = build_request(route("/panda.server.v1.JobService/ListJobs"), {},
                            [("filter", 'queue = "local"'), ("pageSize", "5")], b"")
    assert isinstance(request, job_service_pb2.ListJobsRequest)
    assert (request.page_size, request.filter) == (5, 'queue = "local"')
    watch = build_request(route("/panda.server.v1.JobService/WatchJobs"), {},
                          [("job_ids", "3"), ("job_ids", "4"), ("after_cursor", "9007199254740993")], b"")
    assert list(watch.job_ids) == [3, 4] and watch.after_cursor == 9007199254740993
    get = build_request(route("/panda.server.v1.JobService/GetJob"), {"job_id": "12"}, [], b"")
    assert get == job_service_pb2.GetJobRequest(job_id=12)


def test_a_body_is_protobuf_json_and_the_path_wins() -> None:
    kill = build_request(route("/panda.jedi.v1.TaskService/KillTask"), {"task_id": "7"}, [],
                         b'{"reason": "wrong input", "taskId": "99"}')
    assert (kill.task_id, kill.reason) == (7, "wrong input")
    submit = build_request(route("/panda.server.v1.JobService/SubmitJobs"), {}, [],
                           b'{"jobs": [{"queue": "local", "command": ["true"], "priority": 3}]}')
    assert isinstance(submit, job_service_pb2.SubmitJobsRequest)
    assert submit.jobs[0] == job_pb2.Job(queue="local", command=["true"], priority=3)


def test_a_patch_of_one_field_fills_the_update_mask_from_the_body() -> None:
    update = build_request(route("/panda.server.v1.QueueService/UpdateQueue"), {"queue.queue_id": "q1"}, [],
                           b'{"description": "ten", "status": "STATUS_OFFLINE"}')
    assert isinstance(update, queue_service_pb2.UpdateQueueRequest)
    assert update.queue.queue_id == "q1"
    assert sorted(update.update_mask.paths) == ["description", "status"]


@pytest.mark.parametrize(("rpc", "variables", "query", "body", "field"), [
    ("/panda.server.v1.JobService/ListJobs", {}, [("stat", "x")], b"", "stat"),
    ("/panda.server.v1.JobService/ListJobs", {}, [("page_size", "ten")], b"", "page_size"),
    ("/panda.server.v1.JobService/ListJobs", {}, [("page_size", "1"), ("page_size", "2")], b"", "page_size"),
    ("/panda.server.v1.QueueService/ListQueues", {}, [("page_size", "-")], b"", "page_size"),
    ("/panda.jedi.v1.TaskService/WatchTasks", {}, [("from_now", "maybe")], b"", "from_now"),
    ("/panda.server.v1.JobService/GetJob", {"job_id": "1e3"}, [], b"", "job_id"),
    ("/panda.server.v1.JobService/GetJob", {"job_id": "99999999999999999999"}, [], b"", "job_id"),
    ("/panda.server.v1.JobService/GetJob", {"job_id": "1"}, [], b'{"jobId": 1}', "body"),
    ("/panda.server.v1.JobService/SubmitJobs", {}, [], b'{"jobs": [{"queue": "q", "colour": 1}]}', "colour"),
    ("/panda.server.v1.JobService/SubmitJobs", {}, [], b'{"jobs": 3}', "body"),
    ("/panda.server.v1.JobService/SubmitJobs", {}, [], b"[1, 2]", "body"),
    ("/panda.server.v1.JobService/SubmitJobs", {}, [], b"{not json", "body"),
    ("/panda.server.v1.JobService/SubmitJobs", {}, [("jobs", "x")], b"{}", "jobs"),
    ("/panda.iam.v1.IamService/CreateUser", {}, [], b'{"userId": "x", "wings": 2}', "user.wings"),
])
def test_what_cannot_be_the_request_is_refused_naming_the_field(
        rpc: str, variables: dict[str, str], query: list[tuple[str, str]], body: bytes, field: str) -> None:
    with pytest.raises(RequestError) as refused:
        build_request(route(rpc), variables, query, body)
    assert refused.value.field == field, refused.value.message


def test_grpc_timeouts_are_read_in_grpcs_own_format() -> None:
    assert parse_grpc_timeout("500m") == pytest.approx(0.5)
    assert parse_grpc_timeout("10S") == 10
    assert parse_grpc_timeout("2M") == 120
    for bad in ("", "10", "10s", "0S", "123456789S", "-1S"):
        with pytest.raises(RequestError):
            parse_grpc_timeout(bad)


def test_the_status_table_is_grpc_gateways() -> None:
    expected = {
        code_pb2.INVALID_ARGUMENT: 400, code_pb2.FAILED_PRECONDITION: 400, code_pb2.OUT_OF_RANGE: 400,
        code_pb2.UNAUTHENTICATED: 401, code_pb2.PERMISSION_DENIED: 403, code_pb2.NOT_FOUND: 404,
        code_pb2.ALREADY_EXISTS: 409, code_pb2.ABORTED: 409, code_pb2.RESOURCE_EXHAUSTED: 429,
        code_pb2.UNIMPLEMENTED: 501, code_pb2.UNAVAILABLE: 503, code_pb2.DEADLINE_EXCEEDED: 504,
        code_pb2.INTERNAL: 500, code_pb2.UNKNOWN: 500, code_pb2.DATA_LOSS: 500, code_pb2.CANCELLED: 499,
        code_pb2.OK: 200, 99: 500,
    }
    assert {code: http_status(code) for code in expected} == expected


def test_responses_emit_every_field_with_64_bit_integers_as_strings_and_enums_by_name() -> None:
    event = job_service_pb2.WatchJobsResponse(event=job_pb2.JobEvent(cursor=2**60, job_id=5))
    line = ndjson_result(event)
    assert line.endswith(b"\n")
    assert b'"cursor":"1152921504606846976"' in line and b'"jobId":"5"' in line
    assert b'"state":"STATE_UNSPECIFIED"' in line
    assert event_cursor(event) == 2**60
    assert sse_result(event).startswith(b"id: 1152921504606846976\ndata: {")


def test_the_openapi_document_is_valid_openapi_3_1_and_covers_every_route() -> None:
    document = openapi_document(ROUTES, title="PanDA mesh", version="test")
    validate(document)  # raises on anything that is not OpenAPI 3.1
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert len(operations) == len(ROUTES)
    assert ("GET", "/v1/jobs/{job_id}") in operations
    assert ("DELETE", "/v1/{group}") in operations
    get_job = document["paths"]["/v1/jobs/{job_id}"]["get"]
    assert get_job["parameters"][0] == {"name": "job_id", "in": "path", "required": True,
                                        "schema": {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}}
    list_jobs = {p["name"] for p in document["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert list_jobs == {"filter", "page_size", "page_token", "order_by"}
    count_jobs = {p["name"] for p in document["paths"]["/v1/jobs:count"]["get"]["parameters"]}
    assert count_jobs == {"filter", "group_by", "page_size"}
    assert "/v1/errorCodes" in document["paths"]
    job = document["components"]["schemas"]["panda.server.v1.Job"]
    assert job["properties"]["state"]["enum"][0] == "STATE_UNSPECIFIED"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "google.rpc.Status" in document["components"]["schemas"]
    watch = document["paths"]["/v1/jobs:watch"]["get"]["responses"]["200"]["content"]
    assert set(watch) == {"application/x-ndjson", "text/event-stream"}


def test_every_request_message_round_trips_through_the_query_and_body_rules() -> None:
    """Generated over every route: an empty request is a valid request (nothing required is
    enforced here; the service decides), so a new RPC's route is exercised without a new test."""
    for each in ROUTES:
        variables = {name: "1" for name in each.template.variables}
        body = b"{}" if each.body else b""
        try:
            build_request(each, variables, [], body)
        except RequestError as error:
            # Only a path variable that is not an integer may be refused, and never for "1".
            pytest.fail(f"{each.http_method} {each.template.text}: {error}")


def test_requests_of_other_services_are_their_own_types() -> None:
    assert isinstance(build_request(route("/panda.iam.v1.IamService/WhoAmI"), {}, [], b""),
                      iam_service_pb2.WhoAmIRequest)
    assert isinstance(build_request(route("/panda.jedi.v1.DatasetService/GetDataset"),
                                    {"dataset_id": "mc23:x"}, [], b""), dataset_service_pb2.GetDatasetRequest)


def _random_message(descriptor, rng: random.Random, depth: int = 0):  # type: ignore[no-untyped-def]
    """A message of `descriptor` with every field set or not at random, to any depth below 4."""
    message = message_class(descriptor)()
    for field in descriptor.fields:
        if rng.random() < 0.3 or (field.message_type is not None and depth >= 3):
            continue
        if field.message_type is not None and field.message_type.full_name in (
                "google.protobuf.Any", "google.protobuf.Struct", "google.protobuf.Value"):
            continue  # json_format's own (the planned conversion hands them to it)
        count = rng.randint(0, 3) if field.is_repeated else 1
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            target = getattr(message, field.name)
            for _ in range(count):
                key = _random_scalar(nested.fields_by_name["key"], rng)
                value_field = nested.fields_by_name["value"]
                if value_field.message_type is not None:
                    target[key].CopyFrom(_random_message(value_field.message_type, rng, depth + 1))
                else:
                    target[key] = _random_scalar(value_field, rng)
            continue
        values = []
        for _ in range(count):
            if nested is None:
                values.append(_random_scalar(field, rng))
            elif nested.full_name == "google.protobuf.Timestamp":
                # Across Timestamp's whole range, nanos printed in 0, 3, 6 and 9 digits.
                values.append(timestamp_pb2.Timestamp(
                    seconds=rng.randint(-62135596800, 253402300799),
                    nanos=rng.choice([0, 7, 1000, 1_000_000, 120_000_000, 999_999_999])))
            elif nested.full_name == "google.protobuf.Duration":
                values.append(duration_pb2.Duration(seconds=rng.randint(-1000, 1000)))
            else:
                values.append(_random_message(nested, rng, depth + 1))
        if field.is_repeated:
            container = getattr(message, field.name)
            if nested is None:
                container.extend(values)
            else:
                for value in values:
                    container.add().CopyFrom(value)
        elif nested is None:
            setattr(message, field.name, values[0])
        else:
            getattr(message, field.name).CopyFrom(values[0])
    return message


def _random_scalar(field, rng: random.Random):  # type: ignore[no-untyped-def]
    kind = field.type
    if field.enum_type is not None:
        return rng.choice([value.number for value in field.enum_type.values])
    if kind == field.TYPE_STRING:
        return rng.choice(["", "local", "ünïcode", "a\nb"])
    if kind == field.TYPE_BYTES:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 5)))
    if kind == field.TYPE_BOOL:
        return rng.random() < 0.5
    if kind in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        return rng.choice([0.0, 1.5, -2.25, 1e300, float("inf"), float("-inf"), float("nan")])
    if kind in (field.TYPE_UINT32, field.TYPE_FIXED32):
        return rng.randint(0, 2**32 - 1)
    if kind in (field.TYPE_UINT64, field.TYPE_FIXED64):
        return rng.randint(0, 2**64 - 1)
    if kind in (field.TYPE_INT64, field.TYPE_SINT64, field.TYPE_SFIXED64):
        return rng.randint(-(2**63), 2**63 - 1)
    return rng.randint(-(2**31), 2**31 - 1)


def _nan_safe(document):  # type: ignore[no-untyped-def]
    return json.loads(json.dumps(document))


def test_the_gateways_json_is_json_formats_for_every_response_type() -> None:
    """Every message type a route answers with, filled at random many times: the planned
    conversion the gateway uses gives exactly what protobuf's json_format gives."""
    rng = random.Random(14)
    types = {route.response_type.full_name: route.response_type for route in ROUTES}
    for descriptor in types.values():
        for _ in range(40):
            message = _random_message(descriptor, rng)
            expected = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
            assert _nan_safe(message_document(message)) == _nan_safe(expected), descriptor.full_name


@pytest.mark.parametrize("value", [timestamp_pb2.Timestamp(seconds=253402300800),
                                   timestamp_pb2.Timestamp(seconds=-62135596801),
                                   timestamp_pb2.Timestamp(seconds=1, nanos=1_000_000_000)])
def test_a_timestamp_out_of_range_is_refused_as_json_format_refuses_it(value: timestamp_pb2.Timestamp) -> None:
    message = job_pb2.Job()
    message.create_time.CopyFrom(value)
    with pytest.raises(json_format.SerializeToJsonError):
        json_format.MessageToDict(message)
    with pytest.raises(ValueError, match="Timestamp is not valid"):
        message_document(message)


def test_a_services_header_metadata_becomes_grpc_metadata_headers() -> None:
    """As grpc-gateway writes them: prefixed, a binary value in base64, a repeated key joined."""
    assert metadata_headers([("x-served-by", "replica-2"), ("trace-bin", b"\x00\xff"), ("x-note", "a"),
                             ("x-note", "b")]) == {
        "Grpc-Metadata-x-served-by": "replica-2", "Grpc-Metadata-trace-bin": "AP8=", "Grpc-Metadata-x-note": "a, b"}
