"""Rendering for people (aligned tables, short names, local times with their zone) and for
programs (JSON, one shape for every list)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from panda.server.v1 import job_pb2, queue_pb2

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

__all__ = [
    "EMPTY", "FINAL_JOB_STATES", "TIME_FORMAT", "EnumValue", "MessageT", "enum_name", "file_kind_name", "file_name",
    "file_status_name", "format_bytes", "format_datetime", "format_duration", "format_mb", "format_time", "id_ranges",
    "is_set", "job_state_choices", "job_state_name", "list_footer", "message_to_dict", "or_dash", "parse_enum",
    "print_json", "print_json_line", "print_list_json", "queue_status_choices", "queue_status_name", "render_fields",
    "render_table", "show", "truncate", "writing_past_a_closed_reader",
]

# An enum's value type (mypy-protobuf gives each enum its own).
EnumValue = TypeVar("EnumValue", bound=int)
MessageT = TypeVar("MessageT", bound=Message)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
EMPTY = "-"

FINAL_JOB_STATES = frozenset(
    {
        job_pb2.Job.STATE_FINISHED,
        job_pb2.Job.STATE_FAILED,
        job_pb2.Job.STATE_CANCELLED,
        job_pb2.Job.STATE_CLOSED,
    }
)


# --- names -------------------------------------------------------------------------------


def _short(full_name: str, prefix: str) -> str:
    return full_name.removeprefix(prefix).lower()


def enum_name(enum_type: _EnumTypeWrapper[EnumValue], value: EnumValue, prefix: str) -> str:
    """`running` for STATE_RUNNING (prefix "STATE_"); a number this program does not know (a
    newer service's) stays visible as a number: `state-42`."""
    try:
        return _short(enum_type.Name(value), prefix)
    except ValueError:
        return f"{prefix.rstrip('_').lower()}-{value}"


def job_state_name(state: job_pb2.Job.State.ValueType) -> str:
    return enum_name(job_pb2.Job.State, state, "STATE_")


def queue_status_name(status: queue_pb2.Queue.Status.ValueType) -> str:
    return enum_name(queue_pb2.Queue.Status, status, "STATUS_")


def file_kind_name(kind: job_pb2.JobFile.Kind.ValueType) -> str:
    return enum_name(job_pb2.JobFile.Kind, kind, "KIND_")


def file_status_name(status: job_pb2.JobFile.Status.ValueType) -> str:
    return enum_name(job_pb2.JobFile.Status, status, "STATUS_")


def parse_enum(value: str, enum_type: _EnumTypeWrapper[EnumValue], prefix: str, what: str) -> EnumValue:
    """Accept `running`, `RUNNING` or `STATE_RUNNING`; the error lists the valid choices."""
    name = value.strip().upper()
    if not name.startswith(prefix):
        name = prefix + name
    names: list[str] = list(enum_type.keys())
    if name == prefix + "UNSPECIFIED" or name not in names:
        choices = ", ".join(_short(n, prefix) for n in names if not n.endswith("_UNSPECIFIED"))
        raise ValueError(f"unknown {what} {value!r} (choose from {choices})")
    return enum_type.Value(name)


def job_state_choices() -> list[str]:
    names: list[str] = list(job_pb2.Job.State.keys())
    return [_short(n, "STATE_") for n in names if n != "STATE_UNSPECIFIED"]


def queue_status_choices() -> list[str]:
    names: list[str] = list(queue_pb2.Queue.Status.keys())
    return [_short(n, "STATUS_") for n in names if n != "STATUS_UNSPECIFIED"]


# --- values ------------------------------------------------------------------------------


def is_set(ts: timestamp_pb2.Timestamp) -> bool:
    return ts.seconds != 0 or ts.nanos != 0


def format_time(ts: timestamp_pb2.Timestamp) -> str:
    """A time as every table and field shows it (see format_datetime); an unset timestamp
    (proto default) shows as `-`, not 1970."""
    if not is_set(ts):
        return EMPTY
    return format_datetime(ts.ToDatetime(tzinfo=UTC))


def format_datetime(value: datetime) -> str:
    """Local wall-clock time followed by its zone, `2025-03-14 09:26:53 CET` (TZ chooses the
    zone; TZ=UTC shows UTC): a time never leaves its zone unsaid. A zone without an abbreviation
    shows its offset (`+0530`)."""
    local = value.astimezone()
    return f"{local.strftime(TIME_FORMAT)} {local.strftime('%Z') or local.strftime('%z')}"


def format_duration(seconds: float) -> str:
    """Compact duration: 90 -> 1m30s, 86400 -> 1d. Zero means "not stated" in the contracts."""
    total = int(seconds)
    if total <= 0:
        return EMPTY
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            count, total = divmod(total, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_bytes(size: int) -> str:
    if size <= 0:
        return EMPTY
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def format_mb(megabytes: int) -> str:
    return f"{megabytes} MB" if megabytes > 0 else EMPTY


def file_name(scope: str, lfn: str) -> str:
    """A file as it is known, `scope:lfn` (PanDA's and Rucio's way of writing it)."""
    return f"{scope}:{lfn}" if scope else lfn


def id_ranges(ids: Iterable[int], *, most: int = 10, more: str = "") -> str:
    """Ids in their order, runs of consecutive ones as ranges: `101-5100, 5102`; past `most`
    ranges, `... and N more ranges` followed by `more` (where to find them all)."""
    runs: list[list[int]] = []
    for value in ids:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    parts = [str(first) if first == last else f"{first}-{last}" for first, last in runs[:most]]
    if len(runs) > most:
        parts.append(f"... and {len(runs) - most} more ranges{more}")
    return ", ".join(parts)


def or_dash(value: object) -> str:
    text = "" if value is None else str(value)
    return text if text else EMPTY


def truncate(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: max(width - 3, 0)] + "..."


# --- tables ------------------------------------------------------------------------------


def render_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    right: Iterable[int] = (),
) -> str:
    """Columns padded to their widest cell, two spaces apart; `right` are right-aligned
    (numbers). The last column is not padded, so lines carry no trailing blanks."""
    right_aligned = set(right)
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            if i in right_aligned:
                parts.append(cell.rjust(widths[i]))
            elif i == len(row) - 1:
                parts.append(cell)
            else:
                parts.append(cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def render_fields(fields: Sequence[tuple[str, object]]) -> str:
    """`key:  value` lines with the values aligned, for `show` commands."""
    width = max((len(k) for k, _ in fields), default=0) + 1
    return "\n".join(f"{(k + ':').ljust(width)}  {or_dash(v)}" for k, v in fields)


# --- JSON --------------------------------------------------------------------------------


def message_to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: Message | Mapping[str, Any] | Sequence[Any], *, out: TextIO | None = None) -> None:
    data = message_to_dict(value) if isinstance(value, Message) else value
    print(json.dumps(data, indent=2, sort_keys=False), file=out or sys.stdout)


def show(message: MessageT, render: Callable[[MessageT], str], *, as_json: bool) -> int:
    """Print `message` as JSON (--json), else as `render` puts it for people; returns 0, the
    command's exit code."""
    if as_json:
        print_json(message)
    else:
        print(render(message))
    return 0


def print_list_json(
    plural: str, items: Iterable[Message], *, next_page_token: str = "", total_size: int | None = None
) -> None:
    """What every list command prints with --json, in one shape: `{"<plural>": [...]}`, the
    list there even when empty, with `next_page_token` when there is a next page and
    `total_size` when the service counts what matched."""
    data: dict[str, Any] = {plural: [message_to_dict(item) for item in items]}
    if next_page_token:
        data["next_page_token"] = next_page_token
    if total_size is not None:
        data["total_size"] = total_size
    print_json(data)


def print_json_line(value: Message | Mapping[str, Any], *, out: TextIO | None = None) -> None:
    """One compact object per line (JSON Lines), for streams such as `job watch --json`."""
    data = message_to_dict(value) if isinstance(value, Message) else value
    stream = out or sys.stdout
    print(json.dumps(data, separators=(",", ":")), file=stream, flush=True)


def list_footer(shown: int, total: int, next_page_token: str) -> str:
    footer = f"showing {shown} of {total}"
    if next_page_token:
        # The token is bound to the filter: it works only with the same flags.
        footer += f"; next page: same command with --page-token {next_page_token}"
    return footer


def discard_output(stream: TextIO) -> None:
    """From now on, what is written to `stream` goes to /dev/null: its reader went away."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


class _PastClosedReader(io.TextIOBase):
    """A text stream whose reader may go away (the `tee` or `head` it is piped into ended, or
    the terminal closed): from then on what is written goes to /dev/null instead of raising
    BrokenPipeError in a program that must go on, to stop its children."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (BrokenPipeError, ConnectionResetError):
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ConnectionResetError):
            self._discard()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def _discard(self) -> None:
        discard_output(self._stream)
        with contextlib.suppress(OSError):
            self._stream.flush()  # what was buffered goes to /dev/null now


@contextlib.contextmanager
def writing_past_a_closed_reader() -> Iterator[None]:
    """stdout and stderr that never raise because their reader went away (see _PastClosedReader)."""
    saved = sys.stdout, sys.stderr
    sys.stdout = _PastClosedReader(saved[0])
    sys.stderr = _PastClosedReader(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved

