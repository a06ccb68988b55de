"""Task commands, talking to JEDI (PANDA_JEDI, default 127.0.0.1:25180):
`panda task submit|show|watch|kill|finish|retry|pause|resume|reassign|priority` and `panda tasks`.
Datasets are in datasets.py, `panda run` (prun's options) in run.py; the parsers in commands/."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import shlex
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import grpc

from panda.jedi.v1 import task_pb2, task_service_pb2
from panda_runtime.client import JediClient

from . import output, progress
from .clients import first_rows, jedi_client
from .errors import CliError, ExitCode
from .output import format_bytes, format_duration, format_time, list_footer, or_dash, render_table
from .settings import CliSettings
from .specs import SpecError, parse_since
from .task_specs import build_task_filter, task_from_yaml

__all__ = [
    "FINAL_TASK_STATES", "LIVE_REFRESH_SECONDS", "NAME_WIDTH", "PLAIN_REFRESH_SECONDS", "cmd_task_command",
    "cmd_task_show", "cmd_task_submit", "cmd_task_watch", "cmd_tasks", "counts_text", "files_text", "monitor_link",
    "progress_text", "render_task", "render_tasks_table", "resources_text", "scouts_text", "split_text", "submit_task",
    "task_exit_code", "task_state_choices", "task_state_name",
]

T = task_pb2.Task
FINAL_TASK_STATES = frozenset({T.STATE_DONE, T.STATE_FINISHED, T.STATE_FAILED, T.STATE_ABORTED, T.STATE_BROKEN})
NAME_WIDTH = 40


def task_state_name(state: task_pb2.Task.State.ValueType) -> str:
    return output.enum_name(T.State, state, "STATE_")


def task_state_choices() -> list[str]:
    names: list[str] = list(T.State.keys())
    return [n.removeprefix("STATE_").lower() for n in names if n != "STATE_UNSPECIFIED"]


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
        raise CliError(str(exc), ExitCode.USAGE) from None
    return submit_task(args, params)


def submit_task(args: argparse.Namespace, params: task_pb2.TaskParams) -> int:
    """Submit the task; print its id (--json: the task), and its monitor page on stderr when
    PANDA_MONITOR_URL is set (`panda task submit` and `panda run`)."""
    request = task_service_pb2.SubmitTaskRequest(params=params, request_id=str(uuid.uuid4()))
    with jedi_client(args) as client:
        task = client.tasks.SubmitTask(request).task
    if args.json:
        output.print_json(task)
    else:
        print(task.task_id)
    link = monitor_link(CliSettings().monitor_url, task.task_id)
    if link:
        print(f"monitor: {link}", file=sys.stderr)
    return 0


def monitor_link(monitor_url: str, task_id: int) -> str:
    """The task's page on the web monitor at `monitor_url` ({task_id} replaced, else the id
    appended after a '/'); empty when no monitor is configured."""
    url = monitor_url.strip()
    if not url:
        return ""
    if "{task_id}" in url:
        return url.replace("{task_id}", str(task_id))
    return f"{url.rstrip('/')}/{task_id}"


# --- tasks (list) --------------------------------------------------------------------------


def cmd_tasks(args: argparse.Namespace) -> int:
    if args.state and args.state.strip().lower().removeprefix("state_") not in task_state_choices():
        raise CliError(f"unknown task state {args.state!r} (choose from {', '.join(task_state_choices())})",
                       ExitCode.USAGE)
    try:
        since = parse_since(args.since) if args.since else None
    except SpecError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    ended = [task_state_name(s) for s in sorted(FINAL_TASK_STATES)]
    not_states = ended if args.active else [s for s in task_state_choices() if s not in ended] if args.ended else []
    task_filter = build_task_filter(state=args.state, owner=args.owner, name=args.name, since=since,
                                    not_states=not_states)
    request = task_service_pb2.ListTasksRequest(page_token=args.page_token or "", filter=task_filter,
                                                order_by=args.order_by or "")
    with jedi_client(args) as client:
        tasks, last = first_rows(client.tasks.ListTasks, request, lambda page: page.tasks, args.limit)
    if args.json:
        output.print_list_json("tasks", tasks, next_page_token=last.next_page_token, total_size=last.total_size)
        return 0
    if tasks:
        print(render_tasks_table(tasks))
    else:
        print("no tasks" + (f" match {task_filter}" if task_filter else ""))
    print(list_footer(len(tasks), last.total_size, last.next_page_token))
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
    with jedi_client(args) as client:
        task = client.tasks.GetTask(task_service_pb2.GetTaskRequest(task_id=args.task_id)).task
    return output.show(task, render_task, as_json=args.json)


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

# How often `task watch` reads the task's counts: redrawn on a terminal, a plain line when they changed.
LIVE_REFRESH_SECONDS = 2.0
PLAIN_REFRESH_SECONDS = 10.0


def task_exit_code(state: task_pb2.Task.State.ValueType) -> int:
    return ExitCode.OK if state in (T.STATE_DONE, T.STATE_FINISHED) else ExitCode.WORK_FAILED


def counts_text(task: task_pb2.Task) -> str:
    """What `task watch` shows of a task's progress: its files and its jobs by state."""
    jobs = " ".join(f"{k}={v}" for k, v in sorted(task.progress.job_counts.items())) or "none"
    return f"task {task.task_id} {task_state_name(task.state)}: {progress_text(task.progress)}; jobs: {jobs}"


