"""Each queue's configuration as harvester reads it: one JSON document in the shape of PanDA's
`panda_queueconfig.json`, `{"<queue id>": {...}, ...}`, with Harvester's key names where
Harvester has one (`queueStatus`, `mapType`, `nQueueLimitWorker`, `maxWorkers`,
`maxNewWorkersPerCycle`, `nQueueLimitJob`, `nCorePerNode`, `maxWalltime`). No I/O: the caller
reads the file and hands over its text.

`load_queue_config` checks the whole document and reports every problem at once, each naming its
queue and field (`queue "X": submitter.partition: field required`): the queue ids, each
queue's fields one by one (pydantic, strict types, unknown keys refused), then the rules between
fields (`nQueueLimitWorker` within `maxWorkers`, `nQueueLimitJob` only for push queues…), each
checked whenever the fields it reads are well formed, even if another field of the queue is not.

What the rest of the service gets are plain frozen dataclasses (`QueueConfig`), not the pydantic
models: they carry Python names instead of the file's, cost nothing to pass around or compare
(the worker adjuster reads a thousand of them every cycle), and tie no caller to pydantic's API.
The pydantic models stay private to this module; they are the document's grammar, and the JSON
Schema (`queue_config_schema`) is made from them."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import ErrorDetails

from panda_runtime.contracts.rules import INT32_MAX
from panda_runtime.contracts.server import QUEUE_ID

__all__ = [
    "SUBMITTER_PARAMETERS",
    "MapType",
    "MessengerType",
    "QueueConfig",
    "QueueConfigError",
    "QueueStatus",
    "Resources",
    "Submitter",
    "load_queue_config",
    "queue_config_schema",
]


class QueueStatus(StrEnum):
    ONLINE = "online"
    # No new workers; the ones already submitted run on.
    OFFLINE = "offline"


class MapType(StrEnum):
    """How jobs meet workers, with Harvester's names."""

    # Pull: the pilot asks the server for its job.
    NO_JOB = "NoJob"
    # Push: harvester fetches one job and hands it to the worker it submits.
    ONE_TO_ONE = "OneToOne"
    # Push: several jobs (`nJobsPerWorker`) in one worker.
    MANY_TO_ONE = "ManyToOne"

    @property
    def is_push(self) -> bool:
        return self is not MapType.NO_JOB


class MessengerType(StrEnum):
    """How the pilot of a worker reaches the server."""

    # Directly, over gRPC.
    GRPC = "grpc"
    # Through harvester's DispatchService, which forwards with its own credentials.
    RELAY = "relay"
    # Not at all: it exchanges files with harvester in the worker's access point (push only).
    SHARED_FILES = "shared_files"


@dataclass(frozen=True, slots=True)
class Resources:
    """What each worker of the queue asks the batch system for."""

    cores: int
    memory_mb: int
    walltime_seconds: int


@dataclass(frozen=True, slots=True)
class Submitter:
    plugin: str
    # The plugin's own parameters (partition, image, schedd…), only those its entry in
    # SUBMITTER_PARAMETERS declares and only those given; lists are tuples.
    parameters: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One queue, checked. Limits are counts of workers (or jobs for `n_queue_limit_job`)."""

    name: str
    status: QueueStatus
    map_type: MapType
    # Jobs per worker: 1 except for ManyToOne.
    n_jobs_per_worker: int
    # Most live workers (queued, ready, running or idle) at once; 0 means none.
    max_workers: int
    # Most workers waiting in the batch system; None: only max_workers bounds them.
    n_queue_limit_worker: int | None
    # Most workers submitted per adjuster cycle; 0: no limit per cycle.
    max_new_workers_per_cycle: int
    # Push only: most jobs fetched ahead and not yet running; None: no limit.
    n_queue_limit_job: int | None
    resources: Resources
    submitter: Submitter
    messenger: MessengerType
    # A worker waiting in the batch system longer than this is killed.
    worker_queued_timeout_seconds: int
    # A started worker whose pilot has been silent this long is killed.
    worker_heartbeat_timeout_seconds: int


class QueueConfigError(ValueError):
    """The document is not a valid queue configuration. `problems` holds every problem found,
    each naming its queue and field; the message lists them one a line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid queue configuration ({count}):\n" + "\n".join(f"  {p}" for p in problems))


