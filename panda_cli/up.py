"""`panda up`: the identity service, the server, JEDI, the HTTP/JSON gateway and harvester on
one machine, in the foreground, supervised. Harvester starts pilots as work arrives (the local
plugin: pilot processes on this machine) and they leave when the work is done.

Where the services listen and the identity they are given: `local_mesh.py`. Every child is
started through the launcher (`launcher.py`), in a process group of its own, so the terminal's
Ctrl-C reaches only us and we stop the children in order: the gateway first (no new requests
come in through it), then harvester (it stops its pilots, which finish talking to the server),
then JEDI, the server, the identity service. Anything still alive after the timeout gets
SIGKILL, by its own group only.

Queues: `local`, with up to --pilots pilots at once, and two more so JEDI's brokerage has a
choice: `local-b` and `local-small` (jobs of at most 1000 MB), with up to one pilot each. Each
queue has a storage element of its own name, a directory under the data dir's `se/`. Harvester's
queue configuration is written to the data dir's `harvester/queueconfig.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import psutil

from panda.common.v1 import resources_pb2
from panda.server.v1 import (
    job_pb2,
    job_service_pb2,
    queue_pb2,
    queue_service_pb2,
    storage_element_pb2,
    storage_service_pb2,
)
from panda_runtime.client import ServerClient
from panda_runtime.client.credentials import LoginToken
from panda_runtime.settings import (
    DEFAULT_GATEWAY_ADDRESS,
    DEFAULT_GATEWAY_METRICS_PORT,
    DEFAULT_HARVESTER_ADDRESS,
    DEFAULT_HARVESTER_METRICS_PORT,
    DEFAULT_IAM_ADDRESS,
    DEFAULT_IAM_HTTP_PORT,
    DEFAULT_IAM_METRICS_PORT,
    DEFAULT_JEDI_ADDRESS,
    DEFAULT_JEDI_METRICS_PORT,
    DEFAULT_SERVER_ADDRESS,
    gateway_url,
)

from . import output
from .clients import server_client
from .errors import CliError, ExitCode
from .launcher import (
    GATEWAY,
    HARVESTER,
    IAM,
    JEDI,
    SERVER,
    Process,
    StopRequested,
    Supervisor,
    health_status,
    http_ready,
    log_tail,
    wait_healthy,
    wait_http_ready,
)
from .local_mesh import (
    HARVESTER_ROBOT,
    JEDI_ROBOT,
    PILOT_ROBOT,
    VO,
    LocalIdentity,
    gateway_endpoints,
    harvester_endpoints,
    iam_endpoints,
    jedi_endpoints,
    provision_identity,
)
from .runners import describe_upgrade, display_url, upgrade

if TYPE_CHECKING:
    from server_svc.settings import ServerSettings

__all__ = [
    "EXTRA_QUEUES", "IDENTITY_VARIABLES", "LOCAL_QUEUE", "PILOT_IDLE_SECONDS", "SERVER_START_TIMEOUT_SECONDS",
    "ChildDied", "child_env", "cmd_up", "demo_jobs", "ensure_local_queue", "ensure_storage_element",
    "harvester_queue_config", "print_summary", "stop_all", "wait_for",
]

LOCAL_QUEUE = "local"
# The other queues `panda up` makes, each with up to one pilot: (name, largest job's memory in MB).
EXTRA_QUEUES = [("local-b", 0), ("local-small", 1000)]
SERVER_START_TIMEOUT_SECONDS = 60.0
# A pilot harvester starts leaves after this long without work: pilots come and go with the work.
PILOT_IDLE_SECONDS = 60.0
# How often harvester looks at the queues: a first job waits about this long for its pilot.
HARVESTER_CYCLE_SECONDS = 1.0


# --- steps -------------------------------------------------------------------------------


# Inherited variables that would give a child someone else's identity or trust.
IDENTITY_VARIABLES = ("PANDA_TOKEN", "PANDA_TOKEN_FILE", "PANDA_CLIENT_ID", "PANDA_CLIENT_SECRET",
                      "PANDA_AUTH_ISSUERS", "PANDA_IAM_ISSUER", "PANDA_AUTH_MODE")


def child_env(settings: ServerSettings, address: str, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in IDENTITY_VARIABLES}
    env.update(
        {
            "PANDA_DATA_DIR": str(settings.data_dir),
            "PANDA_DATABASE_URL": database_url,
            "PANDA_SERVER": address,
            "PYTHONUNBUFFERED": "1",  # logs appear as they are written
        }
    )
    return env


def wait_for(supervisor: Supervisor, child: Process, address: str, what: str, *, http: bool = False) -> float:
    """Wait until `child` answers its health check at `address` (gRPC's; `http`: `/healthz` at
    that URL), saying so; the seconds it took."""
    interactive = sys.stdout.isatty()
    print(f"waiting for {what} at {address} ...", end="" if interactive else "\n", flush=True)

    def progress(elapsed: float) -> None:
        supervisor.check_stop()
        if interactive:
            print(f"\rwaiting for {what} at {address} ... {elapsed:.0f}s", end="", flush=True)

    wait = wait_http_ready if http else wait_healthy
    try:
        elapsed = wait(child, address, SERVER_START_TIMEOUT_SECONDS, pause=supervisor.sleep, progress=progress)
    except RuntimeError:
        if interactive:
            print()
        raise CliError(
            f"{what} exited during startup (code {child.returncode}); "
            f"last lines of {child.log_path}:\n{log_tail(child.log_path)}"
        ) from None
    except TimeoutError:
        if interactive:
            print()
        raise CliError(
            f"{what} did not answer its health check within {SERVER_START_TIMEOUT_SECONDS:.0f}s; see {child.log_path}"
        ) from None
    if interactive:
        print(f"\rwaiting for {what} at {address} ... ready ({elapsed:.1f}s)", flush=True)
    return elapsed


def ensure_storage_element(client: ServerClient, name: str, directory: Path) -> str:
    """Configure the storage element `name` at `directory` unless it exists; says what it did."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        element = client.storage.GetStorageElement(
            storage_service_pb2.GetStorageElementRequest(storage_element_id=name)).storage_element
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
    else:
        return f"storage element {name}: exists ({element.url})"
    element = storage_element_pb2.StorageElement(
        storage_element_id=name, url=directory.as_uri(), description="created by `panda up`")
    created = client.storage.CreateStorageElement(
        storage_service_pb2.CreateStorageElementRequest(storage_element=element)).storage_element
    return f"storage element {name}: created ({created.url})"


