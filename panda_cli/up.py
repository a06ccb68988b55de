"""`panda up`: the identity service, the server, JEDI and some pilots on one machine, in the
foreground, supervised.

Identity: the signing key, an admin (named after the local user), and the robots the mesh
needs (JEDI's, the pilots') are made in the database before anything starts; each robot gets a
fresh secret at every start, handed to its processes only. The admin's token is written to the
user's config directory (mode 0600, as local cluster tools write their kubeconfig), so the same
user's command line works at once.

Each child runs in its own process group (start_new_session), so the terminal's Ctrl-C reaches
only us and we stop the children in order: pilots first (they finish talking to the server),
then JEDI, then the server. Anything still alive after the timeout gets SIGKILL, by its own
group only.

Queues: `local` with the --pilots pilots, and two more so JEDI's brokerage has a choice:
`local-b` (its own storage element) and `local-small` (jobs of at most 1000 MB), with one pilot
each.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2

from panda.common.v1 import resources_pb2
from panda.server.v1 import job_pb2, job_service_pb2, queue_pb2, queue_service_pb2
from panda_runtime.client import ConnectConfig, ServerClient, ServiceClient
from panda_runtime.client.credentials import LoginToken, login_file, write_login
from panda_runtime.settings import (
    DEFAULT_IAM_ADDRESS,
    DEFAULT_IAM_HTTP_PORT,
    DEFAULT_IAM_METRICS_PORT,
    DEFAULT_JEDI_ADDRESS,
    DEFAULT_JEDI_METRICS_PORT,
    DEFAULT_SERVER_ADDRESS,
    DEFAULT_SERVER_METRICS_PORT,
)

from .clients import server_client
from .errors import CliError
from .runners import build_pilot_parser, describe_upgrade, display_url, upgrade

if TYPE_CHECKING:
    from server_svc.settings import ServerSettings

LOCAL_QUEUE = "local"
# The other queues `panda up` makes, each with one pilot: (name, largest job's memory in MB).
EXTRA_QUEUES = [("local-b", 0), ("local-small", 1000)]
EXTRA_PILOT_PREFIX = "pilot@"
# Pilots normally leave when idle or old; under `panda up` they should wait for work "forever".
PILOT_IDLE_TIMEOUT_SECONDS = 10 * 365 * 24 * 3600
SERVER_START_TIMEOUT_SECONDS = 60.0
PILOT_CONNECT_TIMEOUT_SECONDS = 30.0
LOG_TAIL_LINES = 15


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived while starting up."""


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        # The group was created by us for this child (start_new_session), so it holds only the
        # child and whatever it started; a group that is already gone is fine.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


