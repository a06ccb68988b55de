"""`panda up`: the identity service, the server, JEDI, the HTTP/JSON gateway and some pilots on
one machine, in the foreground, supervised.

Where the services listen and the identity they are given: `local_mesh.py`. Every child is
started through the launcher (`launcher.py`), in a process group of its own, so the terminal's
Ctrl-C reaches only us and we stop the children in order: the gateway first (no new requests
come in through it), then the pilots (they finish talking to the server), then JEDI, the server,
the identity service. Anything still alive after the timeout gets SIGKILL, by its own group only.

Queues: `local` with the --pilots pilots, and two more so JEDI's brokerage has a choice:
`local-b` and `local-small` (jobs of at most 1000 MB), with one pilot each. Each queue has a
storage element of its own name, a directory under the data dir's `se/`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

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
    IAM,
    JEDI,
    PILOT,
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
    JEDI_ROBOT,
    PILOT_ROBOT,
    VO,
    LocalIdentity,
    gateway_endpoints,
    iam_endpoints,
    jedi_endpoints,
    provision_identity,
)
from .runners import build_pilot_parser, describe_upgrade, display_url, upgrade

if TYPE_CHECKING:
    from server_svc.settings import ServerSettings

__all__ = [
    "EXTRA_PILOT_PREFIX", "EXTRA_QUEUES", "IDENTITY_VARIABLES", "LOCAL_QUEUE", "PILOT_CONNECT_TIMEOUT_SECONDS",
    "PILOT_IDLE_TIMEOUT_SECONDS", "SERVER_START_TIMEOUT_SECONDS", "ChildDied", "child_env", "cmd_up", "demo_jobs",
    "ensure_local_queue", "ensure_storage_element", "find_option", "pilot_argv", "print_summary", "stop_all",
    "wait_for", "wait_for_pilots",
]

LOCAL_QUEUE = "local"
# The other queues `panda up` makes, each with one pilot: (name, largest job's memory in MB).
EXTRA_QUEUES = [("local-b", 0), ("local-small", 1000)]
EXTRA_PILOT_PREFIX = "pilot@"
# Pilots normally leave when idle or old; under `panda up` they should wait for work "forever".
PILOT_IDLE_TIMEOUT_SECONDS = 10 * 365 * 24 * 3600
SERVER_START_TIMEOUT_SECONDS = 60.0
PILOT_CONNECT_TIMEOUT_SECONDS = 30.0


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


def find_option(parser: argparse.ArgumentParser, *fragments: str) -> str | None:
    """The pilot's long option whose name contains one of `fragments` (the pilot owns its
    option names; we only know what they are for)."""
    for fragment in fragments:
        for option in parser._option_string_actions:
            if option.startswith("--") and fragment in option:
                return option
    return None


def pilot_argv(workdir: Path, address: str, queue: str = LOCAL_QUEUE) -> list[str]:
    argv = PILOT.argv("--queue", queue, "--workdir", str(workdir))
    parser = build_pilot_parser()
    idle = find_option(parser, "idle")
    if idle:
        argv += [idle, str(PILOT_IDLE_TIMEOUT_SECONDS)]
    else:
        print("note: the pilot has no idle-timeout option; pilots may leave when idle", file=sys.stderr)
    # Its lifetime too: a pilot at the end of its lifetime leaves (and offers less walltime
    # to jobs as it nears it), which under `panda up` would look like a crash.
    lifetime = find_option(parser, "lifetime")
    if lifetime:
        argv += [lifetime, str(PILOT_IDLE_TIMEOUT_SECONDS)]
    if "--server" in parser._option_string_actions:
        argv += ["--server", address]
    return argv


def wait_for_pilots(supervisor: Supervisor, client: ServerClient, count: int, queue_id: str = LOCAL_QUEUE) -> int:
    """Waits until `count` pilots are connected to the queue; returns how many are."""
    deadline = time.monotonic() + PILOT_CONNECT_TIMEOUT_SECONDS
    connected = 0
    while True:
        dead = supervisor.dead_child()
        if dead is not None:
            raise ChildDied(dead)
        queue = client.queues.GetQueue(queue_service_pb2.GetQueueRequest(queue_id=queue_id)).queue
        connected = queue.connected_pilots
        if connected >= count or time.monotonic() > deadline:
            return connected
        supervisor.sleep(0.25)


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

    supervisor = Supervisor(stop_timeout=args.stop_timeout)
    # Ctrl-C on `panda up | tee log` ends tee too: every child must still be stopped.
    with output.writing_past_a_closed_reader():
        return _supervise(args, supervisor, settings, address, database_url, logs_dir, se_dir, jedi, iam, gateway)


def _supervise(args: argparse.Namespace, supervisor: Supervisor, settings: ServerSettings, address: str,
               database_url: str, logs_dir: Path, se_dir: Path, jedi: tuple[str, int],
               iam: tuple[str, int, int], gateway: tuple[str, int]) -> int:
    """Run everything until a signal (SIGINT, SIGTERM, SIGHUP) or a child's death, then stop
    every child, whatever happened in between."""
    supervisor.install_signal_handlers()
    try:
        return _run(args, supervisor, settings, address, database_url, logs_dir, se_dir, jedi, iam, gateway)
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
    """The gateway first (no new requests come in through it), then the pilots (they finish
    talking to the server), then JEDI, then the server, then the identity service (the others
    need it to the end); a no-op once stopped."""
    living = [child for child in supervisor.children if child.alive()]
    others = [c for c in living if c.name.startswith(EXTRA_PILOT_PREFIX)]
    pilots = [c for c in living if c.name.startswith("pilot-")]
    by_name = {name: [c for c in living if c.name == name]
               for name in (GATEWAY.name, JEDI.name, SERVER.name, IAM.name)}
    queues = ", ".join(c.name.removeprefix(EXTRA_PILOT_PREFIX) for c in others)
    supervisor.stop([
        ("the gateway", by_name[GATEWAY.name]),
        (f"the pilots of queues {queues}", others),
        (f"{len(pilots)} pilot(s)", pilots),
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


def _run(
    args: argparse.Namespace,
    supervisor: Supervisor,
    settings: ServerSettings,
    address: str,
    database_url: str,
    logs_dir: Path,
    se_dir: Path,
    jedi: tuple[str, int] = (DEFAULT_JEDI_ADDRESS, DEFAULT_JEDI_METRICS_PORT),
    iam: tuple[str, int, int] = (DEFAULT_IAM_ADDRESS, DEFAULT_IAM_HTTP_PORT, DEFAULT_IAM_METRICS_PORT),
    gateway: tuple[str, int] = (DEFAULT_GATEWAY_ADDRESS, DEFAULT_GATEWAY_METRICS_PORT),
) -> int:
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

    pilot_env = {**env, **identity.robot_env(PILOT_ROBOT)}
    pilot_commands = [pilot_argv(settings.data_dir / "pilots" / str(i), address) for i in range(1, args.pilots + 1)]
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

        for i, argv in enumerate(pilot_commands, start=1):
            (settings.data_dir / "pilots" / str(i)).mkdir(parents=True, exist_ok=True)
            pilot = supervisor.start(f"pilot-{i}", argv, pilot_env, logs_dir / f"pilot-{i}.log")
            print(f"pilot-{i} started (pid {pilot.pid}, workdir {argv[argv.index('--workdir') + 1]})", flush=True)
        extra_pilots = [name for name, _ in EXTRA_QUEUES] if args.pilots else []
        for name in extra_pilots:
            workdir = settings.data_dir / "pilots" / name
            workdir.mkdir(parents=True, exist_ok=True)
            pilot = supervisor.start(f"{EXTRA_PILOT_PREFIX}{name}", pilot_argv(workdir, address, name), pilot_env,
                                     logs_dir / f"pilot-{name}.log")
            print(f"pilot for queue {name} started (pid {pilot.pid}, workdir {workdir})", flush=True)
        if args.pilots:
            connected = wait_for_pilots(supervisor, client, args.pilots)
            if connected >= args.pilots:
                print(f"pilots: {connected} connected to queue {LOCAL_QUEUE}", flush=True)
            else:
                print(
                    f"warning: {connected} of {args.pilots} pilots connected after "
                    f"{PILOT_CONNECT_TIMEOUT_SECONDS:.0f}s; see {logs_dir}/pilot-*.log",
                    file=sys.stderr,
                    flush=True,
                )
        for name in extra_pilots:
            connected = wait_for_pilots(supervisor, client, 1, name)
            if connected:
                print(f"pilots: {connected} connected to queue {name}", flush=True)
            else:
                print(f"warning: the pilot of queue {name} did not connect; see {logs_dir}/pilot-{name}.log",
                      file=sys.stderr, flush=True)

        demo = demo_jobs(client) if args.demo else []

    print_summary(settings, address, database_url, supervisor, demo, jedi, identity, gateway)

    # Supervise: wake on a signal, or look at the children twice a second.
    while not supervisor.stop_event.wait(0.5):
        dead = supervisor.dead_child()
        if dead is not None:
            raise ChildDied(dead)
    raise StopRequested


def print_summary(
    settings: ServerSettings,
    address: str,
    database_url: str,
    supervisor: Supervisor,
    demo: list[tuple[int, str]],
    jedi: tuple[str, int] | None = None,
    identity: LocalIdentity | None = None,
    gateway: tuple[str, int] | None = None,
) -> None:
    metrics = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics" if settings.metrics_port else "disabled"
    pilots = [c for c in supervisor.children if c.name.startswith("pilot-")]
    others = [c.name.removeprefix(EXTRA_PILOT_PREFIX) for c in supervisor.children
              if c.name.startswith(EXTRA_PILOT_PREFIX)]
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
        f"  pilots    {len(pilots)} on queue {LOCAL_QUEUE}" + "".join(f", 1 on {name}" for name in others),
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