class _Every(threading.Thread):
    """Calls `action` every `seconds` until stopped (a context manager); a failed read waits for
    the next turn: the watch stream reports what is wrong."""

    def __init__(self, seconds: float, action: Callable[[], None]) -> None:
        super().__init__(daemon=True, name="task-counts")
        self._seconds = seconds
        self._action = action
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._seconds):
            with contextlib.suppress(grpc.RpcError):
                self._action()

    def __enter__(self) -> _Every:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self.join()


def cmd_task_watch(args: argparse.Namespace) -> int:
    """Print the task's events (from its first) until it reaches a final state, with its counts
    (files done, failed, running, waiting; jobs by state) live on a terminal, in plain lines on
    stderr otherwise; exit 0 for done or finished, 6 for failed, broken or aborted."""
    live = progress.on_terminal(args.json)
    request = task_service_pb2.GetTaskRequest(task_id=args.task_id)
    with jedi_client(args) as client, progress.LiveLine(live, counted=True, plain=True) as counts:

        def show_counts() -> None:
            task = client.tasks.GetTask(request).task
            p = task.progress
            counts.show(counts_text(task), done=p.files_finished + p.files_failed + p.files_cancelled,
                        total=p.files_total)

        show_counts()
        with _Every(LIVE_REFRESH_SECONDS if live else PLAIN_REFRESH_SECONDS, show_counts):
            code = _follow_task(client, args)
        show_counts()  # where it ended
        return code


def _follow_task(client: JediClient, args: argparse.Namespace) -> int:
    cursor = 0
    task = client.tasks.GetTask(task_service_pb2.GetTaskRequest(task_id=args.task_id)).task
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
                    task = client.tasks.GetTask(task_service_pb2.GetTaskRequest(task_id=args.task_id)).task
                    if _ended_at(task, event):
                        return task_exit_code(task.state)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise client.translate(error) from None
        if task.state in FINAL_TASK_STATES and not cursor:
            return task_exit_code(task.state)


def _ended_at(task: task_pb2.Task, event: task_pb2.TaskEvent) -> bool:
    """Whether `event` (into a final state) is where the task still is: a task retried since
    (failed, then running again) has changed state after it."""
    return task.state in FINAL_TASK_STATES and not any(
        e.cursor > event.cursor and e.state != e.previous_state for e in task.history)


# --- task commands ---------------------------------------------------------------------------


def cmd_task_command(args: argparse.Namespace) -> int:
    kind = args.task_command
    reason = getattr(args, "reason", None) or f"{kind} by {_user()} with `panda task {kind}`"
    task_id = args.task_id
    with jedi_client(args) as client:
        stub = client.tasks
        if kind == "kill":
            task = stub.KillTask(task_service_pb2.KillTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "finish":
            task = stub.FinishTask(task_service_pb2.FinishTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "retry":
            task = stub.RetryTask(task_service_pb2.RetryTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "pause":
            task = stub.PauseTask(task_service_pb2.PauseTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "resume":
            task = stub.ResumeTask(task_service_pb2.ResumeTaskRequest(task_id=task_id, reason=reason)).task
        elif kind == "reassign":
            task = stub.ReassignTask(
                task_service_pb2.ReassignTaskRequest(task_id=task_id, queues=args.queue, reason=reason)).task
        elif kind == "priority":
            task = stub.SetTaskPriority(
                task_service_pb2.SetTaskPriorityRequest(task_id=task_id, priority=args.priority)).task
        else:  # pragma: no cover - the parser allows only the above
            raise CliError(f"unknown task command {kind}", ExitCode.USAGE)
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


