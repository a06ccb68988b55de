"""Job commands: submit, jobs (list), job show / kill / reassign / watch (their parsers:
commands/jobs.py)."""

from __future__ import annotations

import argparse
import getpass
import re
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from panda.server.v1 import job_pb2, job_service_pb2
from panda_runtime.client import ServerClient, ServiceError
from panda_runtime.contracts import error_codes
from panda_runtime.contracts.server import DEFAULT_MAX_SUBMIT_JOBS

from . import output, progress
from .clients import first_rows, server_client
from .errors import CliError, ExitCode, exit_code_of
from .output import FINAL_JOB_STATES, format_time, job_state_name, list_footer, or_dash, render_table
from .settings import CliSettings
from .specs import SpecError, build_job_filter, job_from_flags, jobs_from_yaml, parse_since

__all__ = [
    "COMMAND_WIDTH", "WATCH_RECONNECT_GIVE_UP_SECONDS", "WATCH_RETRY_SECONDS", "Batch", "Outcome", "action_lines",
    "cmd_kill", "cmd_list", "cmd_reassign", "cmd_show", "cmd_submit", "cmd_watch", "command_text", "event_from_job",
    "events_so_far", "format_event", "render_files_table", "render_history_table", "render_job", "render_jobs_table",
    "watch_exit_code",
]

# gRPC status names by number, for the per-job google.rpc.Status of batch actions.
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}

# Watch: give up when the stream cannot be re-established for this long.
WATCH_RECONNECT_GIVE_UP_SECONDS = 60.0
# Pause between attempts to re-open the watch stream.
WATCH_RETRY_SECONDS = 1.0
# Codes after which re-opening the watch stream is pointless.
_WATCH_FATAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)

COMMAND_WIDTH = 48
# A job of a SubmitJobs call, as the service names it in its errors.
_BATCH_INDEX = re.compile(r"\bjobs\[(\d+)\]")


# --- submit ------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    queue = args.queue or CliSettings().default_queue or None
    command = list(args.payload or [])
    if command and command[0] == "--":
        command = command[1:]
    if args.file:
        if command:
            raise CliError("give either -f FILE or a command after `--`, not both", ExitCode.USAGE)
        if args.input or args.output or args.env:
            raise CliError("--input, --output and --env describe one job; with -f put them in the file", ExitCode.USAGE)
        defaults = {
            "queue": queue,
            "cores": args.cores,
            "memory": args.memory,
            "walltime": args.walltime,
            "priority": args.priority,
            "max_attempts": args.max_attempts,
            "label": args.label,
        }
        try:
            jobs = jobs_from_yaml(_read_source(args.file), source=args.file, defaults=defaults)
        except SpecError as exc:
            raise CliError(str(exc)) from None
    else:
        if args.batch_size:
            raise CliError("--batch-size splits a file of jobs: give it with -f FILE", ExitCode.USAGE)
        try:
            jobs = [
                job_from_flags(
                    queue=queue,
                    command=command,
                    inputs=args.input or (),
                    outputs=args.output or (),
                    cores=args.cores,
                    memory=args.memory,
                    walltime=args.walltime,
                    priority=args.priority,
                    max_attempts=args.max_attempts,
                    label=args.label,
                    env=args.env or (),
                )
            ]
        except SpecError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None

    if args.file:
        return _submit_in_batches(args, jobs)
    # One request id for the call and its retries: the server then creates the job once.
    request = job_service_pb2.SubmitJobsRequest(jobs=jobs, request_id=str(uuid.uuid4()))
    with server_client(args.server) as client:
        response = client.jobs.SubmitJobs(request)
    job_id = response.jobs[0].job_id if response.jobs else None
    if args.json:
        output.print_json({"job_id": job_id})
    else:
        print(job_id or "")
    return ExitCode.OK


@dataclass
class Batch:
    """Jobs `first`..`first + len(jobs) - 1` of a file (counted from 1), sent in one atomic call
    under their own request id, so that gRPC's retries of the call never submit them twice."""

    number: int
    first: int
    jobs: list[job_pb2.Job]
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    job_ids: list[int] = field(default_factory=list)
    # Why it was not submitted: the service's refusal, or an earlier batch's.
    error: str = ""

    @property
    def last(self) -> int:
        return self.first + len(self.jobs) - 1

    @property
    def status(self) -> str:
        return "submitted" if self.job_ids else "failed" if self.error else "not tried"

    def in_file(self, message: str) -> str:
        """The service's `message` with its jobs named by their place in the file, not in the
        call (`jobs[3]`, counted from 0 as the service counts)."""
        return _BATCH_INDEX.sub(lambda found: f"jobs[{int(found[1]) + self.first - 1}]", message)

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"batch": self.number, "first_job": self.first, "last_job": self.last,
                                   "request_id": self.request_id, "status": self.status}
        if self.error:
            data["error"] = self.error
        return data