class Supervisor:
    """Starts children, notices one dying, and stops them all in order."""

    def __init__(self, stop_timeout: float) -> None:
        self.stop_timeout = stop_timeout
        self.children: list[Child] = []
        self.stop_event = threading.Event()
        self.hurry = threading.Event()  # a second Ctrl-C while stopping: SIGKILL at once
        self.signal_name = ""
        self._previous_handlers: dict[int, object] = {}

    # signals

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_event.is_set():
            self.hurry.set()
        else:
            self.signal_name = signal.Signals(signum).name
            self.stop_event.set()

    def check_stop(self) -> None:
        if self.stop_event.is_set():
            raise StopRequested

    def sleep(self, seconds: float) -> None:
        """Sleep that ends early, with StopRequested, when a signal asks us to stop."""
        if self.stop_event.wait(seconds):
            raise StopRequested

    # children

    def start(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> Child:
        child = Child(name=name, argv=argv, log_path=log_path)
        log_file = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        log_file.write(f"\n=== {stamp} panda up: starting {name}: {' '.join(argv)}\n".encode())
        log_file.flush()
        child.log_file = log_file
        child.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.children.append(child)
        return child

    def dead_child(self) -> Child | None:
        for child in self.children:
            if not child.alive():
                return child
        return None

    def stop_all(self) -> None:
        """SIGTERM pilots, wait; SIGTERM JEDI, wait; SIGTERM the server, wait; SIGTERM the
        identity service (the others need it to the end), wait; SIGKILL the rest."""
        services = ("server", "jedi", "iam")
        others = [c for c in self.children if c.name.startswith(EXTRA_PILOT_PREFIX) and c.alive()]
        pilots = [c for c in self.children if c.name not in services and c not in others and c.alive()]
        jedi = [c for c in self.children if c.name == "jedi" and c.alive()]
        servers = [c for c in self.children if c.name == "server" and c.alive()]
        identity = [c for c in self.children if c.name == "iam" and c.alive()]
        if others:
            names = ", ".join(c.name.removeprefix(EXTRA_PILOT_PREFIX) for c in others)
            print(f"stopping the pilots of queues {names}...", flush=True)
            self._terminate(others)
        if pilots:
            print(f"stopping {len(pilots)} pilot(s)...", flush=True)
            self._terminate(pilots)
        if jedi:
            print("stopping JEDI...", flush=True)
            self._terminate(jedi)
        if servers:
            print("stopping the server...", flush=True)
            self._terminate(servers)
        if identity:
            print("stopping the identity service...", flush=True)
            self._terminate(identity)
        for child in self.children:
            if child.log_file is not None:
                child.log_file.close()
                child.log_file = None

    def _terminate(self, children: Sequence[Child]) -> None:
        for child in children:
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(c.alive() for c in children) and time.monotonic() < deadline and not self.hurry.is_set():
            time.sleep(0.1)
        for child in children:
            if child.alive():
                print(f"{child.name} (pid {child.pid}) did not stop in time: killing it", flush=True)
                child.signal_group(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=5)  # type: ignore[union-attr]
            else:
                # The group may still hold processes the child left behind (e.g. a payload).
                child.signal_group(signal.SIGKILL)


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


def health_status(address: str, timeout: float = 1.0) -> int | None:
    """The server's overall health status, or None when nothing answers."""
    with ServiceClient(ConnectConfig(address, deadline=timeout)) as client:
        try:
            return client.health.Check(health_pb2.HealthCheckRequest(service="")).status
        except grpc.RpcError:
            return None


def wait_for_server(supervisor: Supervisor, server: Child, address: str, what: str = "the server") -> float:
    """Poll the gRPC health check until SERVING; returns the seconds it took."""
    start = time.monotonic()
    interactive = sys.stdout.isatty()
    print(f"waiting for {what} at {address} ...", end="" if interactive else "\n", flush=True)
    while True:
        supervisor.check_stop()
        if not server.alive():
            if interactive:
                print()
            raise CliError(
                f"{what} exited during startup (code {server.process.returncode}); "  # type: ignore[union-attr]
                f"last lines of {server.log_path}:\n{log_tail(server.log_path)}"
            )
        if health_status(address) == health_pb2.HealthCheckResponse.SERVING:
            elapsed = time.monotonic() - start
            if interactive:
                print(f"\rwaiting for {what} at {address} ... ready ({elapsed:.1f}s)", flush=True)
            return elapsed
        elapsed = time.monotonic() - start
        if elapsed > SERVER_START_TIMEOUT_SECONDS:
            if interactive:
                print()
            raise CliError(
                f"{what} did not answer its health check within {SERVER_START_TIMEOUT_SECONDS:.0f}s; "
                f"see {server.log_path}"
            )
        if interactive:
            print(f"\rwaiting for {what} at {address} ... {elapsed:.0f}s", end="", flush=True)
        supervisor.sleep(0.25)


def ensure_local_queue(client: ServerClient, se_url: str, name: str = LOCAL_QUEUE, max_memory_mb: int = 0) -> str:
    """Create the queue (by default `local`) unless it exists; says what it did."""
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
        storage_element=se_url,
        description="created by `panda up`",
        max_resources=resources_pb2.Resources(memory_mb=max_memory_mb),
    )
    client.queues.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue))
    limit = f", jobs up to {max_memory_mb} MB" if max_memory_mb else ""
    return f"queue {name}: created (online, SE {se_url}{limit})"


def find_option(parser: argparse.ArgumentParser, *fragments: str) -> str | None:
    """The pilot's long option whose name contains one of `fragments` (the pilot owns its
    option names; we only know what they are for)."""
    for fragment in fragments:
        for option in parser._option_string_actions:
            if option.startswith("--") and fragment in option:
                return option
    return None


def pilot_argv(workdir: Path, address: str, queue: str = LOCAL_QUEUE) -> list[str]:
    if queue == LOCAL_QUEUE:
        argv = [sys.executable, "-m", "panda_cli.main", "pilot", "--queue", queue, "--workdir", str(workdir)]
    else:
        # The other queues' pilots: the same pilot, started by its own entry point.
        argv = [sys.executable, "-m", "pilot_agent", "--queue", queue, "--workdir", str(workdir)]
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
    def __init__(self, child: Child) -> None:
        super().__init__(child.name)
        self.child = child


def demo_jobs(client: ServerClient) -> list[tuple[int, str]]:
    """Two sample jobs: one producing an output file, one that runs for a while."""
    # LFNs are unique system-wide: a data dir that already ran jobs gets a fresh output name.
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
        raise CliError("--pilots must be 0 or more", exit_code=2)
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

    supervisor = Supervisor(stop_timeout=args.stop_timeout)
    supervisor.install_signal_handlers()
    try:
        return _run(args, supervisor, settings, address, database_url, logs_dir, se_dir, jedi, iam)
    except StopRequested:
        print(f"\n{supervisor.signal_name or 'signal'}: stopping", flush=True)
        supervisor.stop_all()
        print("stopped", flush=True)
        return 0
    except ChildDied as died:
        _report_death(died.child)
        supervisor.stop_all()
        return 1
    finally:
        supervisor.stop_all()  # after an error during startup; a no-op once stopped
        supervisor.restore_signal_handlers()


