"""Every part reads the same way: each service in five parts whose imports only run downwards
(servicers → logic → store → domain), no service importing another, the pilot and the command
line clear of the services' runtime. Read from the source with `ast`, so a wrong import fails
here before it is ever run."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("server_svc", "jedi_svc", "iam_svc", "monitor_gateway", "harvester_svc")
# Each service's own API: only its servicers (and main.py, which registers them) speak it. The
# server also serves harvester's registry (panda.harvester.v1). The gateway has none: it serves
# the others' APIs, found through their descriptors. Harvester has none of its own: its relay
# serves the server's DispatchService, and its agents are the server's clients.
OWN_API: dict[str, tuple[str, ...]] = {
    "server_svc": ("panda.server.v1.", "panda.harvester.v1."), "jedi_svc": ("panda.jedi.v1.",),
    "iam_svc": ("panda.iam.v1.",), "monitor_gateway": (), "harvester_svc": (),
}
PARTS = ("servicers", "logic", "store", "domain")
# What each part may import of its own service (settings.py is read by every part but domain).
MAY_IMPORT = {
    "domain": {"domain"},
    "store": {"store", "domain"},
    "logic": {"logic", "store", "domain", "settings"},
    "servicers": {"servicers", "logic", "store", "domain", "settings"},
    "settings": set(),
    "main": {"main", "servicers", "logic", "store", "domain", "settings"},
}
OTHER_PACKAGES = (*SERVICES, "pilot_agent", "panda_cli", "tools", "tests", "bench")
# What a rule may not touch: the database, the network, processes, files, the clock of the loop.
DOMAIN_FORBIDDEN = (
    "sqlalchemy", "psycopg", "alembic", "grpc", "grpc_status", "grpc_health", "httpx", "starlette", "uvicorn",
    "prometheus_client", "asyncio", "subprocess", "socket", "threading", "concurrent", "os", "pathlib", "shutil",
    "panda", "panda_runtime",
)
# ... except these plain types of the runtime: errors that carry a gRPC code, principals, who may
# write which file scope, and the contracts' field rules.
DOMAIN_ALLOWED_RUNTIME = ("panda_runtime.service.errors", "panda_runtime.service.principals",
                          "panda_runtime.service.scopes", "panda_runtime.contracts")


@dataclass(frozen=True)
class Import:
    module: str
    line: int
    lazy: bool  # inside a function: loaded only when that runs


def _imports(path: Path, package: str) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[Import] = []
    module_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        lazy = id(node) not in module_level
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append(Import(name, node.lineno, lazy))
            # `from pkg import module` imports pkg.module
            found += [Import(f"{name}.{alias.name}", node.lineno, lazy) for alias in node.names]
    return [i for i in found if not i.module.endswith(".TYPE_CHECKING")]


def _modules(package: str) -> list[tuple[str, Path]]:
    base = ROOT / package
    return [
        (".".join(path.relative_to(ROOT).with_suffix("").parts), path)
        for path in sorted(base.rglob("*.py"))
    ]


def _part(service: str, module: str) -> str | None:
    """The part a module of `service` belongs to, or None if it is outside the five."""
    rest = module.split(".")[1:]
    if not rest or rest[0] in ("__init__", "__main__", "main"):
        return "main"
    if rest[0] == "settings":
        return "settings"
    return rest[0] if rest[0] in PARTS else None


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_is_in_five_parts_whose_imports_run_downwards(service: str) -> None:
    problems: list[str] = []
    for part in PARTS:
        if not (ROOT / service / part).is_dir():
            problems.append(f"{service}/{part}/ is missing")
    for module, path in _modules(service):
        part = _part(service, module)
        where = path.relative_to(ROOT)
        if part is None:
            problems.append(f"{where}: outside servicers/, logic/, store/, domain/, settings.py and main.py")
            continue
        for imported in _imports(path, module.rpartition(".")[0] if path.name != "__init__.py" else module):
            top = _top(imported.module)
            if top == service:
                target = _part(service, imported.module)
                if target is not None and target not in MAY_IMPORT[part]:
                    problems.append(f"{where}:{imported.line}: {part} imports {imported.module} ({target})")
            elif top in OTHER_PACKAGES:
                problems.append(f"{where}:{imported.line}: imports another part, {imported.module}")
            if part not in ("servicers", "main") and OWN_API[service] and imported.module.startswith(OWN_API[service]):
                problems.append(f"{where}:{imported.line}: {part} imports the service's own API {imported.module}")
            if part == "domain" and top in DOMAIN_FORBIDDEN and not imported.module.startswith(
                DOMAIN_ALLOWED_RUNTIME
            ) and imported.module != "panda_runtime.service":
                problems.append(f"{where}:{imported.line}: the domain imports {imported.module}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", ["pilot_agent", "panda_runtime.client", "panda_runtime.settings",
                                     "panda_runtime.contracts"])
def test_callers_import_no_service_and_no_service_runtime(package: str) -> None:
    problems: list[str] = []
    path = ROOT / package.replace(".", "/")
    files = [(package, path.with_suffix(".py"))] if path.with_suffix(".py").exists() else _modules(package)
    for module, file in files:
        for imported in _imports(file, module.rpartition(".")[0]):
            if _top(imported.module) in (*SERVICES, "panda_cli", "tools") or imported.module.startswith(
                "panda_runtime.service"
            ):
                problems.append(f"{file.relative_to(ROOT)}:{imported.line}: imports {imported.module}")
    assert not problems, "\n".join(problems)


def test_the_contracts_are_pure_rules() -> None:
    """Every side uses the contracts' rules (services, the command line, the pilot): they import
    nothing that does I/O, and nothing of the services' runtime."""
    problems = [
        f"{path.relative_to(ROOT)}:{imported.line}: imports {imported.module}"
        for module, path in _modules("panda_runtime/contracts")
        for imported in _imports(path, module.rpartition(".")[0])
        if _top(imported.module) in DOMAIN_FORBIDDEN and not imported.module.startswith("panda_runtime.contracts")
    ]
    assert not problems, "\n".join(problems)


def test_the_runtime_imports_no_part() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{imported.line}: imports {imported.module}"
        for module, path in _modules("panda_runtime")
        for imported in _imports(path, module.rpartition(".")[0])
        if _top(imported.module) in OTHER_PACKAGES
    ]
    assert not problems, "\n".join(problems)


def test_the_command_line_starts_services_only_through_their_entry_points() -> None:
    """`panda serve` and `panda up` reach a service through its main.py and settings.py (its
    declared surface), and only when that command runs."""
    problems: list[str] = []
    for module, path in _modules("panda_cli"):
        for imported in _imports(path, module.rpartition(".")[0]):
            top = _top(imported.module)
            if top in SERVICES:
                part = _part(top, imported.module)
                if part not in ("main", "settings"):
                    problems.append(f"{path.relative_to(ROOT)}:{imported.line}: imports {imported.module}")
                elif part == "main" and not imported.lazy:
                    problems.append(f"{path.relative_to(ROOT)}:{imported.line}: imports {imported.module} on load")
            if imported.module.startswith("panda_runtime.service") and not imported.lazy:
                problems.append(f"{path.relative_to(ROOT)}:{imported.line}: imports {imported.module} on load")
    assert not problems, "\n".join(problems)