def ensure_local_queue(client: ServerClient, element: str, name: str = LOCAL_QUEUE, max_memory_mb: int = 0) -> str:
    """Create the queue (by default `local`) on storage element `element` unless it exists;
    says what it did."""
    try:
        queue = client.queues.GetQueue(queue_service_pb2.GetQueueRequest(queue_id=name)).queue
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
    else:
        status = queue_pb2.Queue.Status.Name(queue.status).removeprefix("STATUS_").lower()
        return f"queue {name}: exists ({status}, SE {queue.storage_element or '-'})"
    queue = queue_pb2.Queue(
        queue_id=name,
        status=queue_pb2.Queue.STATUS_ONLINE,
        storage_element=element,
        description="created by `panda up`",
        max_resources=resources_pb2.Resources(memory_mb=max_memory_mb),
    )
    client.queues.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue))
    limit = f", jobs up to {max_memory_mb} MB" if max_memory_mb else ""
    return f"queue {name}: created (online, SE {element}{limit})"


def harvester_queue_config(pilots: int, cores: int, memory_mb: int) -> dict[str, object]:
    """Harvester's queues: `local` with up to `pilots` pilots, the others with up to one each
    (none when `pilots` is 0). Each pilot offers this machine's cores and memory (a queue's own
    limit, if lower), for a day."""
    def queue(max_workers: int, queue_memory_mb: int) -> dict[str, object]:
        return {
            "queueStatus": "online", "mapType": "NoJob", "maxWorkers": max_workers,
            "nQueueLimitWorker": max_workers, "maxNewWorkersPerCycle": max_workers,
            "resources": {"cores": cores, "memoryMB": min(memory_mb, queue_memory_mb or memory_mb),
                          "walltimeSeconds": 86400},
            "submitter": {"plugin": "local"}, "messenger": {"type": "grpc"},
        }

    extra = 1 if pilots else 0
    return {LOCAL_QUEUE: queue(pilots, 0), **{name: queue(extra, memory) for name, memory in EXTRA_QUEUES}}