def _report_death(child: Child) -> None:
    code = child.process.returncode if child.process else None
    how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with code {code}"
    print(
        f"panda: {child.name} (pid {child.pid}) {how} unexpectedly; stopping everything.\n"
        f"  last lines of {child.log_path}:\n{log_tail(child.log_path)}",
        file=sys.stderr,
        flush=True,
    )


VO = "panda"
JEDI_ROBOT = "panda-jedi"
PILOT_ROBOT = "panda-pilot"
ADMIN_PASSWORD_FILE = "admin-password"


@dataclass
class LocalIdentity:
    """The identity service `panda up` runs, its admin and its robots' secrets."""

    address: str
    http_port: int
    metrics_port: int
    admin: str
    token_path: Path
    password_path: Path
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def trust_env(self) -> dict[str, str]:
        return {"PANDA_AUTH_ISSUERS": self.issuer, "PANDA_IAM_ISSUER": self.issuer}

    def service_env(self) -> dict[str, str]:
        return {**self.trust_env(), "PANDA_IAM": self.address, "PANDA_IAM_HTTP_PORT": str(self.http_port),
                "PANDA_IAM_METRICS_PORT": str(self.metrics_port)}

    def robot_env(self, client_id: str) -> dict[str, str]:
        return {**self.trust_env(), "PANDA_CLIENT_ID": client_id, "PANDA_CLIENT_SECRET": self.secrets[client_id]}


def iam_endpoints(settings: ServerSettings, server_address: str) -> tuple[str, int, int]:
    """The identity service's gRPC address, HTTP port and metrics port: PANDA_IAM* when set;
    else the defaults beside a server at its defaults, or 200 above the server's ports (the HTTP
    port one above its gRPC port)."""
    from iam_svc.settings import IamSettings

    iam = IamSettings()
    if any(name in os.environ for name in ("PANDA_IAM", "PANDA_IAM_ADDRESS")):
        address, http_port = iam.iam_address, iam.iam_http_port
    elif server_address == DEFAULT_SERVER_ADDRESS:
        address, http_port = DEFAULT_IAM_ADDRESS, DEFAULT_IAM_HTTP_PORT
    else:
        address = _shifted_address(server_address, 200, DEFAULT_IAM_ADDRESS, ports=2)
        http_port = int(address.rpartition(":")[2]) + 1 if address != DEFAULT_IAM_ADDRESS else DEFAULT_IAM_HTTP_PORT
    metrics = _shifted_metrics(settings, "PANDA_IAM_METRICS_PORT", iam.iam_metrics_port,
                               DEFAULT_IAM_METRICS_PORT, 200)
    return address, http_port, metrics


def local_user_name() -> str:
    """The admin's name: the local user's, as an account name the identity service accepts."""
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in getpass.getuser().lower()).strip("-._")
    return name or "admin"


