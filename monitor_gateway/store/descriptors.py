"""The RPCs the gateway can serve, read from the contracts' generated descriptors: every
service of every `panda.*.v1` module, each method with its `google.api.http` rule. A new RPC
gains an HTTP route by gaining an annotation, and a new service by its module being generated."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import EnumDescriptor, MethodDescriptor, ServiceDescriptor

from monitor_gateway.domain.monitor_filters import ListFields
from panda.jedi.v1 import dataset_pb2, task_pb2
from panda.server.v1 import job_pb2

__all__ = ["AnnotatedMethod", "annotated_methods", "list_fields", "services"]

CONTRACTS_PACKAGE = "panda"


@dataclass(frozen=True)
class AnnotatedMethod:
    method: MethodDescriptor
    rule: http_pb2.HttpRule | None  # None: the method has no HTTP binding


def _contract_modules(package: str) -> list[ModuleType]:
    root = importlib.import_module(package)
    names = sorted(info.name for info in pkgutil.walk_packages(root.__path__, f"{package}.")
                   if info.name.endswith("_pb2"))
    return [importlib.import_module(name) for name in names]


def services(package: str = CONTRACTS_PACKAGE) -> list[ServiceDescriptor]:
    found: dict[str, ServiceDescriptor] = {}
    for module in _contract_modules(package):
        for service in module.DESCRIPTOR.services_by_name.values():
            found[service.full_name] = service
    return [found[name] for name in sorted(found)]


def annotated_methods(package: str = CONTRACTS_PACKAGE) -> list[AnnotatedMethod]:
    methods: list[AnnotatedMethod] = []
    for service in services(package):
        for method in service.methods:
            options = method.GetOptions()
            rule = options.Extensions[annotations_pb2.http] if options.HasExtension(annotations_pb2.http) else None
            methods.append(AnnotatedMethod(method, rule))
    return methods


def _value_names(enum: EnumDescriptor, prefix: str) -> tuple[str, ...]:
    """An enum's value names without their prefix, the unspecified one left out."""
    return tuple(value.name.removeprefix(prefix) for value in enum.values if value.number)


def list_fields() -> ListFields:
    """The web monitor's filter fields, the states and kinds read from the contracts."""
    return ListFields.of(_value_names(job_pb2.Job.State.DESCRIPTOR, "STATE_"),
                         _value_names(task_pb2.Task.State.DESCRIPTOR, "STATE_"),
                         _value_names(dataset_pb2.Dataset.Kind.DESCRIPTOR, "KIND_"))