# ---- the document's grammar (pydantic) -------------------------------------------------------------

# Integers as columns hold them; strict: JSON's true, 1.0 and "1" are not integers here.
_Count: TypeAlias = Annotated[int, Field(ge=0, le=INT32_MAX)]
_Seconds: TypeAlias = Annotated[int, Field(ge=60, le=INT32_MAX)]
_NO_NUL = r"^[^\x00]*$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_NO_WHITESPACE = r"^\S+$"
_Text: TypeAlias = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_NO_NUL)]
# A Kubernetes namespace, service account or Secret name.
_DnsLabel: TypeAlias = Annotated[str, StringConstraints(max_length=63, pattern=_DNS_LABEL)]
# An image reference.
_Image: TypeAlias = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_NO_WHITESPACE)]

_STRICT = ConfigDict(
    extra="forbid", strict=True, frozen=True,
    # The schema's titles as the file spells things: `maxWorkers`, `SlurmSubmitter`.
    field_title_generator=lambda name, _: name, model_title_generator=lambda model: model.__name__.lstrip("_"),
)


class _Resources(BaseModel):
    model_config = _STRICT
    cores: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = Field(
        None, description="cores per worker (default 1)")
    nCorePerNode: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = Field(
        None, description="Harvester's name for cores")
    memoryMB: _Count = Field(2000, description="memory per worker, MB")
    walltimeSeconds: _Seconds | None = Field(None, description="most seconds a worker runs (default 86400)")
    maxWalltime: _Seconds | None = Field(None, description="Harvester's name for walltimeSeconds")


class _LocalSubmitter(BaseModel):
    """Processes on this machine."""

    model_config = _STRICT
    plugin: Literal["local"]


class _SlurmSubmitter(BaseModel):
    model_config = _STRICT
    plugin: Literal["slurm"]
    partition: _Text
    template_file: _Text | None = Field(None, description="the batch script template (default: the shipped one)")
    sbatch_args: list[_Text] | None = Field(None, description="more arguments to sbatch")


class _HTCondorSubmitter(BaseModel):
    model_config = _STRICT
    plugin: Literal["htcondor"]
    schedd: _Text | None = Field(None, description="the schedd's name (default: the local schedd)")
    pool: _Text | None = Field(None, description="the collector that locates the schedd")


class _KubernetesSubmitter(BaseModel):
    model_config = _STRICT
    plugin: Literal["kubernetes"]
    image: _Image
    namespace: _DnsLabel
    service_account: _DnsLabel | None = None
    token_secret: _DnsLabel | None = Field(None, description="the Secret holding the pilot's token")
    kubeconfig: _Text | None = Field(None, description="a kubeconfig file (default: the in-cluster configuration)")
    ttl_seconds_after_finished: _Count | None = None


_SubmitterModel: TypeAlias = _LocalSubmitter | _SlurmSubmitter | _HTCondorSubmitter | _KubernetesSubmitter


def _plugin_name(model: type[BaseModel]) -> str:
    annotation = model.model_fields["plugin"].annotation
    (name,) = annotation.__args__  # type: ignore[union-attr]  # each is Literal["<name>"]
    return str(name)


_SUBMITTER_MODELS: Mapping[str, type[BaseModel]] = {
    _plugin_name(model): model
    for model in (_LocalSubmitter, _SlurmSubmitter, _HTCondorSubmitter, _KubernetesSubmitter)
}
# The hook table: each plugin's name and the parameters it takes (name → required). A parameter
# it does not declare is refused; a plugin checks nothing else of the configuration itself.
SUBMITTER_PARAMETERS: Mapping[str, Mapping[str, bool]] = MappingProxyType({
    plugin: MappingProxyType({
        name: field.is_required() for name, field in model.model_fields.items() if name != "plugin"
    })
    for plugin, model in _SUBMITTER_MODELS.items()
})


class _Messenger(BaseModel):
    model_config = _STRICT
    type: Literal["grpc", "relay", "shared_files"]