def _submit_in_batches(args: argparse.Namespace, jobs: list[job_pb2.Job]) -> int:
    """The file's jobs in calls of at most --batch-size (the server refuses more in one call),
    in order, stopping at the first refusal; then what was submitted and what was not."""
    size = args.batch_size or DEFAULT_MAX_SUBMIT_JOBS
    batches = [Batch(number, start + 1, jobs[start:start + size])
               for number, start in enumerate(range(0, len(jobs), size), start=1)]
    failure: ServiceError | None = None
    failed_with = ExitCode.OK
    sending: Batch | None = None
    with server_client(args.server) as client, progress.Steps(progress.on_terminal(args.json)) as steps:
        submitting = steps.work("submitting", total=len(jobs), unit="jobs")
        try:
            for batch in batches:
                sending = batch
                request = job_service_pb2.SubmitJobsRequest(jobs=batch.jobs, request_id=batch.request_id)
                try:
                    # Big batches take the server longer to store; stretch the deadline with the size.
                    timeout = client.config.deadline + len(batch.jobs) / 200
                    response = client.jobs.SubmitJobs(request, timeout=timeout)
                except grpc.RpcError as error:
                    failure = client.translate(error)
                    batch.error, failed_with = batch.in_file(failure.message), exit_code_of(failure)
                    break
                batch.job_ids = [job.job_id for job in response.jobs]
                sending = None
                submitting.advance(len(batch.jobs))
        except KeyboardInterrupt:
            failed_with = ExitCode.INTERRUPTED
            if sending is not None and not sending.job_ids:
                # The server may have stored the call being sent: only its request id can tell.
                sending.error = f"interrupted while sent; it may have been submitted (request id {sending.request_id})"
    submitted = [job_id for batch in batches for job_id in batch.job_ids]
    if args.json:
        output.print_json({"job_ids": submitted, "batches": [batch.to_dict() for batch in batches]})
    elif len(batches) > 1:
        print("\n".join(_batch_line(batch, len(batches)) for batch in batches))
    if failed_with == ExitCode.OK:
        if not args.json:
            print(f"submitted {len(submitted)} job{'s' if len(submitted) != 1 else ''}: {_ids_text(submitted)}")
        return ExitCode.OK
    if failure is not None and len(batches) == 1:
        raise failure
    if not args.json and len(batches) > 1:
        print(f"submitted {len(submitted)} of {len(jobs)} jobs" + (f": {_ids_text(submitted)}" if submitted else ""))
    reason = next((batch.error for batch in batches if batch.error), "interrupted")
    raise CliError(f"{len(jobs) - len(submitted)} of {len(jobs)} jobs not submitted: {reason}", failed_with)


def _batch_line(batch: Batch, count: int) -> str:
    jobs = f"job {batch.first}" if len(batch.jobs) == 1 else f"jobs {batch.first}-{batch.last}"
    head = f"batch {batch.number} of {count} ({jobs} of the file)"
    if batch.job_ids:
        return f"{head}: submitted as {_ids_text(batch.job_ids)}"
    if batch.error:
        return f"{head}: not submitted: {batch.error}"
    return f"{head}: not submitted (not tried)"


def _ids_text(ids: Sequence[int]) -> str:
    return output.id_ranges(ids, more=" (--json lists every id)")