class ChildDied(Exception):
    def __init__(self, child: Process) -> None:
        super().__init__(child.name)
        self.child = child


def demo_jobs(client: ServerClient) -> list[tuple[int, str]]:
    """Two sample jobs: one producing an output file, one that runs for a while."""
    # An output name is given once in its scope: a data dir that already ran jobs gets a fresh one.
    existing = client.jobs.ListJobs(
        job_service_pb2.ListJobsRequest(page_size=1, filter=f'queue = "{LOCAL_QUEUE}"')
    ).total_size
    lfn = "demo.out" if existing == 0 else f"demo-{uuid.uuid4().hex[:8]}.out"
    writer = job_pb2.Job(
        queue=LOCAL_QUEUE,
        command=["sh", "-c", f"echo hello from PanDA mesh > {lfn}"],
        label="demo-output",
        files=[job_pb2.JobFile(lfn=lfn, kind=job_pb2.JobFile.KIND_OUTPUT)],
    )
    sleeper = job_pb2.Job(queue=LOCAL_QUEUE, command=["sleep", "20"], label="demo-sleep")
    request = job_service_pb2.SubmitJobsRequest(jobs=[writer, sleeper], request_id=str(uuid.uuid4()))
    response = client.jobs.SubmitJobs(request)
    descriptions = [f"writes {lfn}", "sleep 20"]
    return [(job.job_id, text) for job, text in zip(response.jobs, descriptions, strict=False)]


# --- the command -------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    if args.pilots < 0:
        raise CliError("--pilots must be 0 or more", ExitCode.USAGE)
    from server_svc.settings import ServerSettings

    base = ServerSettings()
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else base.data_dir
    settings = ServerSettings(data_dir=data_dir.resolve())
    address = args.server
    database_url = settings.resolved_database_url

    data_dir = settings.data_dir
    logs_dir = data_dir / "logs"
    se_dir = data_dir / "se" / LOCAL_QUEUE
    for directory in (data_dir, logs_dir, se_dir):
        directory.mkdir(parents=True, exist_ok=True)

    if health_status(address) is not None:
        raise CliError(f"a server already answers at {address}: stop it first, or use --server for another address")
    jedi = jedi_endpoints(settings, address)
    if health_status(jedi[0]) is not None:
        raise CliError(f"JEDI already answers at {jedi[0]}: stop it first, or set PANDA_JEDI to another address")
    iam = iam_endpoints(settings, address)
    if health_status(iam[0]) is not None:
        raise CliError(f"an identity service already answers at {iam[0]}: stop it first, or set PANDA_IAM")
    gateway = gateway_endpoints(settings, address)
    if http_ready(gateway_url(gateway[0])):
        raise CliError(f"a gateway already answers at {gateway_url(gateway[0])}: stop it first, "
                       "or set PANDA_GATEWAY to another address")
    harvester = harvester_endpoints(settings, address)
    if health_status(harvester[0]) is not None:
        raise CliError(f"a harvester already answers at {harvester[0]}: stop it first, "
                       "or set PANDA_HARVESTER_ADDRESS to another address")

    supervisor = Supervisor(stop_timeout=args.stop_timeout)
    # Ctrl-C on `panda up | tee log` ends tee too: every child must still be stopped.
    with output.writing_past_a_closed_reader():
        return _supervise(args, supervisor, settings, address, database_url, logs_dir, se_dir,
                          Endpoints(jedi, iam, gateway, harvester))


