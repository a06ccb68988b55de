"""Storage element commands: se add / set / list / show (their parsers: commands/storage.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import unquote, urlsplit

from google.protobuf import field_mask_pb2

from panda.server.v1 import storage_element_pb2, storage_service_pb2

from . import output
from .clients import all_pages, server_client
from .errors import CliError, ExitCode
from .output import format_time, or_dash, render_table

__all__ = [
    "cmd_se_add", "cmd_se_list", "cmd_se_set", "cmd_se_show", "element_directory", "render_element", "storage_element",
]


def render_element(element: storage_element_pb2.StorageElement) -> str:
    fields: list[tuple[str, object]] = [
        ("storage element", element.storage_element_id),
        ("url", element.url),
        ("queues", ", ".join(element.queues) or "every queue"),
        ("vos", ", ".join(element.vos) or "every VO"),
        ("description", element.description),
        ("created", format_time(element.create_time)),
        ("updated", format_time(element.update_time)),
    ]
    return output.render_fields(fields)


def storage_element(server: str, element_id: str) -> storage_element_pb2.StorageElement:
    """The configured element, from the server."""
    with server_client(server) as client:
        request = storage_service_pb2.GetStorageElementRequest(storage_element_id=element_id)
        return client.storage.GetStorageElement(request).storage_element


def element_directory(element: storage_element_pb2.StorageElement) -> Path:
    """Where a file:// element keeps its files on this machine."""
    parts = urlsplit(element.url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise CliError(f"storage element {element.storage_element_id} ({element.url}): only file:// storage "
                       "elements can be written by this command", ExitCode.USAGE)
    return Path(unquote(parts.path))


def cmd_se_add(args: argparse.Namespace) -> int:
    element = storage_element_pb2.StorageElement(
        storage_element_id=args.name, url=args.url, queues=args.queue or [], vos=args.vo or [],
        description=args.description or "",
    )
    with server_client(args.server) as client:
        created = client.storage.CreateStorageElement(
            storage_service_pb2.CreateStorageElementRequest(storage_element=element)).storage_element
    return output.show(created, lambda e: f"created storage element {e.storage_element_id} ({e.url})",
                       as_json=args.json)


def cmd_se_set(args: argparse.Namespace) -> int:
    element = storage_element_pb2.StorageElement(storage_element_id=args.name)
    paths: list[str] = []
    if args.url is not None:
        element.url, paths = args.url, [*paths, "url"]
    if args.queue or args.every_queue:
        element.queues.extend(args.queue or [])
        paths.append("queues")
    if args.vo or args.every_vo:
        element.vos.extend(args.vo or [])
        paths.append("vos")
    if args.description is not None:
        element.description, paths = args.description, [*paths, "description"]
    if not paths:
        raise CliError("nothing to change: give --url, --queue/--every-queue, --vo/--every-vo or --description",
                       ExitCode.USAGE)
    request = storage_service_pb2.UpdateStorageElementRequest(
        storage_element=element, update_mask=field_mask_pb2.FieldMask(paths=paths))
    with server_client(args.server) as client:
        updated = client.storage.UpdateStorageElement(request).storage_element
    return output.show(updated, render_element, as_json=args.json)


def cmd_se_list(args: argparse.Namespace) -> int:
    with server_client(args.server) as client:
        request = storage_service_pb2.ListStorageElementsRequest(page_size=1000)
        elements = [e for page in all_pages(client.storage.ListStorageElements, request)
                    for e in page.storage_elements]
    if args.json:
        output.print_list_json("storage_elements", elements)
    elif elements:
        rows = [[e.storage_element_id, e.url, ", ".join(e.queues) or "*", ", ".join(e.vos) or "*",
                 or_dash(e.description)] for e in elements]
        print(render_table(["ID", "URL", "QUEUES", "VOS", "DESCRIPTION"], rows))
    else:
        print("no storage elements (an admin adds one with: panda se add NAME file:///PATH)")
    return 0


def cmd_se_show(args: argparse.Namespace) -> int:
    return output.show(storage_element(args.server, args.name), render_element, as_json=args.json)