def _read_source(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not a UTF-8 text file") from None


# --- jobs (list) -------------------------------------------------------------------------


def _filter_from_flags(args: argparse.Namespace) -> str:
    """The filter of `panda jobs` and `panda job count`: --filter's text, AND the flags' own
    comparisons (OR binds tighter than AND, so whatever --filter says stays one term)."""
    try:
        since = parse_since(args.since) if args.since else None
        flags = build_job_filter(state=args.state, queue=args.queue, task_id=args.task, owner=args.owner, since=since)
    except SpecError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    return " AND ".join(term for term in ((args.filter or "").strip(), flags) if term)


def cmd_list(args: argparse.Namespace) -> int:
    job_filter = _filter_from_flags(args)
    request = job_service_pb2.ListJobsRequest(page_token=args.page_token or "", filter=job_filter,
                                              order_by=args.order_by or "")
    with server_client(args.server) as client:
        jobs, last = first_rows(client.jobs.ListJobs, request, lambda page: page.jobs, args.limit)
    if args.json:
        output.print_list_json("jobs", jobs, next_page_token=last.next_page_token, total_size=last.total_size)
        return 0
    if jobs:
        print(render_jobs_table(jobs))
    else:
        print("no jobs" + (f" match {job_filter}" if job_filter else ""))
    print(list_footer(len(jobs), last.total_size, last.next_page_token))
    return 0


# --- job count ---------------------------------------------------------------------------


def cmd_count(args: argparse.Namespace) -> int:
    job_filter = _filter_from_flags(args)
    group_by = [name.strip() for name in (args.by or "").split(",") if name.strip()]
    request = job_service_pb2.CountJobsRequest(filter=job_filter, group_by=group_by, page_size=args.limit)
    with server_client(args.server) as client:
        counted = client.jobs.CountJobs(request)
    if args.json:
        output.print_json({"group_by": group_by, **output.message_to_dict(counted)})
        return 0
    print(render_counts(group_by, counted))
    return 0


def _group_value(field: str, value: str) -> str:
    """A group's value for people: a state's short name, an error code with its name."""
    if field == "state":
        return value.removeprefix("STATE_").lower()
    if field == "error_code" and value.isdigit():
        known = error_codes.by_code(int(value))
        return f"{value} {known.name}" if known else value
    return value or "-"


def render_counts(group_by: Sequence[str], counted: job_service_pb2.CountJobsResponse) -> str:
    lines = []
    if group_by:
        total = counted.total_size or 1
        rows = [[*(_group_value(f, v) for f, v in zip(group_by, group.values, strict=False)), group.count,
                 f"{100 * group.count / total:.1f}%"] for group in counted.groups]
        if rows:
            lines.append(render_table([*(f.upper() for f in group_by), "JOBS", "SHARE"], rows,
                                      right=(len(group_by), len(group_by) + 1)))
    footer = f"{counted.total_size} jobs"
    if counted.left_off_count:
        footer += f"; {counted.left_off_count} in groups not shown (--limit to see more)"
    lines.append(footer)
    return "\n".join(lines)


def command_text(job: job_pb2.Job) -> str:
    return shlex.join(job.command)


def render_jobs_table(jobs: Iterable[job_pb2.Job]) -> str:
    rows = []
    for job in jobs:
        rows.append(
            [
                job.job_id,
                job_state_name(job.state),
                job.queue,
                f"{job.attempt}/{job.max_attempts}" if job.max_attempts else str(job.attempt),
                job.priority,
                job.error_code or "-",
                output.truncate(job.label or command_text(job), COMMAND_WIDTH) or "-",
                format_time(job.update_time),
            ]
        )
    headers = ["ID", "STATE", "QUEUE", "ATTEMPT", "PRIO", "ERROR", "LABEL/COMMAND", "UPDATED"]
    return render_table(headers, rows, right=(0, 4, 5))


# --- job show ----------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    with server_client(args.server) as client:
        job = client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=args.job_id)).job
    return output.show(job, render_job, as_json=args.json)