def provision_identity(settings: ServerSettings, database_url: str, endpoints: tuple[str, int, int],
                       queues: list[str]) -> LocalIdentity:
    """Signing key, admin, robots; the admin's token in the user's config directory."""
    from iam_svc.main import CLI_CLIENT_ID, IamSettings, Person, Robot, provision

    from .settings import CliSettings

    address, http_port, metrics_port = endpoints
    identity = LocalIdentity(address, http_port, metrics_port, local_user_name(), login_file(CliSettings()),
                             settings.data_dir / ADMIN_PASSWORD_FILE)
    # A new admin password only while none is written down; written once the admin has it.
    password = None if identity.password_path.exists() else secrets.token_urlsafe(12)
    issued = time.time()
    provisioned = provision(
        IamSettings(database_url=database_url, iam_issuer=identity.issuer, auth_issuers=[identity.issuer]),
        people=[Person(identity.admin, groups=[f"/{VO}", f"/{VO}/admin"], password=password)],
        robots=[Robot(JEDI_ROBOT, groups=[f"/{VO}/service"]),
                Robot(PILOT_ROBOT, groups=[f"/{VO}/pilot"], queues=queues)],
        sign_in=[identity.admin],
    )
    if password is not None:
        fd = os.open(identity.password_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
    identity.secrets.update(provisioned.secrets)
    write_login(identity.token_path, identity.issuer, CLI_CLIENT_ID, dict(provisioned.tokens[identity.admin]), issued)
    return identity


def jedi_endpoints(settings: ServerSettings, server_address: str) -> tuple[str, int]:
    """JEDI's address and metrics port: PANDA_JEDI and PANDA_JEDI_METRICS_PORT when set; else
    the defaults beside a server at its defaults, or 100 above the server's ports."""
    from jedi_svc.settings import JediSettings

    jedi = JediSettings()
    if any(name in os.environ for name in ("PANDA_JEDI", "PANDA_JEDI_ADDRESS")):
        address = jedi.jedi_address
    elif server_address == DEFAULT_SERVER_ADDRESS:
        address = DEFAULT_JEDI_ADDRESS
    else:
        address = _shifted_address(server_address, 100, DEFAULT_JEDI_ADDRESS)
    metrics = _shifted_metrics(settings, "PANDA_JEDI_METRICS_PORT", jedi.jedi_metrics_port,
                               DEFAULT_JEDI_METRICS_PORT, 100)
    return address, metrics


def _shifted_address(server_address: str, offset: int, default: str, ports: int = 1) -> str:
    """The server's host with its port + `offset` (and the `ports` - 1 after it free to use), or
    `default` when that leaves the port range."""
    host, _, port = server_address.rpartition(":")
    if port.isdigit() and int(port) + offset + ports - 1 < 65536:
        return f"{host}:{int(port) + offset}"
    return default


def _shifted_metrics(settings: ServerSettings, variable: str, configured: int, default: int, offset: int) -> int:
    """A companion's metrics port: its own variable when set (0 when the server's metrics are
    off), its default beside the server's default, else the server's + `offset`."""
    if variable in os.environ or not settings.metrics_port:
        return configured if settings.metrics_port else 0
    if settings.metrics_port == DEFAULT_SERVER_METRICS_PORT:
        return default
    return settings.metrics_port + offset if settings.metrics_port + offset < 65536 else 0


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
) -> int:
    print(f"data dir: {settings.data_dir}", flush=True)
    before, after = upgrade(database_url)
    print(describe_upgrade(database_url, before, after), flush=True)
    supervisor.check_stop()

    queue_names = [LOCAL_QUEUE, *(name for name, _ in EXTRA_QUEUES)]
    identity = provision_identity(settings, database_url, iam, queue_names)
    print(f"identity: admin {identity.admin}, token written to {identity.token_path}", flush=True)
    env = {**child_env(settings, address, database_url), **identity.trust_env()}
    iam_child = supervisor.start(
        "iam", [sys.executable, "-m", "panda_cli.main", "serve", "iam"], {**env, **identity.service_env()},
        logs_dir / "iam.log",
    )
    wait_for_server(supervisor, iam_child, identity.address, "the identity service")
    print(f"identity service ready at {identity.address}, issuer {identity.issuer} (pid {iam_child.pid})",
          flush=True)

    pilot_env = {**env, **identity.robot_env(PILOT_ROBOT)}
    pilot_commands = [pilot_argv(settings.data_dir / "pilots" / str(i), address) for i in range(1, args.pilots + 1)]
    server = supervisor.start(
        "server", [sys.executable, "-m", "panda_cli.main", "serve", "server"], env, logs_dir / "server.log"
    )
    wait_for_server(supervisor, server, address)
    print(f"server ready at {address} (pid {server.pid})", flush=True)

    with server_client(address, tokens=LoginToken(identity.token_path)) as client:
        print(ensure_local_queue(client, f"file://{se_dir}"), flush=True)
        for name, max_memory in EXTRA_QUEUES:
            extra_se = se_dir.parent / name
            extra_se.mkdir(parents=True, exist_ok=True)
            print(ensure_local_queue(client, f"file://{extra_se}", name, max_memory), flush=True)

        jedi_env = {**env, **identity.robot_env(JEDI_ROBOT), "PANDA_JEDI": jedi[0],
                    "PANDA_JEDI_METRICS_PORT": str(jedi[1])}
        jedi_child = supervisor.start(
            "jedi", [sys.executable, "-m", "panda_cli.main", "serve", "jedi"], jedi_env, logs_dir / "jedi.log"
        )
        wait_for_server(supervisor, jedi_child, jedi[0], "JEDI")
        print(f"JEDI ready at {jedi[0]} (pid {jedi_child.pid})", flush=True)

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

    print_summary(settings, address, database_url, supervisor, demo, jedi, identity)

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
) -> None:
    metrics = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics" if settings.metrics_port else "disabled"
    pilots = [c for c in supervisor.children if c.name not in ("server", "jedi", "iam")
              and not c.name.startswith(EXTRA_PILOT_PREFIX)]
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
    if jedi is not None:
        if jedi[0] != DEFAULT_JEDI_ADDRESS:
            lines.append(f"  export PANDA_JEDI={jedi[0]}")
        lines += [
            "  panda dataset register user.me.demo FILE... --events 100",
            "  panda task submit -f examples/task.yaml",
            "  panda tasks",
        ]
    print("\n".join(lines), flush=True)
