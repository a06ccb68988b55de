"""Storage elements: the configured places where jobs read and write, what a URL of one must be,
and who may use each. A job names an element by its id, never by a URL: the element's URL is
the admin's, and it is all the pilot stages through. No I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, unquote, urlsplit

from panda_runtime.contracts.server import QUEUE_ID, STORAGE_ELEMENT_ID
from panda_runtime.service.errors import InvalidArgument, PermissionDenied
from server_svc.domain.job_specs import JobSpec

__all__ = [
    "MAX_URL_LENGTH", "STORAGE_ELEMENT_ID", "StorageElement", "check_file_storage", "check_file_storage_ids",
    "check_no_overlap", "check_queue_storage", "check_storage_element_id", "check_url", "check_users",
    "reassign_problem", "root_of",
]

MAX_URL_LENGTH = 1024
# Who may use an element: queue ids, and VOs (the first part of a WLCG group path).
_VO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_MAX_USERS = 1000


@dataclass(slots=True)
class StorageElement:
    storage_element_id: str
    url: str  # file:///absolute/path, in its canonical form (see check_url)
    queues: list[str]  # queues whose jobs may use it; empty: every queue
    vos: list[str]  # VOs whose jobs may read and write it; empty: every VO
    description: str
    create_time: datetime
    update_time: datetime

    def serves_queue(self, queue: str) -> bool:
        return not self.queues or queue in self.queues

    def serves_vo(self, vo: str) -> bool:
        return not self.vos or vo in self.vos


def check_storage_element_id(value: str, field: str) -> str:
    """An element's id, or INVALID_ARGUMENT naming `field`; a URL is refused with a hint, since a
    job names an element only by its configured id."""
    if STORAGE_ELEMENT_ID.fullmatch(value):
        return value
    if "://" in value or value.startswith("/"):
        raise InvalidArgument(
            f"{field}: storage elements are named by their configured id (see `panda se list`), not by a URL",
            field=field,
        )
    raise InvalidArgument(
        f"{field}: {value[:80]!r} is not a storage element id: 1-64 letters, digits, '_', '-' or '.'", field=field
    )


def check_url(url: str, field: str) -> str:
    """The URL in its canonical form (`file://` and the percent-encoded absolute path, no trailing
    '/'), or INVALID_ARGUMENT naming `field`: only file:// URLs of an absolute path without '.'
    or '..' components, empty components, control characters, a query or a fragment."""
    problem = ""
    parts = urlsplit(url) if len(url) <= MAX_URL_LENGTH else None
    if parts is None:
        problem = f"is longer than {MAX_URL_LENGTH} characters"
    elif parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        problem = "is not a local file URL such as file:///data/se/site-a (the only kind supported)"
    elif parts.query or parts.fragment:
        problem = "has a query or a fragment"
    else:
        path = unquote(parts.path).rstrip("/")
        components = path.split("/")[1:]
        if not path.startswith("/") or not components:
            problem = "must name an absolute directory other than /"
        elif any(c in ("", ".", "..") for c in components):
            problem = "must be a plain absolute path (no '.', '..' or empty components)"
        elif any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
            problem = "has control characters"
        else:
            return "file://" + quote(path)
    raise InvalidArgument(f"storage element URL {url[:120]!r} {problem}", field=field)


def check_users(queues: Sequence[str], vos: Sequence[str], field: str) -> None:
    """The queues and VOs an element serves must be well formed (INVALID_ARGUMENT naming
    `<field>.queues` or `<field>.vos`)."""
    for name, items, pattern, what in (("queues", queues, QUEUE_ID, "a queue id"), ("vos", vos, _VO, "a VO name")):
        if len(items) > _MAX_USERS:
            raise InvalidArgument(f"at most {_MAX_USERS} {name}", field=f"{field}.{name}")
        for item in items:
            if not pattern.fullmatch(item):
                raise InvalidArgument(f"{item[:80]!r} is not {what}", field=f"{field}.{name}")


def root_of(url: str) -> str:
    """The directory of a canonical file:// URL."""
    return unquote(urlsplit(url).path)


