"""Each service's access table names exactly the RPCs the service serves, read from their
descriptors: a new RPC without an access rule (or a rule for an RPC that is gone) fails here,
before anyone finds it closed, or open, at run time."""

from __future__ import annotations

import importlib

import pytest
from google.protobuf import descriptor_pool

from panda_runtime.service.principals import AccessTable

# Each service's access table, and the main module that lists the gRPC services it registers.
SERVICES = {
    "server": ("server_svc.servicers.access", "server_svc.main"),
    "jedi": ("jedi_svc.servicers.access", "jedi_svc.main"),
    "iam": ("iam_svc.servicers.access", "iam_svc.main"),
}


def _served_methods(service_names: list[str]) -> set[str]:
    pool = descriptor_pool.Default()
    return {
        f"/{service.full_name}/{method.name}"
        for service in map(pool.FindServiceByName, service_names)
        for method in service.methods
    }


@pytest.mark.parametrize("part", sorted(SERVICES))
def test_the_access_table_covers_every_rpc_and_nothing_else(part: str) -> None:
    access_module, main_module = SERVICES[part]
    table: AccessTable = importlib.import_module(access_module).ACCESS
    served = _served_methods(importlib.import_module(main_module).SERVICE_NAMES)
    assert served, f"{part} serves no RPC?"
    missing = sorted(served - table.methods)
    unknown = sorted(table.methods - served)
    assert not missing, f"RPCs of {part} with no access rule (closed to everyone): {missing}"
    assert not unknown, f"access rules of {part} for RPCs it does not serve: {unknown}"
