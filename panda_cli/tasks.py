"""Task and dataset commands, talking to JEDI (PANDA_JEDI, default 127.0.0.1:25180):
`panda task submit|show|watch|kill|finish|retry|pause|resume|reassign|priority`, `panda tasks`,
`panda dataset register|list|show`, and `panda serve jedi`."""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import shutil
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import grpc

from panda.jedi.v1 import (
    dataset_pb2,
    dataset_service_pb2,
    dataset_service_pb2_grpc,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
)
from panda.server.v1 import queue_service_pb2
from panda_runtime.client.channels import error_message

from . import output
from .arguments import non_negative_int, positive_int, task_id_arg
from .output import format_bytes, format_duration, format_time, or_dash, render_table
from .rpc import Client, CliError, open_channel
from .settings import CliSettings
from .specs import SpecError, parse_since
from .task_specs import build_task_filter, task_from_yaml

T = task_pb2.Task
FINAL_TASK_STATES = frozenset({T.STATE_DONE, T.STATE_FINISHED, T.STATE_FAILED, T.STATE_ABORTED, T.STATE_BROKEN})
NAME_WIDTH = 40


def task_state_name(state: int) -> str:
    try:
        return T.State.Name(state).removeprefix("STATE_").lower()
    except ValueError:
        return f"state-{state}"


def task_state_choices() -> list[str]:
    names: list[str] = list(T.State.keys())
    return [n.removeprefix("STATE_").lower() for n in names if n != "STATE_UNSPECIFIED"]


def file_state_name(status: int) -> str:
    try:
        return dataset_pb2.TaskFileState.Status.Name(status).removeprefix("STATUS_").lower()
    except ValueError:
        return f"status-{status}"


# --- the connection to JEDI ----------------------------------------------------------------


def jedi_address(args: argparse.Namespace) -> str:
    return getattr(args, "jedi", None) or CliSettings().jedi_address


class JediClient:
    """One channel to JEDI; unary calls with a deadline, failures as CliError."""

    def __init__(self, address: str, deadline: float = 30.0) -> None:
        self.address = address
        self.deadline = deadline
        self.channel = open_channel(address)
        self.tasks = task_service_pb2_grpc.TaskServiceStub(self.channel)
        self.datasets = dataset_service_pb2_grpc.DatasetServiceStub(self.channel)

    def __enter__(self) -> JediClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()

    def call(self, method: Callable[..., Any], request: Any, *, retry: bool = False) -> Any:
        """A unary call; with retry (requests with a request id) transient failures are repeated."""
        attempts = 3 if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return method(request, timeout=self.deadline)
            except grpc.RpcError as error:
                transient = error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if transient and attempt < attempts:
                    time.sleep(0.5 * attempt)
                    continue
                raise self.translate(error) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def translate(self, error: grpc.RpcError) -> CliError:
        code = error.code() if hasattr(error, "code") else None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and not self.reachable():
            return CliError(f"cannot reach JEDI at {self.address} (is `panda up` running? set PANDA_JEDI or --jedi)",
                            code=code)
        return CliError(error_message(error), code=code)

    def reachable(self, timeout: float = 2.0) -> bool:
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        return True


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "someone"


# --- task submit ---------------------------------------------------------------------------