class _Queue(BaseModel):
    model_config = _STRICT
    queueStatus: Literal["online", "offline"] = Field(
        "online", description="offline: no new workers; existing ones run on")
    mapType: Literal["NoJob", "OneToOne", "ManyToOne"] = Field(
        description="NoJob: the pilot pulls its job; OneToOne and ManyToOne: harvester pushes jobs to workers")
    nJobsPerWorker: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = Field(
        None, description="ManyToOne only, and required there: jobs per worker, at least 2")
    maxWorkers: _Count = Field(description="most live workers (queued, ready, running, idle); 0: none")
    nQueueLimitWorker: _Count | None = Field(
        None, description="most workers waiting in the batch system, at most maxWorkers (default: maxWorkers)")
    maxNewWorkersPerCycle: _Count = Field(
        0, description="most workers submitted per cycle, at most maxWorkers; 0: no limit per cycle")
    nQueueLimitJob: _Count | None = Field(
        None, description="push only: most jobs fetched ahead and not yet running (default: no limit)")
    resources: _Resources = Field(default_factory=_Resources)
    submitter: _SubmitterModel = Field(discriminator="plugin")
    messenger: _Messenger | None = Field(
        None,
        description="grpc: the pilot calls the server; relay: harvester's DispatchService; "
                    "shared_files (push only): files in the worker's access point "
                    "(default: grpc for NoJob, shared_files for push queues)")
    workerQueuedTimeoutSeconds: _Seconds = Field(
        86400, description="a worker waiting in the batch system longer than this is killed")
    workerHeartbeatTimeoutSeconds: _Seconds = Field(
        7200, description="a started worker whose pilot is silent this long is killed")


_QUEUE = TypeAdapter(_Queue)
# Nested objects whose type a key picks (submitter.plugin): pydantic puts the key's value in
# the error's location, which the reader does not need.
_DISCRIMINATED = frozenset({"submitter"})
_QUEUE_ID_TEXT = "a queue id: 1-64 letters, digits, '_', '-' or '.'"


# ---- loading --------------------------------------------------------------------------------------


class _JSONObject(dict[str, Any]):
    """A JSON object that remembers the keys it was given more than once (json keeps the last)."""

    repeated: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JSONObject:
    made = _JSONObject(pairs)
    if len(made) != len(pairs):
        seen: set[str] = set()
        repeated: dict[str, None] = {}
        for key, _ in pairs:
            if key in seen:
                repeated[key] = None
            seen.add(key)
        made.repeated = tuple(repeated)
    return made