def _supervise(args: argparse.Namespace, supervisor: Supervisor, settings: ServerSettings, address: str,
               database_url: str, logs_dir: Path, se_dir: Path, endpoints: Endpoints) -> int:
    """Run everything until a signal (SIGINT, SIGTERM, SIGHUP) or a child's death, then stop
    every child, whatever happened in between."""
    supervisor.install_signal_handlers()
    try:
        return _run(args, supervisor, settings, address, database_url, logs_dir, se_dir, endpoints)
    except StopRequested:
        print(f"\n{supervisor.signal_name or 'signal'}: stopping", flush=True)
        stop_all(supervisor)
        print("stopped", flush=True)
        return 0
    except ChildDied as died:
        _report_death(died.child)
        stop_all(supervisor)
        return 1
    finally:
        stop_all(supervisor)  # after an error during startup; a no-op once stopped
        supervisor.restore_signal_handlers()


def stop_all(supervisor: Supervisor) -> None:
    """The gateway first (no new requests come in through it), then harvester (it stops its
    pilots, which finish talking to the server), then JEDI, then the server, then the identity
    service (the others need it to the end); a no-op once stopped."""
    living = [child for child in supervisor.children if child.alive()]
    by_name = {name: [c for c in living if c.name == name]
               for name in (GATEWAY.name, HARVESTER.name, JEDI.name, SERVER.name, IAM.name)}
    supervisor.stop([
        ("the gateway", by_name[GATEWAY.name]),
        ("harvester and its pilots", by_name[HARVESTER.name]),
        ("JEDI", by_name[JEDI.name]),
        ("the server", by_name[SERVER.name]),
        ("the identity service", by_name[IAM.name]),
    ])


def _report_death(child: Process) -> None:
    code = child.returncode
    how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with code {code}"
    print(
        f"panda: {child.name} (pid {child.pid}) {how} unexpectedly; stopping everything.\n"
        f"  last lines of {child.log_path}:\n{log_tail(child.log_path)}",
        file=sys.stderr,
        flush=True,
    )


@dataclass(frozen=True)
class Endpoints:
    """Where the services other than the server listen: (address, metrics port), the identity
    service's (address, HTTP port, metrics port)."""

    jedi: tuple[str, int] = (DEFAULT_JEDI_ADDRESS, DEFAULT_JEDI_METRICS_PORT)
    iam: tuple[str, int, int] = (DEFAULT_IAM_ADDRESS, DEFAULT_IAM_HTTP_PORT, DEFAULT_IAM_METRICS_PORT)
    gateway: tuple[str, int] = (DEFAULT_GATEWAY_ADDRESS, DEFAULT_GATEWAY_METRICS_PORT)
    harvester: tuple[str, int] = (DEFAULT_HARVESTER_ADDRESS, DEFAULT_HARVESTER_METRICS_PORT)