def render_job(job: job_pb2.Job) -> str:
    resources = job.resources
    resource_text = ", ".join(
        [
            f"{resources.cores or '-'} core{'s' if resources.cores != 1 else ''}",
            f"memory {output.format_mb(resources.memory_mb)}",
            f"walltime {output.format_duration(resources.walltime_seconds)}",
        ]
        + ([f"disk {output.format_mb(resources.disk_mb)}"] if resources.disk_mb else [])
    )
    where = job.pilot_id + (f" on {job.node}" if job.node else "") if job.pilot_id else job.node
    fields: list[tuple[str, object]] = [
        ("job", f"{job.job_id}" + (f"  (task {job.task_id})" if job.task_id else "")),
        ("state", job_state_name(job.state)),
        ("queue", job.queue),
        ("attempt", f"{job.attempt}/{job.max_attempts}" if job.max_attempts else job.attempt),
        ("priority", job.priority),
        ("owner", job.owner),
        ("label", job.label),
        ("command", command_text(job)),
        ("environment", " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(job.environment.items()))),
        ("pilot", where),
        *([("harvester worker", job.worker_id)] if job.worker_id else []),
        ("resources", resource_text),
        ("created", format_time(job.create_time)),
        ("started", format_time(job.start_time)),
        ("ended", format_time(job.end_time)),
        ("updated", format_time(job.update_time)),
        ("heartbeat", format_time(job.heartbeat_time)),
    ]
    if job.exit_code or job.end_time.seconds:
        fields.append(("exit code", job.exit_code))
    if job.max_rss_mb or job.cpu_seconds:
        fields.append(("usage", f"max RSS {job.max_rss_mb} MB, CPU {job.cpu_seconds:.1f} s"))
    if job.error_code or job.error_diag:
        fields.append(("error", f"{job.error_code or '-'}: {job.error_diag or '(no diagnosis)'}"))
    sections = [output.render_fields(fields)]

    if job.files:
        sections.append("files:\n" + _indent(render_files_table(job.files)))
    if job.history:
        sections.append("history:\n" + _indent(render_history_table(job.history)))
    if job.log_tail:
        sections.append("log tail:\n" + _indent(job.log_tail.rstrip("\n")))
    return "\n\n".join(sections)


def render_files_table(files: Iterable[job_pb2.JobFile]) -> str:
    rows = [
        [
            output.file_kind_name(f.kind),
            output.file_name(f.scope, f.lfn),
            output.format_bytes(f.size_bytes),
            or_dash(f.adler32),
            output.file_status_name(f.status),
            or_dash(f.storage_element),
        ]
        for f in files
    ]
    return render_table(["KIND", "LFN", "SIZE", "ADLER32", "STATUS", "SE"], rows, right=(2,))


def render_history_table(history: Iterable[job_pb2.JobEvent]) -> str:
    rows = [[format_time(e.time), job_state_name(e.state), e.attempt, _event_reason(e) or "-"] for e in history]
    return render_table(["TIME", "STATE", "ATTEMPT", "REASON"], rows, right=(2,))


def _event_reason(event: job_pb2.JobEvent) -> str:
    reason = event.reason
    if event.error_code:
        reason = f"[error {event.error_code}] {reason}".rstrip()
    return reason


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


# --- kill / reassign ---------------------------------------------------------------------


def cmd_kill(args: argparse.Namespace) -> int:
    reason = args.reason or f"killed by {_user()} with `panda job kill`"
    request = job_service_pb2.KillJobsRequest(job_ids=args.job_ids, reason=reason)
    with server_client(args.server) as client:
        response = client.jobs.KillJobs(request)
    return _report_actions(args, response.results, _kill_outcome)


def cmd_reassign(args: argparse.Namespace) -> int:
    request = job_service_pb2.ReassignJobsRequest(job_ids=args.job_ids, queue=args.queue)
    with server_client(args.server) as client:
        response = client.jobs.ReassignJobs(request)
    return _report_actions(args, response.results, lambda r: f"reassigned to {args.queue} ({job_state_name(r.state)})")


def _kill_outcome(result: job_service_pb2.JobActionResult) -> str:
    # A queued job is cancelled at once; a running one only gets told to stop.
    if result.state in FINAL_JOB_STATES:
        return job_state_name(result.state)
    return f"kill sent ({job_state_name(result.state)})"


Outcome = Callable[[job_service_pb2.JobActionResult], str]


def action_lines(results: Sequence[job_service_pb2.JobActionResult], outcome: Outcome) -> tuple[list[str], bool]:
    """One line per job and whether any was refused."""
    lines = []
    refused = False
    width = max((len(str(r.job_id)) for r in results), default=0)
    for result in results:
        if result.status.code == 0:
            text = outcome(result)
        else:
            refused = True
            code = _CODE_NAMES.get(result.status.code, str(result.status.code))
            text = f"refused: {code}: {result.status.message}"
        lines.append(f"{str(result.job_id).rjust(width)}  {text}")
    return lines, refused


def _report_actions(
    args: argparse.Namespace, results: Sequence[job_service_pb2.JobActionResult], outcome: Outcome
) -> int:
    lines, refused = action_lines(results, outcome)
    if args.json:
        output.print_json({"results": [output.message_to_dict(r) for r in results]})
    else:
        print("\n".join(lines))
    return ExitCode.FAILED if refused else ExitCode.OK


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment: the reason is only informative
        return "unknown"


# --- watch -------------------------------------------------------------------------------


def event_from_job(job: job_pb2.Job) -> job_pb2.JobEvent:
    """The job's current state as an event, so the first line looks like the rest."""
    last = job.history[-1] if job.history else None
    if last is not None and last.state == job.state and last.attempt == job.attempt:
        return last
    event = job_pb2.JobEvent(
        job_id=job.job_id,
        attempt=job.attempt,
        state=job.state,
        error_code=job.error_code,
        reason=job.error_diag,
        queue=job.queue,
        task_id=job.task_id,
    )
    event.time.CopyFrom(job.update_time)
    return event


def format_event(event: job_pb2.JobEvent) -> str:
    return "  ".join(
        [
            format_time(event.time),
            job_state_name(event.state).ljust(12),
            f"attempt {event.attempt}",
            _event_reason(event),
        ]
    ).rstrip()


def events_so_far(job: job_pb2.Job) -> list[job_pb2.JobEvent]:
    """The states the job went through (its history), ending with the one it is in now."""
    events = list(job.history)
    if not events or (events[-1].state, events[-1].attempt) != (job.state, job.attempt):
        events.append(event_from_job(job))
    return events


def watch_exit_code(state: int) -> int:
    return ExitCode.OK if state == job_pb2.Job.STATE_FINISHED else ExitCode.WORK_FAILED


def _retried(client: ServerClient, event: job_pb2.JobEvent) -> bool:
    """Whether a failed attempt was followed by another one. The server records a retry
    (failed, then activated as attempt N+1) together with the failure, so GetJob already
    shows the new attempt; for the job's last attempt, failed is where it stays."""
    if event.state != job_pb2.Job.STATE_FAILED:
        return False
    try:
        job = client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=event.job_id)).job
    except grpc.RpcError:
        return False
    return job.attempt > event.attempt


