"""Routes: one per HTTP binding of an RPC (its `google.api.http` rule and each of the rule's
additional bindings), and the table that finds the route of a request."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from google.api import http_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor

from monitor_gateway.domain.templates import PathTemplate, parse_template

__all__ = ["Resolved", "Route", "RouteTable", "routes_of"]



@dataclass(frozen=True)
class Route:
    """`body`: "" (no body: every field not in the path comes from the query), "*" (the whole
    request is the body) or the name of the request field the body fills."""

    http_method: str  # upper case
    template: PathTemplate
    body: str
    method: MethodDescriptor
    # `response_body` of the rule: the response field sent as the body, "" for the whole response.
    response_body: str = ""

    @property
    def rpc(self) -> str:
        """The RPC's full name, as gRPC calls it: `/panda.server.v1.JobService/GetJob`."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def service(self) -> str:
        return self.method.containing_service.full_name

    @property
    def request_type(self) -> Descriptor:
        return self.method.input_type

    @property
    def response_type(self) -> Descriptor:
        return self.method.output_type

    @property
    def server_streaming(self) -> bool:
        return self.method.server_streaming

    @property
    def client_streaming(self) -> bool:
        return self.method.client_streaming


def routes_of(method: MethodDescriptor, rule: http_pb2.HttpRule) -> list[Route]:
    """The routes of one RPC from its `google.api.HttpRule` (and the rule's additional bindings);
    none for a client-streaming RPC (HTTP/1.1 cannot carry it) or a rule with no pattern."""
    if method.client_streaming:
        return []
    routes: list[Route] = []
    for binding in [rule, *rule.additional_bindings]:
        pattern = binding.WhichOneof("pattern")
        if pattern is None:
            continue
        if pattern == "custom":
            verb, path = binding.custom.kind.upper(), binding.custom.path
        else:
            verb, path = pattern.upper(), getattr(binding, pattern)
        routes.append(Route(verb, parse_template(path), binding.body, method, binding.response_body))
    return routes


@dataclass(frozen=True)
class Resolved:
    route: Route
    variables: dict[str, str]


@dataclass
class RouteTable:
    """Finds a request's route: among the routes of its HTTP method, those with a verb first
    (a path ending in `:kill` is the kill, not a task named `5:kill`), then the most specific."""

    _by_method: dict[str, list[Route]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, routes: Iterable[Route]) -> RouteTable:
        table = cls()
        for route in routes:
            table._by_method[route.http_method].append(route)
        for candidates in table._by_method.values():
            candidates.sort(key=lambda r: (not r.template.verb, tuple(-n for n in r.template.specificity)))
        return table

    @property
    def routes(self) -> Sequence[Route]:
        return [route for candidates in self._by_method.values() for route in candidates]

    def resolve(self, http_method: str, path: str) -> Resolved | None:
        for route in self._by_method.get(http_method, ()):
            variables = route.template.match(path)
            if variables is not None:
                return Resolved(route, variables)
        return None

    def routes_matching(self, path: str) -> list[Route]:
        """The routes whose template matches `path`, whatever their HTTP method (for a 405: its
        `Allow` header, and the template its metrics count it under)."""
        return [route for candidates in self._by_method.values() for route in candidates
                if route.template.match(path) is not None]

    def allowed_methods(self, path: str) -> list[str]:
        """The HTTP methods some route serves `path` with."""
        return sorted({route.http_method for route in self.routes_matching(path)})
