"""Dataset commands, talking to JEDI: `panda dataset register|list|show`. Registering copies the
files onto a storage element (file:// only), into their scope's directory, first; the parsers are
in commands/datasets.py."""

from __future__ import annotations

import argparse
import os
import shutil
import uuid
import zlib
from pathlib import Path

import jwt

from panda.jedi.v1 import dataset_pb2, dataset_service_pb2
from panda.server.v1 import queue_service_pb2
from panda_runtime.client import JediClient
from panda_runtime.contracts import Violation
from panda_runtime.contracts import server as server_contract

from . import output, progress
from .clients import first_rows, jedi_client, server_client
from .errors import CliError, ExitCode
from .output import format_bytes, format_time, list_footer, or_dash, render_table
from .settings import CliSettings
from .specs import quote_filter_string
from .storage import element_directory, storage_element

__all__ = [
    "adler32_file", "caller_name", "cmd_dataset_list", "cmd_dataset_register", "cmd_dataset_show", "file_state_name",
    "kind_name", "queue_storage_element", "register_scope",
]


def file_state_name(status: dataset_pb2.TaskFileState.Status.ValueType) -> str:
    return output.enum_name(dataset_pb2.TaskFileState.Status, status, "STATUS_")



def adler32_file(path: Path) -> tuple[int, str]:
    value, size = zlib.adler32(b""), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1024 * 1024):
            value = zlib.adler32(chunk, value)
            size += len(chunk)
    return size, f"{value & 0xFFFFFFFF:08x}"


def queue_storage_element(args: argparse.Namespace, queue: str) -> str:
    """The id of the queue's storage element."""
    with server_client(args.server) as client:
        found = client.queues.GetQueue(queue_service_pb2.GetQueueRequest(queue_id=queue)).queue
    if not found.storage_element:
        raise CliError(f"queue {queue} has no storage element; give --se NAME", ExitCode.USAGE)
    return found.storage_element


def caller_name(client: JediClient) -> str:
    """Who the services take this caller for: the user name its token carries (read, not
    verified: JEDI checks the scope it leads to)."""
    token = client.config.tokens.token() if client.config.tokens is not None else ""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    return str(claims.get("preferred_username") or claims.get("sub") or "")


def register_scope(args: argparse.Namespace) -> str:
    """The scope the files go in: --scope, else the owner's (--owner, else the caller)."""
    if args.scope:
        return str(args.scope)
    owner = args.owner
    if not owner:
        with jedi_client(args) as client:
            owner = caller_name(client)
    if not owner:
        raise CliError("cannot tell who you are from your credentials: give --scope (e.g. user.NAME)", ExitCode.USAGE)
    return f"user.{owner}"