def cmd_watch(args: argparse.Namespace) -> int:
    job_id: int = args.job_id
    # On a terminal, a line under the events says what the job is doing now (the events are the
    # plain output's progress already).
    with server_client(args.server) as client, progress.LiveLine(
        progress.on_terminal(args.json), counted=False, plain=False
    ) as now:

        def emit(event: job_pb2.JobEvent) -> None:
            if args.json:
                output.print_json_line(event)
            else:
                print(format_event(event), flush=True)
            now.show(f"job {job_id}: {job_state_name(event.state)} (attempt {event.attempt})")

        return _follow(client, job_id, emit)


def _follow(client: ServerClient, job_id: int, emit: Callable[[job_pb2.JobEvent], None]) -> int:
    """Emits the states the job went through, then each new one until it ends; its exit code."""
    job = client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id)).job
    for event in events_so_far(job):
        emit(event)
    if job.state in FINAL_JOB_STATES:
        return watch_exit_code(job.state)

    # Resume right after the newest event GetJob showed, so nothing between the two calls
    # is lost or printed twice. A server that leaves history cursors empty gets from_now.
    cursor = max((e.cursor for e in job.history), default=0)
    last_state = (job.state, job.attempt)
    lost_since: float | None = None
    while True:
        request = job_service_pb2.WatchJobsRequest(job_ids=[job_id], after_cursor=cursor, from_now=cursor == 0)
        opened = time.monotonic()
        try:
            for response in client.jobs.WatchJobs(request):
                lost_since = None
                event = response.event
                if event.cursor:
                    if event.cursor <= cursor:
                        continue  # replayed after a resume: already printed
                    cursor = event.cursor
                if event.job_id != job_id:
                    continue
                emit(event)
                last_state = (event.state, event.attempt)
                if event.state in FINAL_JOB_STATES and not _retried(client, event):
                    return watch_exit_code(event.state)
            error: grpc.RpcError | None = None  # the server ended the stream: open it again
        except grpc.RpcError as exc:
            error = exc

        if error is not None:
            code = error.code()
            if code == grpc.StatusCode.OUT_OF_RANGE:
                cursor = 0  # our cursor fell out of the server's event log: catch up below
            elif code in _WATCH_FATAL_CODES:
                raise client.translate(error)
        now = time.monotonic()
        if now - opened > 5.0:
            lost_since = None  # a quiet stream that lived a while is a fresh loss, not a retry
        if lost_since is None:
            lost_since = now
            reason = error.code().name if error is not None else "stream ended"
            print(f"panda: watch stream interrupted ({reason}); resuming", file=sys.stderr)
        elif now - lost_since > WATCH_RECONNECT_GIVE_UP_SECONDS:
            raise client.unreachable()
        time.sleep(WATCH_RETRY_SECONDS)

        if cursor == 0:
            # Without a cursor the gap is not replayed: catch up through GetJob instead.
            try:
                job = client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job_id)).job
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    continue  # still away: keep trying until the give-up time
                raise
            if (job.state, job.attempt) != last_state:
                emit(event_from_job(job))
                last_state = (job.state, job.attempt)
            if job.state in FINAL_JOB_STATES:
                return watch_exit_code(job.state)
            cursor = max((e.cursor for e in job.history), default=0)
