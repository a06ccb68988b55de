"""The web monitor's filters, as BigPanDA's users write them in a URL, turned into the services'
list filters (AIP-160, where `OR` binds tighter than `AND`).

    /monitor/jobs?state=failed|cancelled&queue=CERN*&owner=!bob&hours=12

- `field=value`: exact; `*` in a text value is a wildcard (`queue=CERN*`);
- `field=a|b`: any of several values;
- `field=!a` (or `!a|b`): none of them;
- `hours=12`, `days=3`: changed in that window; `from=`/`to=`: an RFC 3339 time or a date.

A value the field cannot hold is a `FilterError` naming the URL parameter, so a mistyped link
says what is wrong instead of showing nothing.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = ["TIME_KEYS", "FieldKind", "FilterError", "FilterField", "ListFields", "api_filter", "quoted"]


class FieldKind(Enum):
    TEXT = "text"
    NUMBER = "number"
    STATE = "state"  # an enum: the URL may name it in any case, with or without its prefix


@dataclass(frozen=True)
class FilterField:
    name: str
    kind: FieldKind
    # The enum's value names for a STATE field ("RUNNING", ...), without the "STATE_" prefix.
    choices: tuple[str, ...] = ()
    # Where the service's filter calls it, if not by the same name.
    api_name: str = ""

    @property
    def in_api(self) -> str:
        return self.api_name or self.name


class FilterError(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


_NUMBER = re.compile(r"-?[0-9]{1,19}$")


@dataclass(frozen=True)
class ListFields:
    """The filter fields of the monitor's lists: jobs, tasks and datasets. The enum fields'
    values come from the contracts (the caller reads them from the descriptors)."""

    jobs: Mapping[str, FilterField]
    tasks: Mapping[str, FilterField]
    datasets: Mapping[str, FilterField]

    @classmethod
    def of(cls, job_states: Sequence[str], task_states: Sequence[str], dataset_kinds: Sequence[str]) -> ListFields:
        jobs = (
            FilterField("job_id", FieldKind.NUMBER), FilterField("state", FieldKind.STATE, tuple(job_states)),
            FilterField("queue", FieldKind.TEXT), FilterField("owner", FieldKind.TEXT),
            FilterField("vo", FieldKind.TEXT), FilterField("task_id", FieldKind.NUMBER),
            FilterField("priority", FieldKind.NUMBER), FilterField("attempt", FieldKind.NUMBER),
            FilterField("error_code", FieldKind.NUMBER), FilterField("label", FieldKind.TEXT),
            FilterField("pilot_id", FieldKind.TEXT), FilterField("node", FieldKind.TEXT),
        )
        tasks = (
            FilterField("task_id", FieldKind.NUMBER), FilterField("task_name", FieldKind.TEXT),
            FilterField("owner", FieldKind.TEXT), FilterField("working_group", FieldKind.TEXT),
            FilterField("state", FieldKind.STATE, tuple(task_states)), FilterField("priority", FieldKind.NUMBER),
        )
        datasets = (
            FilterField("dataset_id", FieldKind.TEXT), FilterField("kind", FieldKind.STATE, tuple(dataset_kinds)),
            FilterField("owner", FieldKind.TEXT), FilterField("task_id", FieldKind.NUMBER),
        )
        return cls({f.name: f for f in jobs}, {f.name: f for f in tasks}, {f.name: f for f in datasets})


TIME_KEYS = ("hours", "days", "from", "to")
# A window longer than this is a typo, not a question (ten years).
_MAX_HOURS = 24 * 366 * 10


def quoted(text: str) -> str:
    """A string literal of the filter language."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(field: FilterField, parameter: str, text: str) -> str:
    if not text:
        raise FilterError(parameter, "an empty value")
    if field.kind is FieldKind.NUMBER:
        if not _NUMBER.match(text):
            raise FilterError(parameter, f"{text!r} is not a whole number")
        return text
    if field.kind is FieldKind.STATE:
        name = text.upper().removeprefix("STATE_").removeprefix("KIND_")
        if name not in field.choices:
            raise FilterError(parameter, f"{text!r} is not one of {', '.join(c.lower() for c in field.choices)}")
        return name
    return quoted(text)


def _comparisons(field: FilterField, parameter: str, raw: str) -> str:
    negated = raw.startswith("!")
    values = [_value(field, parameter, part.strip()) for part in raw.removeprefix("!").split("|")]
    if negated:
        return " AND ".join(f"{field.in_api} != {value}" for value in values)
    if len(values) == 1:
        return f"{field.in_api} = {values[0]}"
    return "(" + " OR ".join(f"{field.in_api} = {value}" for value in values) + ")"


def _moment(parameter: str, text: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(parameter, f"{text!r} is not a date or an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(query: Mapping[str, Sequence[str]], time_field: str, now: datetime.datetime) -> list[str]:
    terms: list[str] = []
    for unit in ("hours", "days"):
        for text in query.get(unit, ()):
            if not _NUMBER.match(text) or int(text) <= 0:
                raise FilterError(unit, f"{text!r} is not a positive whole number")
            hours = int(text) * (24 if unit == "days" else 1)
            if hours > _MAX_HOURS:
                raise FilterError(unit, "more than ten years")
            terms.append(f'{time_field} > "{_rfc3339(now - datetime.timedelta(hours=hours))}"')
    for key, operator in (("from", ">="), ("to", "<=")):
        for text in query.get(key, ()):
            terms.append(f'{time_field} {operator} "{_rfc3339(_moment(key, text))}"')
    return terms


def api_filter(query: Mapping[str, Sequence[str]], fields: Mapping[str, FilterField], *,
               time_field: str = "update_time", now: datetime.datetime | None = None,
               fixed: Sequence[str] = ()) -> str:
    """The service filter for the URL's filter parameters (others are ignored: paging, sorting);
    `fixed`: terms the page itself adds (a task page's `task_id = 5`)."""
    terms = list(fixed)
    for name, field in fields.items():
        for raw in query.get(name, ()):
            terms.append(_comparisons(field, name, raw))
    terms += _window(query, time_field, now or datetime.datetime.now(datetime.UTC))
    return " AND ".join(terms)