def _copy(source: Path, target: Path) -> None:
    """A new file at `target`, never replacing one: a link of a complete copy."""
    part = target.with_name(f".{target.name}.part-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copyfile(source, part)
        os.link(part, target)
    except FileExistsError:
        raise CliError(f"{target} appeared while it was being copied; register again", ExitCode.FAILED) from None
    finally:
        part.unlink(missing_ok=True)


def cmd_dataset_register(args: argparse.Namespace) -> int:
    sources = [Path(f) for f in args.files]
    for source in sources:
        if not source.is_file():
            raise CliError(f"{source}: not a file", ExitCode.USAGE)
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise CliError("two files have the same name; the names become the logical file names", ExitCode.USAGE)
    for source in sources:
        # Before anything is copied: JEDI would refuse the name, and a name such as `../x` is no
        # place in the storage element.
        try:
            server_contract.check_lfn(args.prefix + source.name, "lfn")
        except Violation as violation:
            raise CliError(f"{source}: {violation.description}", ExitCode.USAGE) from None
    element_id = args.se or queue_storage_element(args, args.queue or CliSettings().default_queue or "local")
    scope = register_scope(args)
    directory = element_directory(storage_element(args.server, element_id)) / scope
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    with progress.Steps(progress.on_terminal(args.json)) as steps:
        copying = steps.work("copying and checksumming", total=len(sources), unit="files")
        for source in sources:
            lfn = args.prefix + source.name
            size, checksum = adler32_file(source)
            target = directory / lfn
            if target.exists():
                # A file is never overwritten: the same contents are taken as they are.
                if adler32_file(target) != (size, checksum):
                    raise CliError(f"{scope}:{lfn} exists ({target}) with other contents; choose another --prefix",
                                   ExitCode.FAILED)
            else:
                _copy(source, target)
            files.append(dataset_pb2.DatasetFile(scope=scope, lfn=lfn, size_bytes=size, adler32=checksum,
                                                 events=args.events, storage_elements=[element_id]))
            copying.advance()
        request = dataset_service_pb2.RegisterDatasetRequest(
            dataset=dataset_pb2.Dataset(dataset_id=args.name, owner=args.owner or "", scope=scope), files=files,
            request_id=str(uuid.uuid4()))
        registering = steps.work(f"registering {len(files)} files with JEDI")
        with jedi_client(args) as client:
            dataset = client.datasets.RegisterDataset(request).dataset
        registering.finish()
    if args.json:
        output.print_json(dataset)
    else:
        print(f"dataset {dataset.dataset_id}: {dataset.file_count} file(s), {format_bytes(dataset.total_bytes)}, "
              f"{dataset.total_events} event(s), in scope {dataset.scope} on {element_id}")
    return 0


def kind_name(kind: dataset_pb2.Dataset.Kind.ValueType) -> str:
    return output.enum_name(dataset_pb2.Dataset.Kind, kind, "KIND_")


def cmd_dataset_list(args: argparse.Namespace) -> int:
    parts = []
    if args.name:
        parts.append(f"dataset_id = {quote_filter_string(args.name)}")
    if args.kind:
        parts.append(f"kind = {args.kind.upper()}")
    if args.owner:
        parts.append(f"owner = {quote_filter_string(args.owner)}")
    dataset_filter = " AND ".join(parts)
    request = dataset_service_pb2.ListDatasetsRequest(page_token=args.page_token or "", filter=dataset_filter)
    with jedi_client(args) as client:
        datasets, last = first_rows(client.datasets.ListDatasets, request, lambda page: page.datasets, args.limit)
    if args.json:
        output.print_list_json("datasets", datasets, next_page_token=last.next_page_token,
                               total_size=last.total_size)
        return 0
    rows = [[d.dataset_id, kind_name(d.kind), or_dash(d.owner), d.task_id or "-", d.file_count,
             format_bytes(d.total_bytes), d.total_events or "-", format_time(d.create_time)]
            for d in datasets]
    if rows:
        print(render_table(["NAME", "KIND", "OWNER", "TASK", "FILES", "SIZE", "EVENTS", "CREATED"], rows,
                           right=(3, 4, 5, 6)))
    else:
        print("no datasets" + (f" match {dataset_filter}" if dataset_filter else ""))
    print(list_footer(len(datasets), last.total_size, last.next_page_token))
    return 0


def cmd_dataset_show(args: argparse.Namespace) -> int:
    with jedi_client(args) as client:
        dataset = client.datasets.GetDataset(dataset_service_pb2.GetDatasetRequest(dataset_id=args.name)).dataset
        files: list[dataset_pb2.DatasetFile] = []
        if args.files:
            request = dataset_service_pb2.ListDatasetFilesRequest(dataset_id=args.name, task_id=args.task or 0)
            files = first_rows(client.datasets.ListDatasetFiles, request, lambda page: page.files, args.files)[0]
    if args.json:
        output.print_json({"dataset": output.message_to_dict(dataset),
                           "files": [output.message_to_dict(f) for f in files]})
        return 0
    fields: list[tuple[str, object]] = [
        ("dataset", dataset.dataset_id), ("kind", kind_name(dataset.kind)), ("owner", dataset.owner),
        ("scope", dataset.scope),
        ("task", dataset.task_id or "-"), ("files", dataset.file_count), ("size", format_bytes(dataset.total_bytes)),
        ("events", dataset.total_events or "-"), ("created", format_time(dataset.create_time)),
        ("updated", format_time(dataset.update_time)),
    ]
    print(output.render_fields(fields))
    if files:
        if args.task:
            rows = [[output.file_name(f.scope, f.lfn),
                     file_state_name(f.task_state.status) if f.HasField("task_state") else "-",
                     f"{f.task_state.attempts}/{f.task_state.max_attempts}" if f.HasField("task_state") else "-",
                     f.task_state.job_id or "-",
                     (f"{f.task_state.error_code}: {f.task_state.error_diag}" if f.task_state.error_code else "-")]
                    for f in files]
            table = render_table(["LFN", f"IN TASK {args.task}", "ATTEMPTS", "JOB", "LAST ERROR"], rows)
        else:
            rows = [[output.file_name(f.scope, f.lfn), format_bytes(f.size_bytes), f.adler32, f.events or "-",
                     ", ".join(f.storage_elements),
                     f.job_id or "-"] for f in files]
            table = render_table(["LFN", "SIZE", "ADLER32", "EVENTS", "REPLICAS", "JOB"], rows, right=(1, 3))
        print("\nfiles:\n" + "\n".join("  " + line for line in table.splitlines()))
        if len(files) < dataset.file_count:
            print(f"  ... {dataset.file_count - len(files)} more (--files N shows more)")
    return 0
