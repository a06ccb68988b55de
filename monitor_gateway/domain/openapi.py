"""OpenAPI 3.1 of the gateway, made from the same routes it serves: every route with its path,
query and body, every message as a schema (in the JSON the gateway reads and writes: field
names in lowerCamelCase, enums by name, 64-bit integers as strings), the error body
(`google.rpc.Status`) and the bearer scheme."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import status_pb2

from monitor_gateway.domain.routes import Route

__all__ = ["openapi_document"]

Schema = dict[str, Any]
STATUS = "google.rpc.Status"
_REF = "#/components/schemas/"

_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UINT64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}

# Well-known types have a JSON form of their own rather than an object of their fields.
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
                                 "examples": ["1.5s"]},
    "google.protobuf.FieldMask": {"type": "string", "description": "field paths, comma separated"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}},
                            "required": ["@type"], "additionalProperties": True},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    "google.protobuf.UInt32Value": {"type": ["integer", "null"], "format": "int32", "minimum": 0},
    "google.protobuf.Int64Value": {"type": ["string", "null"], "format": "int64"},
    "google.protobuf.UInt64Value": {"type": ["string", "null"], "format": "uint64"},
}


def _behaviors(field: FieldDescriptor) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


class _Schemas:
    """The components' schemas, each message added once, as routes refer to it."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def ref(self, message: Descriptor) -> Schema:
        known = _WELL_KNOWN.get(message.full_name)
        if known is not None:
            return dict(known)
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placed first: a message may contain itself
            self.schemas[message.full_name] = self.message(message)
        return {"$ref": _REF + message.full_name}

    def message(self, message: Descriptor, leave_out: Iterable[str] = ()) -> Schema:
        skipped = set(leave_out)
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in message.fields:
            if field.name in skipped:
                continue
            schema = self.field(field)
            behaviors = _behaviors(field)
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                schema["readOnly"] = True
            if field_behavior_pb2.REQUIRED in behaviors:
                required.append(field.json_name)
            properties[field.json_name] = schema
        result: Schema = {"type": "object", "title": message.name, "properties": properties,
                          "additionalProperties": False}
        if required:
            result["required"] = required
        return result

    def field(self, field: FieldDescriptor) -> Schema:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        if field.is_repeated:
            return {"type": "array", "items": self.single(field)}
        return self.single(field)

    def single(self, field: FieldDescriptor) -> Schema:
        kind = field.type
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return {"type": "string", "enum": [value.name for value in field.enum_type.values],
                    "title": field.enum_type.name}
        if kind in _INT64:
            return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
        if kind in _UINT64:
            return {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
        if kind in _UINT32:
            return {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": "number", "format": "double" if kind == FieldDescriptor.TYPE_DOUBLE else "float"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        return {"type": "string"}


def _leaf(message: Descriptor, path: str) -> FieldDescriptor:
    field: FieldDescriptor | None = None
    for part in path.split("."):
        field = message.fields_by_name[part]
        if field.message_type is not None:
            message = field.message_type
    assert field is not None
    return field


def _query_fields(message: Descriptor, prefix: str, bound: set[str], depth: int = 0
                  ) -> list[tuple[str, FieldDescriptor]]:
    """The fields a query can set: scalars, enums, repeated scalars and well-known types, going
    into singular messages, leaving out what the path binds."""
    found: list[tuple[str, FieldDescriptor]] = []
    for field in message.fields:
        path = prefix + field.name
        if path in bound:
            continue
        nested = field.message_type
        if nested is not None and nested.full_name not in _WELL_KNOWN:
            if nested.GetOptions().map_entry or field.is_repeated or depth >= 3:
                continue
            found += _query_fields(nested, path + ".", bound, depth + 1)
            continue
        found.append((path, field))
    return found


def _parameter_names(route: Route) -> dict[str, str]:
    """Each path variable's name in the document: the field's own name (`user_id` for
    `{user.user_id}`; tools read a dotted name as an attribute), its whole path when two would
    share one."""
    leaves = [variable.rpartition(".")[2] for variable in route.template.variables]
    return {variable: leaf if leaves.count(leaf) == 1 else variable.replace(".", "_")
            for variable, leaf in zip(route.template.variables, leaves, strict=True)}


def _path(route: Route) -> str:
    """The template as an OpenAPI path: `{group=groups/**}` is `{group}`, `{user.user_id}` `{user_id}`."""
    text = route.template.text
    for variable, name in _parameter_names(route).items():
        start = text.index("{" + variable)
        end = text.index("}", start)
        text = text[:start] + "{" + name + "}" + text[end + 1:]
    return text


def _parameters(route: Route, schemas: _Schemas) -> list[Schema]:
    parameters: list[Schema] = []
    for variable, name in _parameter_names(route).items():
        schema = schemas.single(_leaf(route.request_type, variable))
        if variable in route.template.multi_segment:
            schema = {"type": "string", "description": "may contain `/`"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if route.body == "*":
        return parameters
    bound = set(route.template.variables) | ({route.body} if route.body else set())
    for path, field in _query_fields(route.request_type, "", bound):
        parameter: Schema = {"name": path, "in": "query", "required": False, "schema": schemas.field(field)}
        if field.is_repeated:
            parameter["style"], parameter["explode"] = "form", True
        parameters.append(parameter)
    return parameters


def _request_body(route: Route, schemas: _Schemas) -> Schema | None:
    if not route.body:
        return None
    if route.body == "*":
        top_bound = {variable.split(".")[0] for variable in route.template.variables if "." not in variable}
        schema = schemas.message(route.request_type, leave_out=top_bound)
    else:
        schema = schemas.field(route.request_type.fields_by_name[route.body])
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _responses(route: Route, schemas: _Schemas) -> Schema:
    error = {"description": "an error: a google.rpc.Status",
             "content": {"application/json": {"schema": {"$ref": _REF + STATUS}}}}
    result = schemas.ref(route.response_type)
    if route.response_body:
        result = schemas.field(route.response_type.fields_by_name[route.response_body])
    if not route.server_streaming:
        ok = {"description": "the RPC's response", "content": {"application/json": {"schema": result}}}
    else:
        line = {"type": "object", "properties": {"result": result, "error": {"$ref": _REF + STATUS}},
                "additionalProperties": False}
        ok = {"description": "a stream: one JSON object per line (`result`, or a final `error`); with "
                             "`Accept: text/event-stream`, server-sent events whose ids are cursors "
                             "(`Last-Event-ID` resumes)",
              "content": {"application/x-ndjson": {"schema": line},
                          "text/event-stream": {"schema": {"type": "string"}}}}
    return {"200": ok, "default": error}


def openapi_document(routes: Sequence[Route], *, title: str, version: str,
                     summary_of: Callable[[Route], str] = lambda route: "") -> Schema:
    schemas = _Schemas()
    schemas.ref(status_pb2.Status.DESCRIPTOR)
    paths: dict[str, dict[str, Schema]] = {}
    for route in sorted(routes, key=lambda r: (r.template.text, r.http_method)):
        operation: Schema = {
            "operationId": f"{route.method.containing_service.name}_{route.method.name}",
            "tags": [route.method.containing_service.name],
            "summary": summary_of(route) or f"{route.method.containing_service.name}.{route.method.name}",
            "parameters": _parameters(route, schemas),
            "responses": _responses(route, schemas),
        }
        body = _request_body(route, schemas)
        if body is not None:
            operation["requestBody"] = body
        paths.setdefault(_path(route), {})[route.http_method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.schemas.items())),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"bearer": []}],
    }