def _repeated_keys(value: object, path: str) -> Iterator[str]:
    """Where, inside `value`, an object was given a key twice."""
    if isinstance(value, _JSONObject):
        for key in value.repeated:
            yield f"{path}.{key}" if path else key
        for key, item in value.items():
            yield from _repeated_keys(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _repeated_keys(item, f"{path}[{index}]")


def load_queue_config(text: str) -> dict[str, QueueConfig]:
    """Every queue of a queue configuration document, checked; `QueueConfigError` lists every
    problem when there is any."""
    try:
        document = json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as error:
        raise QueueConfigError([f"not JSON: {error.msg} (line {error.lineno}, column {error.colno})"]) from None
    if not isinstance(document, _JSONObject):
        raise QueueConfigError(['the document must be a JSON object of queues, {"<queue id>": {...}, ...}'])
    problems = [f'queue "{_name_shown(name)}": given more than once' for name in document.repeated]
    queues: dict[str, QueueConfig] = {}
    for name, body in document.items():
        where = f'queue "{_name_shown(name)}"'
        found: list[str] = []
        if not QUEUE_ID.fullmatch(name):
            found.append(f"not {_QUEUE_ID_TEXT}")
        found += [f"{path}: given more than once" for path in _repeated_keys(body, "")]
        try:
            model = _QUEUE.validate_python(body)
        except ValidationError as error:
            details = error.errors(include_url=False)
            found += [_described(detail) for detail in details]
            found += _rule_problems(_well_formed_fields(body, details))
        else:
            found += _rule_problems(model.model_dump())
            if not found:
                queues[name] = _record(name, model)
        problems += [f"{where}: {problem}" for problem in found]
    if problems:
        raise QueueConfigError(problems)
    return queues


def _well_formed_fields(body: object, details: list[ErrorDetails]) -> dict[str, Any]:
    """A queue's top-level fields that have no error of their own: as given, or their default
    when not given; so the rules between fields are checked even when another field is wrong."""
    if not isinstance(body, dict) or any(not detail["loc"] for detail in details):
        return {}
    broken = {detail["loc"][0] for detail in details}
    fields: dict[str, Any] = {}
    for name, field in _Queue.model_fields.items():
        if name in broken:
            continue
        if name in body:
            fields[name] = body[name]
        else:
            default = field.get_default(call_default_factory=True)
            fields[name] = default.model_dump() if isinstance(default, BaseModel) else default
    return fields


def _rule_problems(fields: Mapping[str, Any]) -> list[str]:
    """The rules between a queue's fields, each checked when the fields it reads are well formed
    (present in `fields`, in the document's names); each problem names the field to change."""
    problems: list[str] = []
    max_workers = fields.get("maxWorkers")
    for limit in ("nQueueLimitWorker", "maxNewWorkersPerCycle"):
        value = fields.get(limit)
        if max_workers is not None and value is not None and value > max_workers:
            problems.append(f"{limit}: {value} is more than maxWorkers ({max_workers})")
    map_type = fields.get("mapType")
    if map_type == "NoJob" and fields.get("nQueueLimitJob") is not None:
        problems.append("nQueueLimitJob: only for push queues (mapType OneToOne or ManyToOne); "
                        "with NoJob the pilot fetches its own job")
    if map_type is not None and "nJobsPerWorker" in fields:
        per_worker = fields["nJobsPerWorker"]
        if map_type == "ManyToOne" and per_worker is None:
            problems.append("nJobsPerWorker: field required with mapType ManyToOne")
        elif map_type == "ManyToOne" and per_worker < 2:
            problems.append(f"nJobsPerWorker: must be at least 2 with mapType ManyToOne, not {per_worker}")
        elif map_type != "ManyToOne" and per_worker is not None:
            problems.append(f"nJobsPerWorker: only with mapType ManyToOne (this queue is {map_type})")
    messenger = fields.get("messenger") or {}
    if map_type == "NoJob" and messenger.get("type") == "shared_files":
        problems.append("messenger.type: shared_files needs a push mapType (OneToOne or ManyToOne): "
                        "its pilot cannot ask anybody for a job")
    if map_type in ("OneToOne", "ManyToOne") and messenger.get("type", "shared_files") != "shared_files":
        problems.append(f"messenger.type: a push queue (mapType {map_type}) needs shared_files: the jobs "
                        "harvester fetches are held by its own stream to the server, which only it can report on")
    resources = fields.get("resources") or {}
    if resources.get("cores") is not None and resources.get("nCorePerNode") is not None:
        problems.append("resources: give cores or nCorePerNode (its Harvester name), not both")
    if resources.get("walltimeSeconds") is not None and resources.get("maxWalltime") is not None:
        problems.append("resources: give walltimeSeconds or maxWalltime (its Harvester name), not both")
    return problems


def _record(name: str, queue: _Queue) -> QueueConfig:
    resources = queue.resources
    submitter = queue.submitter
    parameters = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in submitter.model_dump(exclude={"plugin"}, exclude_none=True).items()
    }
    return QueueConfig(
        name=name,
        status=QueueStatus(queue.queueStatus),
        map_type=MapType(queue.mapType),
        n_jobs_per_worker=queue.nJobsPerWorker or 1,
        max_workers=queue.maxWorkers,
        n_queue_limit_worker=queue.nQueueLimitWorker,
        max_new_workers_per_cycle=queue.maxNewWorkersPerCycle,
        n_queue_limit_job=queue.nQueueLimitJob,
        resources=Resources(
            cores=resources.cores or resources.nCorePerNode or 1,
            memory_mb=resources.memoryMB,
            walltime_seconds=resources.walltimeSeconds or resources.maxWalltime or 86400,
        ),
        submitter=Submitter(plugin=submitter.plugin, parameters=MappingProxyType(parameters)),
        messenger=MessengerType(queue.messenger.type) if queue.messenger is not None
        else MessengerType.GRPC if queue.mapType == "NoJob" else MessengerType.SHARED_FILES,
        worker_queued_timeout_seconds=queue.workerQueuedTimeoutSeconds,
        worker_heartbeat_timeout_seconds=queue.workerHeartbeatTimeoutSeconds,
    )


# ---- pydantic's errors, as a reader of the file wants them ----------------------------------------


def _name_shown(name: str) -> str:
    return name if len(name) <= 80 else name[:77] + "..."