def _run(
    args: argparse.Namespace,
    supervisor: Supervisor,
    settings: ServerSettings,
    address: str,
    database_url: str,
    logs_dir: Path,
    se_dir: Path,
    endpoints: Endpoints,
) -> int:
    jedi, iam, gateway = endpoints.jedi, endpoints.iam, endpoints.gateway
    print(f"data dir: {settings.data_dir}", flush=True)
    before, after = upgrade(database_url)
    print(describe_upgrade(database_url, before, after), flush=True)
    supervisor.check_stop()

    queue_names = [LOCAL_QUEUE, *(name for name, _ in EXTRA_QUEUES)]
    identity = provision_identity(settings, database_url, iam, queue_names, gateway[0])
    print(f"identity: admin {identity.admin}, token written to {identity.token_path}", flush=True)
    env = {**child_env(settings, address, database_url), **identity.trust_env()}
    iam_child = supervisor.start(
        IAM.name, IAM.argv(), {**env, **identity.service_env()},
        logs_dir / "iam.log",
    )
    wait_for(supervisor, iam_child, identity.address, IAM.what)
    print(f"identity service ready at {identity.address}, issuer {identity.issuer} (pid {iam_child.pid})",
          flush=True)

    server = supervisor.start(
        SERVER.name, SERVER.argv(), env, logs_dir / "server.log"
    )
    wait_for(supervisor, server, address, SERVER.what)
    print(f"server ready at {address} (pid {server.pid})", flush=True)

    with server_client(address, tokens=LoginToken(identity.token_path)) as client:
        # Each queue has a storage element of its own, of the same name.
        for name, max_memory in [(LOCAL_QUEUE, 0), *EXTRA_QUEUES]:
            print(ensure_storage_element(client, name, se_dir.parent / name), flush=True)
            print(ensure_local_queue(client, name, name, max_memory), flush=True)

        jedi_env = {**env, **identity.robot_env(JEDI_ROBOT), "PANDA_JEDI": jedi[0],
                    "PANDA_JEDI_METRICS_PORT": str(jedi[1])}
        jedi_child = supervisor.start(
            JEDI.name, JEDI.argv(), jedi_env, logs_dir / "jedi.log"
        )
        wait_for(supervisor, jedi_child, jedi[0], JEDI.what)
        print(f"JEDI ready at {jedi[0]} (pid {jedi_child.pid})", flush=True)

        # In front of the three: it sends each API's calls to its service, with the caller's token.
        gateway_env = {**env, "PANDA_GATEWAY": gateway[0], "PANDA_GATEWAY_METRICS_PORT": str(gateway[1]),
                       "PANDA_JEDI": jedi[0], "PANDA_IAM": identity.address, "PANDA_IAM_ISSUER": identity.issuer}
        gateway_child = supervisor.start(GATEWAY.name, GATEWAY.argv(), gateway_env, logs_dir / "gateway.log")
        wait_for(supervisor, gateway_child, gateway_url(gateway[0]), GATEWAY.what, http=True)
        print(f"gateway ready at {gateway_url(gateway[0])} (pid {gateway_child.pid})", flush=True)

        harvester_child = _start_harvester(args, supervisor, settings, env, identity, endpoints.harvester, logs_dir)
        print(f"harvester ready at {endpoints.harvester[0]} (pid {harvester_child.pid}): pilots start as work "
              f"arrives, up to {args.pilots} on queue {LOCAL_QUEUE}"
              + "".join(f", {1 if args.pilots else 0} on {name}" for name, _ in EXTRA_QUEUES), flush=True)

        demo = demo_jobs(client) if args.demo else []

    print_summary(settings, address, database_url, supervisor, demo, jedi, identity, gateway, args.pilots)

    # Supervise: wake on a signal, or look at the children twice a second.
    while not supervisor.stop_event.wait(0.5):
        dead = supervisor.dead_child()
        if dead is not None:
            raise ChildDied(dead)
    raise StopRequested


def _start_harvester(args: argparse.Namespace, supervisor: Supervisor, settings: ServerSettings,
                     env: dict[str, str], identity: LocalIdentity, endpoint: tuple[str, int],
                     logs_dir: Path) -> Process:
    """Harvester with the queue configuration of `--pilots`, acting as its robot, handing its
    pilots the pilot robot's credentials; its pilots end when it stops."""
    config_path = settings.data_dir / "harvester" / "queueconfig.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    memory_mb = psutil.virtual_memory().total // (1024 * 1024)
    config = harvester_queue_config(args.pilots, os.cpu_count() or 1, memory_mb)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    harvester_env = {
        **env, **identity.robot_env(HARVESTER_ROBOT), "PANDA_HARVESTER_ADDRESS": endpoint[0],
        "PANDA_HARVESTER_METRICS_PORT": str(endpoint[1]), "PANDA_HARVESTER_ID": "local",
        "PANDA_HARVESTER_QUEUE_CONFIG": str(config_path), "PANDA_HARVESTER_CYCLE_SECONDS": str(HARVESTER_CYCLE_SECONDS),
        "PANDA_HARVESTER_HEARTBEAT_SECONDS": "10", "PANDA_HARVESTER_STOP_WORKERS_ON_EXIT": "true",
        "PANDA_HARVESTER_PILOT_IDLE_SECONDS": str(PILOT_IDLE_SECONDS),
        "PANDA_HARVESTER_PILOT_CLIENT_ID": PILOT_ROBOT,
        "PANDA_HARVESTER_PILOT_CLIENT_SECRET": identity.secrets[PILOT_ROBOT],
    }
    child = supervisor.start(HARVESTER.name, HARVESTER.argv(), harvester_env, logs_dir / "harvester.log")
    wait_for(supervisor, child, endpoint[0], HARVESTER.what)
    return child


