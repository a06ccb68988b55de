"""The web monitor's paging, sorting and links: what a list page's URL says beyond its filters,
and the URLs its summary and pagination link to (each keeps the view's other parameters, so a
view is always a link to share)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from monitor_gateway.domain.monitor_filters import FilterError
from panda_runtime.contracts.jedi import DATASET_SORT_FIELDS, TASK_SORT_FIELDS
from panda_runtime.contracts.server import JOB_SORT_FIELDS

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "SORTABLE", "Page", "Paging", "may_act", "page_of", "paging_of",
           "summary_fields", "with_params"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# The columns a list sorts by (`sort=update_time`, `sort=-update_time` for the newest first).
SORTABLE: Mapping[str, tuple[str, ...]] = {
    # Sorted by the services: what their List methods take in order_by.
    "jobs": JOB_SORT_FIELDS,
    "tasks": TASK_SORT_FIELDS,
    "datasets": DATASET_SORT_FIELDS,
    # Lists the monitor holds whole (a site's queues, the people with work) and sorts itself.
    "queues": ("queue_id", "status", "pilots", "activated", "running"),
    "users": ("owner", "jobs", "tasks"),
}
# BigPanDA's attribute summary: the fields whose counts a list shows beside it.
_SUMMARY: Mapping[str, tuple[str, ...]] = {
    "jobs": ("state", "queue", "task_id", "owner", "error_code", "attempt"),
    "tasks": ("state", "owner"),
}


@dataclass(frozen=True)
class Paging:
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str = ""
    order_by: str = ""


def summary_fields(kind: str) -> tuple[str, ...]:
    return _SUMMARY[kind]


def paging_of(query: Mapping[str, Sequence[str]], kind: str | None) -> Paging:
    """`page_size` (1 to 1,000), `page_token` and, for a sortable list, `sort`."""
    size_text = (query.get("page_size") or [str(DEFAULT_PAGE_SIZE)])[-1]
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
        raise FilterError("page_size", f"{size_text!r} is not a whole number from 1 to {MAX_PAGE_SIZE}")
    order_by = ""
    sort = (query.get("sort") or [""])[-1]
    if sort:
        column = sort.removeprefix("-")
        allowed = SORTABLE.get(kind or "", ())
        if column not in allowed:
            raise FilterError("sort", f"{sort!r}: this list sorts by {', '.join(allowed) or 'nothing'}")
        order_by = f"{column} desc" if sort.startswith("-") else column
    return Paging(int(size_text), (query.get("page_token") or [""])[-1], order_by)


def with_params(path: str, query: Mapping[str, Sequence[str]], **changes: str | None) -> str:
    """`path` with the view's parameters, some changed (None removes one). Changing a filter or
    the order starts again from the first page."""
    params = {key: list(values) for key, values in query.items() if key != "json"}
    if any(key not in ("page_token",) for key in changes):
        params.pop("page_token", None)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = [value]
    encoded = urlencode([(key, value) for key, values in params.items() for value in values])
    return f"{path}?{encoded}" if encoded else path


def may_act(viewer: Mapping[str, Any], owner: str, vo: str) -> bool:
    """Whether the API would let `viewer` (WhoAmI's answer) act on work of `owner` in `vo`: its
    owner, an admin or a service, or production of that VO. Only to decide which buttons a page
    shows: the service decides again when one is pressed."""
    roles = set(viewer.get("roles", ()))
    return bool(viewer) and (viewer.get("subject") == owner or bool(roles & {"admin", "service"})
                             or f"{vo}/production" in viewer.get("grants", ()))


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_page_token: str
    total: int


def page_of(rows: Sequence[Any], paging: Paging, keys: Mapping[str, Callable[[Any], Any]]) -> Page:
    """One page of a list held whole, sorted by `paging.order_by` (a column of `keys`, then the
    first column as a tie-break); its page token is the offset of the next page."""
    token = paging.page_token
    if token and not (token.isdigit() and len(token) <= 9):
        raise FilterError("page_token", "not a page token of this list")
    ordered = list(rows)
    first = next(iter(keys.values()))
    ordered.sort(key=first)
    if paging.order_by:
        column, _, direction = paging.order_by.partition(" ")
        ordered.sort(key=keys[column], reverse=direction == "desc")
    start = int(token or 0)
    end = start + paging.page_size
    return Page(ordered[start:end], str(end) if end < len(ordered) else "", len(ordered))