def check_no_overlap(element_id: str, url: str, others: Iterable[StorageElement], field: str) -> None:
    """Two elements must not share a directory, nor hold one inside the other: files reachable
    through two elements would be open to the queues and VOs of both."""
    root = root_of(url).rstrip("/") + "/"
    for other in others:
        if other.storage_element_id == element_id:
            continue
        theirs = root_of(other.url).rstrip("/") + "/"
        if root.startswith(theirs) or theirs.startswith(root):
            raise InvalidArgument(
                f"{url} overlaps storage element {other.storage_element_id} ({other.url}): elements must not "
                "share a directory or hold one inside another",
                field=field,
            )


def check_queue_storage(queue_id: str, element_id: str, element: StorageElement | None, field: str) -> None:
    """A queue's own element must be configured, and serve the queue."""
    if not element_id:
        return
    if element is None:
        raise InvalidArgument(f"storage element {element_id} is not configured (see `panda se list`)", field=field)
    if not element.serves_queue(queue_id):
        raise InvalidArgument(
            f"storage element {element_id} does not serve queue {queue_id} (it serves {', '.join(element.queues)})",
            field=field,
        )


def check_file_storage_ids(specs: Sequence[JobSpec]) -> None:
    """Every storage element a submitted file names is an id (INVALID_ARGUMENT naming the field,
    a URL with a hint)."""
    for i, spec in enumerate(specs):
        for j, file in enumerate(spec.files):
            if file.storage_element:
                check_storage_element_id(file.storage_element, f"jobs[{i}].files[{j}].storage_element")


def check_file_storage(
    specs: Sequence[JobSpec], queue_elements: Mapping[str, str], elements: Mapping[str, StorageElement], vo: str
) -> None:
    """Each file's storage element (its own, or its queue's: `queue_elements`) is configured
    and serves the job's queue (else INVALID_ARGUMENT) and VO (else PERMISSION_DENIED), each
    error naming the file's field."""
    for i, spec in enumerate(specs):
        for j, file in enumerate(spec.files):
            field = f"jobs[{i}].files[{j}].storage_element"
            element_id = file.storage_element or queue_elements.get(spec.queue, "")
            if not element_id:
                raise InvalidArgument(
                    f"{field}: queue {spec.queue} has no storage element; name a configured one", field=field
                )
            element = elements.get(element_id)
            if element is None:
                raise InvalidArgument(
                    f"{field}: storage element {element_id} is not configured (see `panda se list`)", field=field
                )
            if not element.serves_queue(spec.queue):
                raise InvalidArgument(
                    f"{field}: storage element {element_id} does not serve queue {spec.queue}", field=field
                )
            if not element.serves_vo(vo):
                raise PermissionDenied(f"{field}: storage element {element_id} is not open to VO {vo or '(none)'}")


def reassign_problem(
    queue_id: str, queue_element: str, files: Sequence[tuple[str, str]], vo: str,
    elements: Mapping[str, StorageElement],
) -> str:
    """Why a job's files keep it from moving to `queue_id` ("" when nothing does): its outputs
    and logs go to the queue's element, its inputs stay where they are (`files`: (kind,
    element id)), and each must be configured and serve the queue and the job's VO."""
    for kind, current in files:
        element_id = current if kind == "input" else queue_element
        element = elements.get(element_id)
        if element is None:
            return (f"queue {queue_id} has no storage element for its outputs" if kind != "input"
                    else f"its input's storage element {element_id or '(none)'} is not configured")
        if not element.serves_queue(queue_id):
            return f"storage element {element_id} does not serve queue {queue_id}"
        if not element.serves_vo(vo):
            return f"storage element {element_id} is not open to VO {vo or '(none)'}"
    return ""