def _shown(value: object) -> str:
    """A value as the file would spell it, cut to a line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Pydantic's errors of a bound, as this document's reader wants them (filled from the error's ctx).
_BOUNDS = {
    "greater_than_equal": "at least {ge}",
    "less_than_equal": "at most {le}",
    "string_too_short": "at least {min_length} characters long",
    "string_too_long": "at most {max_length} characters long",
}
# What a name's pattern means, for the reader.
_PATTERN_TEXT = {
    _DNS_LABEL: "a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and ending "
                "with a letter or digit",
    _NO_WHITESPACE: "text without whitespace",
    _NO_NUL: "text without a NUL character",
}


def _path(location: tuple[int | str, ...]) -> str:
    """`submitter.sbatch_args[2]` from pydantic's ('submitter', 'slurm', 'sbatch_args', 2)."""
    path = ""
    after_discriminated = False
    for part in location:
        if after_discriminated:
            after_discriminated = False
        elif isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
            after_discriminated = part in _DISCRIMINATED
    return path


def _known_keys(parent: tuple[int | str, ...]) -> list[str]:
    """The keys the object at `parent` (a location in a queue) takes."""
    if parent[:1] == ("submitter",) and len(parent) == 2:
        return list(_SUBMITTER_MODELS.get(str(parent[1]), _LocalSubmitter).model_fields)
    models: dict[tuple[int | str, ...], type[BaseModel]] = {
        (): _Queue, ("resources",): _Resources, ("messenger",): _Messenger}
    model = models.get(parent)
    return list(model.model_fields) if model else []


def _described(detail: ErrorDetails) -> str:
    location = detail["loc"]
    path = _path(location)
    kind = detail["type"]
    given = detail.get("input")
    if kind == "missing":
        message = "field required"
    elif kind == "extra_forbidden":
        known = _known_keys(location[:-1])
        close = difflib.get_close_matches(str(location[-1]), known, n=1)
        message = "unknown key" + (f' (did you mean "{close[0]}"?)' if close else f" (known: {', '.join(known)})")
    elif kind == "union_tag_invalid":
        plugin = given.get("plugin") if isinstance(given, dict) else given
        message = f"unknown plugin {_shown(plugin)} (known: {', '.join(SUBMITTER_PARAMETERS)})"
        path = f"{path}.plugin"
    elif kind == "union_tag_not_found":
        message = f"field required (one of: {', '.join(SUBMITTER_PARAMETERS)})"
        path = f"{path}.plugin"
    elif kind in _BOUNDS:
        message = f"must be {_BOUNDS[kind].format(**detail.get('ctx', {}))}, not {_shown(given)}"
    elif kind == "string_pattern_mismatch":
        pattern = str((detail.get("ctx") or {}).get("pattern", ""))
        message = f"must be {_PATTERN_TEXT.get(pattern, f'text matching {pattern}')}, not {_shown(given)}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"must be a JSON object, not {_shown(given)}"
    else:
        text = detail["msg"].removeprefix("Input should be ").removeprefix("String should be ")
        message = f"must be {text}, not {_shown(given)}"
    return f"{path}: {message}" if path else message


# ---- the schema, for the documentation ------------------------------------------------------------


class _SchemaNames(GenerateJsonSchema):
    """Definitions named as the file's readers know them (`SlurmSubmitter`, not `_SlurmSubmitter`)."""

    def normalize_name(self, name: str) -> str:
        return super().normalize_name(name).lstrip("_")


def queue_config_schema() -> dict[str, Any]:
    """The document's JSON Schema (draft 2020-12). It says what each field takes; the rules
    between fields (nQueueLimitWorker at most maxWorkers…) are load_queue_config's alone."""
    schema = TypeAdapter(dict[str, _Queue]).json_schema(schema_generator=_SchemaNames)
    schema.pop("additionalProperties", None)
    schema.update({
        "$schema": GenerateJsonSchema.schema_dialect,
        "title": "Harvester queue configuration",
        "description": "One entry per queue, keyed by the queue's id (the server's). "
                       "Harvester's names are taken where it has one (nCorePerNode, maxWalltime).",
        "type": "object",
        "patternProperties": {f"^{QUEUE_ID.pattern}$": {"$ref": "#/$defs/Queue"}},
        "additionalProperties": False,
    })
    return schema