def print_summary(
    settings: ServerSettings,
    address: str,
    database_url: str,
    supervisor: Supervisor,
    demo: list[tuple[int, str]],
    jedi: tuple[str, int] | None = None,
    identity: LocalIdentity | None = None,
    gateway: tuple[str, int] | None = None,
    pilots: int = 0,
) -> None:
    metrics = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics" if settings.metrics_port else "disabled"
    lines = [
        "",
        "PanDA mesh is up. Ctrl-C stops it.",
        f"  server    {address} (gRPC)",
        f"  metrics   {metrics}",
    ]
    if jedi is not None:
        jedi_metrics = f"http://{settings.metrics_host}:{jedi[1]}/metrics" if jedi[1] else "metrics disabled"
        lines.append(f"  jedi      {jedi[0]} (gRPC: tasks and datasets; {jedi_metrics})")
    if identity is not None:
        lines.append(f"  identity  {identity.address} (gRPC), OIDC issuer {identity.issuer}")
    if gateway is not None:
        gateway_metrics = f"http://{settings.metrics_host}:{gateway[1]}/metrics" if gateway[1] else "metrics disabled"
        lines.append(f"  gateway   {gateway_url(gateway[0])} (HTTP/JSON; API page: /docs; {gateway_metrics})")
        lines.append(f"  monitor   {gateway_url(gateway[0])}/monitor/ (the web monitor: sign in in the browser)")
    lines += [
        f"  data dir  {settings.data_dir}",
        f"  database  {display_url(database_url)}",
        f"  pilots    started by harvester as work arrives: up to {pilots} on queue {LOCAL_QUEUE}"
        + "".join(f", {1 if pilots else 0} on {name}" for name, _ in EXTRA_QUEUES) + " (`panda workers`)",
        "  logs      " + "\n            ".join(str(c.log_path) for c in supervisor.children),
    ]
    if identity is not None:
        lines += [
            "",
            f"signed in as {identity.admin} (admin): token in {identity.token_path}",
            f"  admin password (for the sign-in page): {identity.password_path}",
            f"  others: an admin adds them (panda iam user add NAME --group /{VO}), then they run",
            f"  `panda login` and approve the code at {identity.issuer}/device",
        ]
    if demo:
        lines.append("")
        lines.append("demo jobs:")
        lines += [f"  {job_id}  {text}" for job_id, text in demo]
    lines.append("")
    lines.append("try, in another terminal:")
    if address != DEFAULT_SERVER_ADDRESS:
        lines.append(f"  export PANDA_SERVER={address}")
    if identity is not None and identity.address != DEFAULT_IAM_ADDRESS:
        lines.append(f"  export PANDA_IAM={identity.address} PANDA_AUTH_ISSUERS={identity.issuer}")
    watch_id = demo[0][0] if demo else "ID"
    lines += [
        "  panda whoami",
        f"  panda submit --queue {LOCAL_QUEUE} -- echo hello",
        "  panda jobs",
        f"  panda job watch {watch_id}",
        f"  panda job show {watch_id}",
        "  panda queue list",
        "  panda workers",
    ]
    if gateway is not None and identity is not None:
        lines.append(f'  curl -H "Authorization: Bearer $(jq -r .access_token {identity.token_path})" '
                     f"{gateway_url(gateway[0])}/v1/queues")
    if jedi is not None:
        if jedi[0] != DEFAULT_JEDI_ADDRESS:
            lines.append(f"  export PANDA_JEDI={jedi[0]}")
        lines += [
            "  panda dataset register user.me.demo FILE... --events 100",
            "  panda task submit -f examples/task.yaml",
            "  panda tasks",
        ]
    print("\n".join(lines), flush=True)