def cmd_task_submit(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    try:
        params = task_from_yaml(text, source=args.file)
    except SpecError as exc:
        raise CliError(str(exc), exit_code=2) from None
    request = task_service_pb2.SubmitTaskRequest(params=params, request_id=str(uuid.uuid4()))
    with JediClient(jedi_address(args)) as client:
        task = client.call(client.tasks.SubmitTask, request, retry=True).task
    if args.json:
        output.print_json(task)
    else:
        print(task.task_id)
    return 0


# --- tasks (list) --------------------------------------------------------------------------


def cmd_tasks(args: argparse.Namespace) -> int:
    if args.state and args.state.strip().lower().removeprefix("state_") not in task_state_choices():
        raise CliError(f"unknown task state {args.state!r} (choose from {', '.join(task_state_choices())})", 2)
    try:
        since = parse_since(args.since) if args.since else None
    except SpecError as exc:
        raise CliError(str(exc), exit_code=2) from None
    task_filter = build_task_filter(state=args.state, owner=args.owner, name=args.name, since=since)
    request = task_service_pb2.ListTasksRequest(page_size=args.limit, page_token=args.page_token or "",
                                                filter=task_filter)
    with JediClient(jedi_address(args)) as client:
        response = client.call(client.tasks.ListTasks, request)
    if args.json:
        output.print_json(response)
        return 0
    if response.tasks:
        print(render_tasks_table(response.tasks))
    else:
        print("no tasks" + (f" match {task_filter}" if task_filter else ""))
    footer = f"showing {len(response.tasks)} of {response.total_size}"
    if response.next_page_token:
        footer += f"; next page: same command with --page-token {response.next_page_token}"
    print(footer)
    return 0


def files_text(progress: task_pb2.TaskProgress) -> str:
    return f"{progress.files_finished}/{progress.files_total}"


def render_tasks_table(tasks: Iterable[task_pb2.Task]) -> str:
    rows = [
        [
            t.task_id,
            output.truncate(t.params.task_name, NAME_WIDTH),
            task_state_name(t.state),
            or_dash(t.params.owner),
            t.priority,
            files_text(t.progress),
            t.progress.files_failed or "-",
            t.progress.job_counts.get("running", 0) or "-",
            format_time(t.update_time),
        ]
        for t in tasks
    ]
    headers = ["ID", "NAME", "STATE", "OWNER", "PRIO", "FILES DONE", "FAILED", "RUNNING", "UPDATED"]
    return render_table(headers, rows, right=(0, 4, 5, 6, 7))


# --- task show -----------------------------------------------------------------------------


def cmd_task_show(args: argparse.Namespace) -> int:
    with JediClient(jedi_address(args)) as client:
        task = client.call(client.tasks.GetTask, task_service_pb2.GetTaskRequest(task_id=args.task_id)).task
    if args.json:
        output.print_json(task)
    else:
        print(render_task(task))
    return 0


def split_text(rule: task_pb2.SplitRule) -> str:
    which = rule.WhichOneof("rule")
    if which == "events_per_job":
        return f"{rule.events_per_job} events per job"
    if which == "gb_per_job":
        return f"{rule.gb_per_job:g} GB per job"
    return f"{rule.files_per_job or 1} file(s) per job"


def resources_text(r: Any) -> str:
    parts = [f"{r.cores or '-'} core{'s' if r.cores != 1 else ''}", f"memory {output.format_mb(r.memory_mb)}",
             f"walltime {format_duration(r.walltime_seconds)}"]
    if r.disk_mb:
        parts.append(f"disk {output.format_mb(r.disk_mb)}")
    return ", ".join(parts)


def progress_text(p: task_pb2.TaskProgress) -> str:
    return (f"{p.files_finished} done, {p.files_failed} failed, {p.files_running} running, "
            f"{p.files_ready} waiting, {p.files_cancelled} cancelled, of {p.files_total} file(s)")


def scouts_text(task: task_pb2.Task) -> str:
    s = task.scouts
    if not s.jobs:
        wanted = task.params.scout_jobs if task.params.HasField("scout_jobs") else None
        return "none" if wanted == 0 else "not yet run"
    text = f"{s.jobs} job(s): {s.succeeded} succeeded, {s.failed} failed"
    if s.applied:
        text += (f"; measured {s.memory_mb} MB peak memory, {format_duration(s.walltime_seconds) or '0s'} walltime, "
                 f"{s.cpu_seconds:.1f} s CPU (95th percentile); applied to the other jobs")
    return text


def render_task(task: task_pb2.Task) -> str:
    p = task.params
    counts = " ".join(f"{k}={v}" for k, v in sorted(task.progress.job_counts.items(), key=lambda kv: kv[0])) or "-"
    fields: list[tuple[str, object]] = [
        ("task", f"{task.task_id}  {p.task_name}"),
        ("state", task_state_name(task.state) + (f"  ({task.state_reason})" if task.state_reason else "")),
        ("owner", p.owner + (f"  (working group {p.working_group})" if p.working_group else "")),
        ("priority", task.priority),
        ("inputs", ", ".join(p.input_datasets)),
        ("output", f"{p.output_dataset}  ({task.progress.output_files} file(s), "
                   f"{format_bytes(task.progress.output_bytes)})"),
        ("split", split_text(p.split_rule)),
        ("transformation", shlex.join(p.transformation)),
        ("job resources", resources_text(task.job_resources)),
        ("queues", ", ".join(task.queues) or "any online queue"
         + (f" except {', '.join(p.excluded_queues)}" if p.excluded_queues else "")),
        ("attempts", f"{p.max_attempts or '-'} per file"),
        ("progress", progress_text(task.progress)),
        ("jobs", counts),
        ("scouts", scouts_text(task)),
        ("created", format_time(task.create_time)),
        ("started", format_time(task.start_time)),
        ("ended", format_time(task.end_time)),
    ]
    sections = [output.render_fields(fields)]
    if task.history:
        rows = [[format_time(e.time), _change(e), e.reason or "-"] for e in task.history]
        table = render_table(["TIME", "STATE", "WHAT"], rows)
        sections.append("history:\n" + "\n".join("  " + line for line in table.splitlines()))
    return "\n\n".join(sections)


def _change(event: task_pb2.TaskEvent) -> str:
    if event.previous_state in (event.state, T.STATE_UNSPECIFIED):
        return task_state_name(event.state)
    return f"{task_state_name(event.previous_state)} -> {task_state_name(event.state)}"


# --- task watch ----------------------------------------------------------------------------


def cmd_task_watch(args: argparse.Namespace) -> int:
    """Print the task's events until it reaches a final state; exit 0 for done or finished."""
    cursor = 0
    with JediClient(jedi_address(args)) as client:
        task = client.call(client.tasks.GetTask, task_service_pb2.GetTaskRequest(task_id=args.task_id)).task
        while True:
            stream = client.tasks.WatchTasks(task_service_pb2.WatchTasksRequest(task_id=args.task_id,
                                                                                after_cursor=cursor), timeout=300)
            try:
                for response in stream:
                    event = response.event
                    cursor = event.cursor
                    if args.json:
                        output.print_json_line(event)
                    else:
                        print(f"{format_time(event.time)}  {_change(event):<22}  {event.reason}", flush=True)
                    if event.state in FINAL_TASK_STATES and event.state != event.previous_state:
                        return 0 if event.state in (T.STATE_DONE, T.STATE_FINISHED) else 1
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise client.translate(error) from None
            if task.state in FINAL_TASK_STATES and not cursor:
                return 0 if task.state in (T.STATE_DONE, T.STATE_FINISHED) else 1


# --- task commands ---------------------------------------------------------------------------


def cmd_task_command(args: argparse.Namespace) -> int:
    kind = args.task_command
    reason = getattr(args, "reason", None) or f"{kind} by {_user()} with `panda task {kind}`"
    task_id = args.task_id
    with JediClient(jedi_address(args)) as client:
        stub = client.tasks
        if kind == "kill":
            task = client.call(stub.KillTask, task_service_pb2.KillTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "finish":
            task = client.call(stub.FinishTask, task_service_pb2.FinishTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "retry":
            task = client.call(stub.RetryTask, task_service_pb2.RetryTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "pause":
            task = client.call(stub.PauseTask, task_service_pb2.PauseTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "resume":
            task = client.call(stub.ResumeTask, task_service_pb2.ResumeTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "reassign":
            task = client.call(stub.ReassignTask, task_service_pb2.ReassignTaskRequest(
                task_id=task_id, queues=args.queue, reason=reason)).task
        elif kind == "priority":
            task = client.call(stub.SetTaskPriority, task_service_pb2.SetTaskPriorityRequest(
                task_id=task_id, priority=args.priority)).task
        else:  # pragma: no cover - the parser allows only the above
            raise CliError(f"unknown task command {kind}", 2)
    if args.json:
        output.print_json(task)
        return 0
    detail = f" ({task.state_reason})" if task.state_reason else ""
    if kind == "priority":
        detail = f", priority {task.priority} for its next jobs"
    elif kind == "reassign":
        detail = f", queues {', '.join(task.queues)}"
    print(f"task {task.task_id}: {task_state_name(task.state)}{detail}")
    return 0


# --- datasets --------------------------------------------------------------------------------


def adler32_file(path: Path) -> tuple[int, str]:
    value, size = zlib.adler32(b""), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1024 * 1024):
            value = zlib.adler32(chunk, value)
            size += len(chunk)
    return size, f"{value & 0xFFFFFFFF:08x}"


def se_directory(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise CliError(f"storage element {url}: only file:// storage elements can be written by this command", 2)
    return Path(unquote(parts.path))


def queue_storage_element(args: argparse.Namespace, queue: str) -> str:
    with Client(args.server) as client:
        found = client.call(client.queues.GetQueue, queue_service_pb2.GetQueueRequest(queue_id=queue)).queue
    if not found.storage_element:
        raise CliError(f"queue {queue} has no storage element; give --se URL", 2)
    return found.storage_element


def cmd_dataset_register(args: argparse.Namespace) -> int:
    se_url = args.se or queue_storage_element(args, args.queue)
    directory = se_directory(se_url)
    sources = [Path(f) for f in args.files]
    for source in sources:
        if not source.is_file():
            raise CliError(f"{source}: not a file", 2)
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise CliError("two files have the same name; the names become the logical file names", 2)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for source in sources:
        lfn = args.prefix + source.name
        size, checksum = adler32_file(source)
        target = directory / lfn
        if target.exists():
            if adler32_file(target) != (size, checksum):
                raise CliError(f"{target} exists with other contents; choose another --prefix", 1)
        else:
            part = target.with_name(f".{lfn}.part-{uuid.uuid4().hex[:8]}")
            shutil.copyfile(source, part)
            os.replace(part, target)
        files.append(dataset_pb2.DatasetFile(lfn=lfn, size_bytes=size, adler32=checksum, events=args.events,
                                             storage_elements=[se_url]))
    request = dataset_service_pb2.RegisterDatasetRequest(
        dataset=dataset_pb2.Dataset(dataset_id=args.name, owner=args.owner or ""), files=files,
        request_id=str(uuid.uuid4()))
    with JediClient(jedi_address(args)) as client:
        dataset = client.call(client.datasets.RegisterDataset, request, retry=True).dataset
    if args.json:
        output.print_json(dataset)
    else:
        print(f"dataset {dataset.dataset_id}: {dataset.file_count} file(s), {format_bytes(dataset.total_bytes)}, "
              f"{dataset.total_events} event(s), on {se_url}")
    return 0


def kind_name(kind: int) -> str:
    try:
        return dataset_pb2.Dataset.Kind.Name(kind).removeprefix("KIND_").lower()
    except ValueError:
        return f"kind-{kind}"


def cmd_dataset_list(args: argparse.Namespace) -> int:
    parts = []
    if args.name:
        parts.append(f"dataset_id = {_quote(args.name)}")
    if args.kind:
        parts.append(f"kind = {args.kind.upper()}")
    if args.owner:
        parts.append(f"owner = {_quote(args.owner)}")
    dataset_filter = " AND ".join(parts)
    request = dataset_service_pb2.ListDatasetsRequest(page_size=args.limit, page_token=args.page_token or "",
                                                      filter=dataset_filter)
    with JediClient(jedi_address(args)) as client:
        response = client.call(client.datasets.ListDatasets, request)
    if args.json:
        output.print_json(response)
        return 0
    rows = [[d.dataset_id, kind_name(d.kind), or_dash(d.owner), d.task_id or "-", d.file_count,
             format_bytes(d.total_bytes), d.total_events or "-", format_time(d.create_time)]
            for d in response.datasets]
    if rows:
        print(render_table(["NAME", "KIND", "OWNER", "TASK", "FILES", "SIZE", "EVENTS", "CREATED"], rows,
                           right=(3, 4, 5, 6)))
    else:
        print("no datasets" + (f" match {dataset_filter}" if dataset_filter else ""))
    footer = f"showing {len(response.datasets)} of {response.total_size}"
    if response.next_page_token:
        footer += f"; next page: same command with --page-token {response.next_page_token}"
    print(footer)
    return 0


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cmd_dataset_show(args: argparse.Namespace) -> int:
    with JediClient(jedi_address(args)) as client:
        dataset = client.call(client.datasets.GetDataset,
                              dataset_service_pb2.GetDatasetRequest(dataset_id=args.name)).dataset
        files: list[dataset_pb2.DatasetFile] = []
        token = ""
        while len(files) < args.files:
            response = client.call(client.datasets.ListDatasetFiles, dataset_service_pb2.ListDatasetFilesRequest(
                dataset_id=args.name, task_id=args.task or 0, page_size=min(1000, args.files - len(files)),
                page_token=token))
            files += response.files
            token = response.next_page_token
            if not token:
                break
    if args.json:
        output.print_json({"dataset": output.message_to_dict(dataset),
                           "files": [output.message_to_dict(f) for f in files]})
        return 0
    fields: list[tuple[str, object]] = [
        ("dataset", dataset.dataset_id), ("kind", kind_name(dataset.kind)), ("owner", dataset.owner),
        ("task", dataset.task_id or "-"), ("files", dataset.file_count), ("size", format_bytes(dataset.total_bytes)),
        ("events", dataset.total_events or "-"), ("created", format_time(dataset.create_time)),
        ("updated", format_time(dataset.update_time)),
    ]
    print(output.render_fields(fields))
    if files:
        if args.task:
            rows = [[f.lfn, file_state_name(f.task_state.status) if f.HasField("task_state") else "-",
                     f"{f.task_state.attempts}/{f.task_state.max_attempts}" if f.HasField("task_state") else "-",
                     f.task_state.job_id or "-",
                     (f"{f.task_state.error_code}: {f.task_state.error_diag}" if f.task_state.error_code else "-")]
                    for f in files]
            table = render_table(["LFN", f"IN TASK {args.task}", "ATTEMPTS", "JOB", "LAST ERROR"], rows)
        else:
            rows = [[f.lfn, format_bytes(f.size_bytes), f.adler32, f.events or "-", ", ".join(f.storage_elements),
                     f.job_id or "-"] for f in files]
            table = render_table(["LFN", "SIZE", "ADLER32", "EVENTS", "REPLICAS", "JOB"], rows, right=(1, 3))
        print("\nfiles:\n" + "\n".join("  " + line for line in table.splitlines()))
        if len(files) < dataset.file_count:
            print(f"  ... {dataset.file_count - len(files)} more (--files N shows more)")
    return 0


# --- serve jedi ------------------------------------------------------------------------------


def cmd_serve_jedi(args: argparse.Namespace) -> int:
    from .runners import import_component, use_server_address

    use_server_address(args)
    if getattr(args, "jedi", None):
        os.environ["PANDA_JEDI"] = args.jedi
    jedi_main = import_component("jedi_svc.main", "JEDI")
    db = import_component("panda_runtime.service.db", "the database layer")
    try:
        jedi_main.run()
    except db.DatabaseNotMigrated as exc:
        raise CliError(str(exc)) from None
    return 0


# --- the parser ------------------------------------------------------------------------------


def add_commands(commands: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """`task`, `tasks` and `dataset` on the main parser; `command` is main's helper that adds a
    subcommand with the shared --server/--json options."""

    def sub(group: Any, name: str, handler: Callable[..., int], text: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = command(group, name, handler, text, **kwargs)
        parser.add_argument("--jedi", metavar="ADDR", default=None,
                            help="JEDI's address (default: PANDA_JEDI, else 127.0.0.1:25180)")
        return parser

    # task ...
    task = commands.add_parser("task", help="submit, show, watch and steer tasks (JEDI)", description="tasks")
    task_commands = task.add_subparsers(dest="task_command", metavar="COMMAND", required=True)
    p = sub(task_commands, "submit", cmd_task_submit, "submit a task from a YAML file, print its id",
            epilog="the task file format is in the README (\"Task files\"); see examples/task.yaml")
    p.add_argument("-f", "--file", required=True, metavar="FILE", help="task file ('-' reads stdin)")
    p = sub(task_commands, "show", cmd_task_show,
            "a task's state, progress, jobs by state, scouts' measurements and history")
    p.add_argument("task_id", type=task_id_arg, metavar="ID")
    p = sub(task_commands, "watch", cmd_task_watch, "follow a task's events until it ends (exit 0: done/finished)")
    p.add_argument("task_id", type=task_id_arg, metavar="ID")
    for name, text in [("kill", "kill a task: its jobs are killed, it ends aborted"),
                       ("finish", "finish a task: no new jobs, running ones end"),
                       ("retry", "run again the failed and unprocessed files of a finished/failed/aborted/"
                                 "exhausted task"),
                       ("pause", "no new jobs until resumed"), ("resume", "resume a paused task")]:
        p = sub(task_commands, name, cmd_task_command, text)
        p.add_argument("task_id", type=task_id_arg, metavar="ID")
        p.add_argument("--reason", help="recorded in the task's history")
    p = sub(task_commands, "reassign", cmd_task_command, "send the task's queued and future jobs to other queues")
    p.add_argument("task_id", type=task_id_arg, metavar="ID")
    p.add_argument("--queue", action="append", required=True, metavar="Q", help="queue to use (repeatable)")
    p.add_argument("--reason", help="recorded in the task's history")
    p = sub(task_commands, "priority", cmd_task_command, "set the priority of the task's next jobs")
    p.add_argument("task_id", type=task_id_arg, metavar="ID")
    p.add_argument("priority", type=int, metavar="P")

    # tasks
    p = sub(commands, "tasks", cmd_tasks, "list tasks, newest first")
    p.add_argument("--state", metavar="S", help="one of: " + ", ".join(task_state_choices()))
    p.add_argument("--owner", metavar="O")
    p.add_argument("--name", metavar="PATTERN", help="task name, * as a wildcard (e.g. 'mc23.*')")
    p.add_argument("--since", metavar="WHEN", help="changed since: 30m, 1h, 2d, or an ISO date/time")
    p.add_argument("--limit", type=positive_int, default=50, metavar="N", help="tasks per page (default 50)")
    p.add_argument("--page-token", metavar="T", help="from the previous page's footer")

    # dataset ...
    dataset = commands.add_parser("dataset", help="register, list and show datasets (JEDI)", description="datasets")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", metavar="COMMAND", required=True)
    p = sub(dataset_commands, "register", cmd_dataset_register,
            "copy files onto a storage element and register them as a dataset")
    p.add_argument("name", metavar="NAME")
    p.add_argument("files", nargs="+", metavar="FILE")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--queue", default="local", metavar="Q",
                       help="put the files on this queue's storage element (default local)")
    where.add_argument("--se", metavar="URL", help="or on this storage element, e.g. file:///data/se/site-a")
    p.add_argument("--events", type=non_negative_int, default=0, metavar="N", help="events in each file")
    p.add_argument("--prefix", default="", metavar="P", help="prepended to each file name to make its LFN")
    p.add_argument("--owner", metavar="O", help="who the dataset belongs to (default: the caller)")
    p = sub(dataset_commands, "list", cmd_dataset_list, "datasets, newest first")
    p.add_argument("--name", metavar="PATTERN", help="dataset name, * as a wildcard")
    p.add_argument("--kind", choices=["input", "output"])
    p.add_argument("--owner", metavar="O")
    p.add_argument("--limit", type=positive_int, default=50, metavar="N")
    p.add_argument("--page-token", metavar="T")
    p = sub(dataset_commands, "show", cmd_dataset_show, "a dataset and its files (with --task: their state there)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--task", type=task_id_arg, metavar="ID", help="show each file's state in this task")
    p.add_argument("--files", type=non_negative_int, default=50, metavar="N", help="files to list (default 50)")


def add_serve_command(serve_commands: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(serve_commands, "jedi", cmd_serve_jedi, "JEDI, the task engine (gRPC and metrics)", json_flag=False)
    p.add_argument("--jedi", metavar="ADDR", default=None, help="address to listen on (default: PANDA_JEDI)")
