"""Harvester's queue configuration without a process: the shipped example loads, every mistake
an operator can make is refused with a message naming its queue and field, and all of them are
reported at once."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester_svc.domain.queue_config import (
    SUBMITTER_PARAMETERS,
    MapType,
    MessengerType,
    QueueConfigError,
    QueueStatus,
    Resources,
    load_queue_config,
    queue_config_schema,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "harvester" / "queueconfig.example.json"
MINIMAL: dict[str, Any] = {"mapType": "NoJob", "maxWorkers": 10, "submitter": {"plugin": "local"}}


def problems(document: object) -> list[str]:
    """What load_queue_config says of `document` (JSON text, or a value it is dumped from)."""
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(QueueConfigError) as raised:
        load_queue_config(text)
    assert str(raised.value).splitlines()[1:] == [f"  {problem}" for problem in raised.value.problems]
    return raised.value.problems


def queue(**changes: Any) -> dict[str, Any]:
    """The minimal queue with `changes` (None removes a key)."""
    body = copy.deepcopy(MINIMAL)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


# ---- a valid configuration -------------------------------------------------------------------------


def test_the_shipped_example_loads_with_a_queue_per_plugin() -> None:
    queues = load_queue_config(EXAMPLE.read_text())
    assert {name: config.submitter.plugin for name, config in queues.items()} == {
        "local": "local", "site-a.slurm": "slurm", "site-b_k8s": "kubernetes", "site-c-condor": "htcondor",
    }
    local = queues["local"]
    assert (local.status, local.map_type, local.messenger) == (QueueStatus.ONLINE, MapType.NO_JOB, MessengerType.GRPC)
    assert (local.max_workers, local.n_queue_limit_worker, local.max_new_workers_per_cycle) == (4, 2, 2)
    assert (local.worker_queued_timeout_seconds, local.worker_heartbeat_timeout_seconds) == (600, 1800)

    slurm = queues["site-a.slurm"]
    # Harvester's names for cores and walltime are taken.
    assert slurm.resources == Resources(cores=8, memory_mb=16000, walltime_seconds=172800)
    assert (slurm.map_type, slurm.n_queue_limit_job, slurm.messenger) == (MapType.NO_JOB, None, MessengerType.RELAY)
    assert dict(slurm.submitter.parameters) == {"partition": "main", "sbatch_args": ("--qos=normal",)}

    kubernetes = queues["site-b_k8s"].submitter.parameters
    assert dict(kubernetes) == {"image": "registry.example.org/panda/pilot:1.0", "namespace": "panda-pilots",
                                "service_account": "panda-pilot", "token_secret": "panda-pilot-token"}

    condor = queues["site-c-condor"]
    assert (condor.status, condor.map_type, condor.n_jobs_per_worker) == (QueueStatus.OFFLINE, MapType.MANY_TO_ONE, 4)
    assert condor.messenger is MessengerType.SHARED_FILES
    assert dict(condor.submitter.parameters) == {"schedd": "schedd.site-c.example.org",
                                                 "pool": "collector.site-c.example.org"}


def test_a_minimal_queue_takes_the_defaults() -> None:
    config = load_queue_config(json.dumps({"q": MINIMAL}))["q"]
    assert config.name == "q"
    assert config.status is QueueStatus.ONLINE and config.messenger is MessengerType.GRPC
    assert (config.n_jobs_per_worker, config.n_queue_limit_worker, config.max_new_workers_per_cycle,
            config.n_queue_limit_job) == (1, None, 0, None)
    assert config.resources == Resources(cores=1, memory_mb=2000, walltime_seconds=86400)
    assert (config.worker_queued_timeout_seconds, config.worker_heartbeat_timeout_seconds) == (86400, 7200)
    assert config.submitter.plugin == "local" and dict(config.submitter.parameters) == {}
    assert load_queue_config("{}") == {}


def test_the_records_cannot_be_changed() -> None:
    config = load_queue_config(EXAMPLE.read_text())["site-a.slurm"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_workers = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.submitter.parameters["partition"] = "other"  # type: ignore[index]


def test_the_hook_table_declares_each_plugins_parameters() -> None:
    assert dict(SUBMITTER_PARAMETERS["local"]) == {}
    assert dict(SUBMITTER_PARAMETERS["slurm"]) == {"partition": True, "template_file": False, "sbatch_args": False}
    assert dict(SUBMITTER_PARAMETERS["htcondor"]) == {"schedd": False, "pool": False}
    assert {name for name, required in SUBMITTER_PARAMETERS["kubernetes"].items() if required} == {"image",
                                                                                                    "namespace"}


# ---- each mistake, with its message ------------------------------------------------------------------

SLURM = {"plugin": "slurm", "partition": "main"}
KUBERNETES = {"plugin": "kubernetes", "image": "pilot:1", "namespace": "pilots"}


@pytest.mark.parametrize(("body", "expected"), [
    # What the submitter is.
    (queue(submitter={"plugin": "condor"}),
     'submitter.plugin: unknown plugin "condor" (known: local, slurm, htcondor, kubernetes)'),
    (queue(submitter={}), "submitter.plugin: field required (one of: local, slurm, htcondor, kubernetes)"),
    (queue(submitter={"plugin": "slurm"}), "submitter.partition: field required"),
    (queue(submitter={**SLURM, "partiton": "x"}), 'submitter.partiton: unknown key (did you mean "partition"?)'),
    (queue(submitter={"plugin": "local", "partition": "main"}), "submitter.partition: unknown key (known: plugin)"),
    (queue(submitter={"plugin": "htcondor", "scheduler": "s"}), 'submitter.scheduler: unknown key (did you mean '
                                                                '"schedd"?)'),
    (queue(submitter={**SLURM, "sbatch_args": ["--qos=x", 3]}), "submitter.sbatch_args[1]: must be a valid string, "
                                                                "not 3"),
    (queue(submitter={**KUBERNETES, "namespace": "Pilots"}),
     "submitter.namespace: must be a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and "
     'ending with a letter or digit, not "Pilots"'),
    (queue(submitter={**KUBERNETES, "image": "pilot 1"}), 'submitter.image: must be text without whitespace, not '
                                                          '"pilot 1"'),
    (queue(submitter="local"), 'submitter: must be a JSON object, not "local"'),
    # Unknown keys (typos).
    (queue(maxWorker=3), 'maxWorker: unknown key (did you mean "maxWorkers"?)'),
    (queue(resources={"cpus": 2}),
     "resources.cpus: unknown key (known: cores, nCorePerNode, memoryMB, walltimeSeconds, maxWalltime)"),
    (queue(messenger={"type": "grpc", "port": 1}), "messenger.port: unknown key (known: type)"),
    # Required fields.
    (queue(mapType=None), "mapType: field required"),
    (queue(maxWorkers=None), "maxWorkers: field required"),
    (queue(submitter=None), "submitter: field required"),
    # Values of the wrong kind or out of range.
    (queue(maxWorkers=-1), "maxWorkers: must be at least 0, not -1"),
    (queue(nQueueLimitWorker=-1), "nQueueLimitWorker: must be at least 0, not -1"),
    (queue(maxNewWorkersPerCycle=-5), "maxNewWorkersPerCycle: must be at least 0, not -5"),
    (queue(mapType="OneToOne", nQueueLimitJob=-1), "nQueueLimitJob: must be at least 0, not -1"),
    (queue(maxWorkers=2**31), "maxWorkers: must be at most 2147483647, not 2147483648"),
    (queue(maxWorkers=True), "maxWorkers: must be a valid integer, not true"),
    (queue(maxWorkers="10"), 'maxWorkers: must be a valid integer, not "10"'),
    (queue(maxWorkers=10.0), "maxWorkers: must be a valid integer, not 10.0"),
    (queue(resources={"cores": 0}), "resources.cores: must be at least 1, not 0"),
    (queue(resources={"walltimeSeconds": 59}), "resources.walltimeSeconds: must be at least 60, not 59"),
    (queue(workerQueuedTimeoutSeconds=5), "workerQueuedTimeoutSeconds: must be at least 60, not 5"),
    (queue(workerHeartbeatTimeoutSeconds=0), "workerHeartbeatTimeoutSeconds: must be at least 60, not 0"),
    (queue(queueStatus="standby"), "queueStatus: must be 'online' or 'offline', not \"standby\""),
    (queue(mapType="OneToMany"), "mapType: must be 'NoJob', 'OneToOne' or 'ManyToOne', not \"OneToMany\""),
    (queue(messenger={"type": "http"}), "messenger.type: must be 'grpc', 'relay' or 'shared_files', not \"http\""),
    # The rules between fields.
    (queue(maxWorkers=10, nQueueLimitWorker=11), "nQueueLimitWorker: 11 is more than maxWorkers (10)"),
    (queue(maxWorkers=10, maxNewWorkersPerCycle=11), "maxNewWorkersPerCycle: 11 is more than maxWorkers (10)"),
    (queue(nQueueLimitJob=5), "nQueueLimitJob: only for push queues (mapType OneToOne or ManyToOne); with NoJob "
                              "the pilot fetches its own job"),
    (queue(mapType="ManyToOne"), "nJobsPerWorker: field required with mapType ManyToOne"),
    (queue(mapType="ManyToOne", nJobsPerWorker=1), "nJobsPerWorker: must be at least 2 with mapType ManyToOne, not 1"),
    (queue(mapType="OneToOne", nJobsPerWorker=2), "nJobsPerWorker: only with mapType ManyToOne (this queue is "
                                                  "OneToOne)"),
    (queue(messenger={"type": "shared_files"}), "messenger.type: shared_files needs a push mapType (OneToOne or "
                                                "ManyToOne): its pilot cannot ask anybody for a job"),
    (queue(resources={"cores": 2, "nCorePerNode": 2}), "resources: give cores or nCorePerNode (its Harvester name), "
                                                       "not both"),
    (queue(resources={"walltimeSeconds": 600, "maxWalltime": 600}),
     "resources: give walltimeSeconds or maxWalltime (its Harvester name), not both"),
    (5, "must be a JSON object, not 5"),
])
def test_each_mistake_is_refused_naming_its_queue_and_field(body: object, expected: str) -> None:
    assert problems({"q": body}) == [f'queue "q": {expected}']


@pytest.mark.parametrize(("name", "why"), [
    ("bad name", "not a queue id: 1-64 letters, digits, '_', '-' or '.'"),
    ("", "not a queue id: 1-64 letters, digits, '_', '-' or '.'"),
    ("q/1", "not a queue id: 1-64 letters, digits, '_', '-' or '.'"),
    ("q" * 65, "not a queue id: 1-64 letters, digits, '_', '-' or '.'"),
])
def test_a_queue_name_must_be_a_queue_id(name: str, why: str) -> None:
    shown = name if len(name) <= 80 else name[:77] + "..."
    assert problems({name: MINIMAL}) == [f'queue "{shown}": {why}']
    assert "q" * 64 in load_queue_config(json.dumps({"q" * 64: MINIMAL}))


def test_a_push_queue_may_limit_its_fetched_jobs_and_a_many_to_one_queue_packs_jobs() -> None:
    queues = load_queue_config(json.dumps({
        "push": queue(mapType="OneToOne", nQueueLimitJob=5, messenger={"type": "shared_files"}),
        "packed": queue(mapType="ManyToOne", nJobsPerWorker=8),
    }))
    assert queues["push"].n_queue_limit_job == 5 and queues["push"].messenger is MessengerType.SHARED_FILES
    assert queues["packed"].n_jobs_per_worker == 8


@pytest.mark.parametrize(("text", "expected"), [
    ("{", "not JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
    ("", "not JSON: Expecting value (line 1, column 1)"),
    ("[]", 'the document must be a JSON object of queues, {"<queue id>": {...}, ...}'),
    ('{"q": ' + json.dumps(MINIMAL) + ', "q": ' + json.dumps(MINIMAL) + "}", 'queue "q": given more than once'),
    ('{"q": {"mapType": "NoJob", "maxWorkers": 1, "maxWorkers": 2, "submitter": {"plugin": "local"}}}',
     'queue "q": maxWorkers: given more than once'),
    ('{"q": {"mapType": "NoJob", "maxWorkers": 1, "submitter": {"plugin": "slurm", "partition": "a", '
     '"partition": "b"}}}', 'queue "q": submitter.partition: given more than once'),
])
def test_a_document_that_is_not_a_queue_object_or_repeats_a_key_is_refused(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_every_problem_of_every_queue_is_reported_at_once() -> None:
    document = {
        "fine": MINIMAL,
        "typos": queue(maxWorker=3, maxWorkers=None, submitter={"plugin": "slurm", "partiton": "x"}),
        # Its submitter is wrong, and the rules between its other fields are still checked.
        "limits": queue(maxWorkers=2, nQueueLimitWorker=3, maxNewWorkersPerCycle=4, nQueueLimitJob=1,
                        submitter={"plugin": "pbs"}),
        "bad name": queue(mapType="ManyToOne", resources={"cores": -1}),
    }
    assert problems(document) == [
        'queue "typos": maxWorkers: field required',
        'queue "typos": submitter.partition: field required',
        'queue "typos": submitter.partiton: unknown key (did you mean "partition"?)',
        'queue "typos": maxWorker: unknown key (did you mean "maxWorkers"?)',
        'queue "limits": submitter.plugin: unknown plugin "pbs" (known: local, slurm, htcondor, kubernetes)',
        'queue "limits": nQueueLimitWorker: 3 is more than maxWorkers (2)',
        'queue "limits": maxNewWorkersPerCycle: 4 is more than maxWorkers (2)',
        'queue "limits": nQueueLimitJob: only for push queues (mapType OneToOne or ManyToOne); with NoJob the pilot '
        "fetches its own job",
        "queue \"bad name\": not a queue id: 1-64 letters, digits, '_', '-' or '.'",
        'queue "bad name": resources.cores: must be at least 1, not -1',
        'queue "bad name": nJobsPerWorker: field required with mapType ManyToOne',
    ]


def test_the_error_is_a_value_error_that_counts_its_problems() -> None:
    with pytest.raises(ValueError, match=r"^invalid queue configuration \(2 problems\):\n  queue \"q\": ") as raised:
        load_queue_config(json.dumps({"q": queue(maxWorkers=-1, submitter={})}))
    assert isinstance(raised.value, QueueConfigError) and len(raised.value.problems) == 2


@settings(max_examples=300, deadline=None)
@given(max_workers=st.integers(-2, 12), queue_limit=st.none() | st.integers(-2, 12),
       per_cycle=st.integers(-2, 12), map_type=st.sampled_from(["NoJob", "OneToOne", "ManyToOne"]),
       job_limit=st.none() | st.integers(-2, 12), per_worker=st.none() | st.integers(0, 4))
def test_a_queue_loads_exactly_when_its_limits_keep_the_rules(
    max_workers: int, queue_limit: int | None, per_cycle: int, map_type: str, job_limit: int | None,
    per_worker: int | None,
) -> None:
    body = queue(mapType=map_type, maxWorkers=max_workers, nQueueLimitWorker=queue_limit,
                 maxNewWorkersPerCycle=per_cycle, nQueueLimitJob=job_limit, nJobsPerWorker=per_worker)
    valid = (
        max_workers >= 0 and 0 <= per_cycle <= max_workers
        and (queue_limit is None or 0 <= queue_limit <= max_workers)
        and (job_limit is None or (job_limit >= 0 and map_type != "NoJob"))
        and (per_worker is not None and per_worker >= 2 if map_type == "ManyToOne" else per_worker is None)
    )
    text = json.dumps({"q": body})
    if valid:
        config = load_queue_config(text)["q"]
        assert (config.max_workers, config.n_queue_limit_worker, config.max_new_workers_per_cycle,
                config.n_queue_limit_job, config.n_jobs_per_worker) == (
            max_workers, queue_limit, per_cycle, job_limit, per_worker or 1)
    else:
        assert problems(text) and all(problem.startswith('queue "q": ') for problem in problems(text))


# ---- the schema ------------------------------------------------------------------------------------------


def test_the_schema_is_a_json_schema_the_example_keeps() -> None:
    schema = queue_config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(json.loads(EXAMPLE.read_text()))) == []
    assert set(schema["$defs"]) == {"Queue", "Resources", "Messenger", "LocalSubmitter", "SlurmSubmitter",
                                    "HTCondorSubmitter", "KubernetesSubmitter"}
    assert schema["$defs"]["Queue"]["required"] == ["mapType", "maxWorkers", "submitter"]
    assert schema["$defs"]["Queue"]["properties"]["maxWorkers"]["title"] == "maxWorkers"


@pytest.mark.parametrize("document", [
    {"q": queue(maxWorker=3)},
    {"q": queue(submitter={"plugin": "slurm"})},
    {"q": queue(submitter={"plugin": "condor"})},
    {"bad name": MINIMAL},
    {"q": queue(maxWorkers=-1)},
])
def test_the_schema_refuses_what_the_loader_refuses_field_by_field(document: dict[str, Any]) -> None:
    assert list(jsonschema.Draft202012Validator(queue_config_schema()).iter_errors(document))
    assert problems(document)


def test_the_shipped_schema_is_the_loaders() -> None:
    shipped = EXAMPLE.with_name("queueconfig.schema.json")
    assert json.loads(shipped.read_text()) == queue_config_schema(), (
        f"{shipped} is stale; write it again with: python -c 'import json; from harvester_svc.domain.queue_config "
        f"import queue_config_schema; print(json.dumps(queue_config_schema(), indent=2))' > {shipped.name}")


@pytest.mark.parametrize("messenger", ["grpc", "relay"])
def test_a_push_queue_needs_the_shared_files_messenger(messenger: str) -> None:
    """Harvester's own stream holds the jobs it fetched: only it can report on them."""
    text = json.dumps({"q": {"mapType": "OneToOne", "maxWorkers": 2, "submitter": {"plugin": "local"},
                             "messenger": {"type": messenger}}})
    with pytest.raises(QueueConfigError, match="a push queue .mapType OneToOne. needs shared_files"):
        load_queue_config(text)
    default = load_queue_config(json.dumps({"q": {"mapType": "OneToOne", "maxWorkers": 2,
                                                  "submitter": {"plugin": "local"}}}))["q"]
    assert default.messenger == MessengerType.SHARED_FILES
