"""Harvester's Kubernetes plugin, with the official client's own types: the V1Job and V1Secret it
builds (serialized by the client, as they go over the wire), the V1Job/V1Pod objects it reads,
the ApiExceptions it meets. No cluster runs here, so BatchV1Api and CoreV1Api are stand-ins that
keep objects, select them by label and record every call."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harvester_svc.domain.kubernetes import KubernetesQueueConfig, job_name, label_value, workers_selector
from harvester_svc.domain.workers import SubmittedWorker, WorkerSpec, WorkerState, worker_id_of
from harvester_svc.logic.plugins.base import PluginError
from harvester_svc.logic.plugins.kubernetes import KubernetesApis, KubernetesPlugin, connect, job_for, report_for

INSTANCE = "harvester-test"
WIRE = k8s.ApiClient()
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def api_exception(status: int, reason: str, message: str) -> ApiException:
    return ApiException(status=status, reason=reason, body=json.dumps(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": status}))


def selected(selector: str | None, labels: dict[str, str] | None) -> bool:
    """Equality (`k=v`) and set (`k in (a,b)`) requirements, ANDed, as the API server reads them."""
    labels = labels or {}
    requirements, depth, start = [], 0, 0
    text = selector or ""
    for position, character in enumerate(text):
        depth += character == "("
        depth -= character == ")"
        if character == "," and depth == 0:
            requirements.append(text[start:position])
            start = position + 1
    requirements.append(text[start:])
    for requirement in filter(None, requirements):
        if " in (" in requirement:
            key, _, values = requirement.partition(" in (")
            if labels.get(key) not in values.rstrip(")").split(","):
                return False
        else:
            key, _, value = requirement.partition("=")
            if labels.get(key) != value:
                return False
    return True


@dataclass
class Cluster:
    """One namespace's Jobs, pods and Secrets, through the two APIs the plugin calls."""

    jobs: dict[str, k8s.V1Job] = field(default_factory=dict)
    pods: list[k8s.V1Pod] = field(default_factory=list)
    secrets: dict[str, k8s.V1Secret] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Method name → exception it raises.
    failures: dict[str, Exception] = field(default_factory=dict)

    def _call(self, method: str, **arguments: Any) -> None:
        arguments.pop("_request_timeout", None)
        self.calls.append((method, arguments))
        if method in self.failures:
            raise self.failures[method]

    # BatchV1Api
    def create_namespaced_job(self, namespace: str, body: k8s.V1Job, **options: Any) -> k8s.V1Job:
        self._call("create_namespaced_job", namespace=namespace, body=body, **options)
        assert body.metadata is not None and body.metadata.name
        if body.metadata.name in self.jobs:
            raise api_exception(409, "Conflict", f'jobs.batch "{body.metadata.name}" already exists')
        self.jobs[body.metadata.name] = body
        return body

    def list_namespaced_job(self, namespace: str, label_selector: str | None = None, **options: Any) -> k8s.V1JobList:
        self._call("list_namespaced_job", namespace=namespace, label_selector=label_selector, **options)
        return k8s.V1JobList(items=[job for job in self.jobs.values()
                                    if job.metadata is not None and selected(label_selector, job.metadata.labels)])

    def delete_namespaced_job(self, name: str, namespace: str, **options: Any) -> k8s.V1Status:
        self._call("delete_namespaced_job", name=name, namespace=namespace, **options)
        if self.jobs.pop(name, None) is None:
            raise api_exception(404, "Not Found", f'jobs.batch "{name}" not found')
        return k8s.V1Status(status="Success")

    # CoreV1Api
    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None, **options: Any) -> k8s.V1PodList:
        self._call("list_namespaced_pod", namespace=namespace, label_selector=label_selector, **options)
        return k8s.V1PodList(items=[pod for pod in self.pods
                                    if pod.metadata is not None and selected(label_selector, pod.metadata.labels)])

    def create_namespaced_secret(self, namespace: str, body: k8s.V1Secret, **options: Any) -> k8s.V1Secret:
        self._call("create_namespaced_secret", namespace=namespace, body=body, **options)
        assert body.metadata is not None and body.metadata.name
        if body.metadata.name in self.secrets:
            raise api_exception(409, "Conflict", f'secrets "{body.metadata.name}" already exists')
        self.secrets[body.metadata.name] = body
        return body

    def replace_namespaced_secret(self, name: str, namespace: str, body: k8s.V1Secret,
                                  **options: Any) -> k8s.V1Secret:
        self._call("replace_namespaced_secret", name=name, namespace=namespace, body=body, **options)
        if name not in self.secrets:
            raise api_exception(404, "Not Found", f'secrets "{name}" not found')
        self.secrets[name] = body
        return body

    def delete_namespaced_secret(self, name: str, namespace: str, **options: Any) -> k8s.V1Status:
        self._call("delete_namespaced_secret", name=name, namespace=namespace, **options)
        if self.secrets.pop(name, None) is None:
            raise api_exception(404, "Not Found", f'secrets "{name}" not found')
        return k8s.V1Status(status="Success")

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]


def plugin_on(cluster: Cluster) -> KubernetesPlugin:
    return KubernetesPlugin(instance=INSTANCE, api_factory=lambda config: KubernetesApis(batch=cluster, core=cluster))


PARAMETERS = {"image": "registry.example/panda/pilot:3.1", "namespace": "panda-pilots",
              "service_account": "panda-pilot", "ttl_seconds_after_finished": 3600}


def wid(worker: int | str) -> str:
    """Worker `worker` of this instance (its id as harvester makes it), or a whole id."""
    return worker_id_of(INSTANCE, worker) if isinstance(worker, int) else worker


def spec(worker: int | str = 42, tmp_path: Path | None = None, **overrides: Any) -> WorkerSpec:
    token_file = tmp_path / "token" if tmp_path else Path("/nonexistent/token")
    values: dict[str, Any] = {
        "worker_id": wid(worker), "queue_id": "CERN-k8s_pilots", "access_point": f"/tmp/ap/{worker}",
        "cores": 8, "memory_mb": 16000, "walltime_seconds": 86400,
        "pilot_command": ("panda", "pilot", "--queue", "CERN-k8s_pilots"),
        "environment": {"PANDA_SERVER": "server.example:25080", "PANDA_TOKEN_FILE": str(token_file)},
        "parameters": PARAMETERS,
    }
    values.update(overrides)
    return WorkerSpec(**values)


def submitted(worker: int | str, parameters: dict[str, Any] | None = None, access_point: str = "/tmp/none"
              ) -> SubmittedWorker:
    return SubmittedWorker(worker_id=wid(worker), queue_id="CERN-k8s_pilots", batch_id=job_name(wid(worker)),
                           access_point=access_point, parameters=parameters or PARAMETERS)


# ---- the Job and its Secret ---------------------------------------------------------------


def test_the_job_built_for_a_worker() -> None:
    worker = spec()
    job = job_for(worker, KubernetesQueueConfig.from_parameters(worker.parameters), INSTANCE)
    assert isinstance(job, k8s.V1Job)
    labels = {"app.kubernetes.io/managed-by": "panda-harvester", "harvester.panda/instance": INSTANCE,
              "harvester.panda/worker-id": "harvester-test-42", "harvester.panda/queue": "CERN-k8s_pilots"}
    annotations = {"harvester.panda/worker-id": "harvester-test-42"}
    assert WIRE.sanitize_for_serialization(job) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "harvester-test-42", "namespace": "panda-pilots", "labels": labels,
                     "annotations": annotations},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 86400,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "panda-pilot",
                    "automountServiceAccountToken": False,
                    "containers": [{
                        "name": "pilot",
                        "image": "registry.example/panda/pilot:3.1",
                        "command": ["panda", "pilot", "--queue", "CERN-k8s_pilots"],
                        "env": [{"name": "PANDA_SERVER", "value": "server.example:25080"},
                                {"name": "PANDA_TOKEN_FILE", "value": "/var/run/secrets/panda/token"}],
                        "resources": {"requests": {"cpu": "8", "memory": "16000Mi"},
                                      "limits": {"cpu": "8", "memory": "16000Mi"}},
                        "volumeMounts": [{"name": "panda-token", "mountPath": "/var/run/secrets/panda",
                                          "readOnly": True}],
                    }],
                    "volumes": [{"name": "panda-token", "secret": {"secretName": "harvester-test-42-token"}}],
                },
            },
        },
    }


def test_a_job_with_a_shared_secret_no_walltime_and_no_token() -> None:
    parameters = {**PARAMETERS, "token_secret": "panda-pilot-token", "token_mount_path": "/etc/panda"}
    shared = WIRE.sanitize_for_serialization(job_for(
        spec(parameters=parameters, walltime_seconds=0), KubernetesQueueConfig.from_parameters(parameters), INSTANCE))
    pod = shared["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "panda-token", "secret": {"secretName": "panda-pilot-token"}}]
    assert {"name": "PANDA_TOKEN_FILE", "value": "/etc/panda/token"} in pod["containers"][0]["env"]
    assert "activeDeadlineSeconds" not in shared["spec"]

    bare = WIRE.sanitize_for_serialization(job_for(
        spec(environment={"PANDA_SERVER": "s:1"}), KubernetesQueueConfig.from_parameters(PARAMETERS), INSTANCE))
    assert "volumes" not in bare["spec"]["template"]["spec"]
    assert bare["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "PANDA_SERVER", "value": "s:1"}]


# Kubernetes' own patterns (k8s.io/apimachinery/pkg/util/validation): a DNS-1123 label (Job
# names, copied into their pods' `job-name` label) and a label value, both at most 63 long.
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LONG_HARVESTER = "Long_Harvester.Name-" + "x" * 44  # 64 characters, the longest a harvester id may be
LONG_ID = worker_id_of(LONG_HARVESTER, 10**62)  # 128 characters, the longest a worker id may be


def valid_names(worker_id: str) -> bool:
    name, value = job_name(worker_id), label_value(worker_id)
    return (len(name) <= 63 and bool(DNS_1123_LABEL.fullmatch(name))
            and len(value) <= 63 and bool(LABEL_VALUE.fullmatch(value)))


# The names are pinned: a Job is found again by its worker's label value, by harvesters of later
# versions too, so a change of the derivation must be seen here first.
@pytest.mark.parametrize(("worker_id", "name", "value"), [
    # Taken as they are where Kubernetes takes them.
    ("harvester-17", "harvester-17", "harvester-17"),
    ("site_A.cern-203", "site-a-cern-203-56a877834449a9a2", "site_A.cern-203"),
    ("CERN_Harvester.01-12", "cern-harvester-01-12-fd39a1de95cb5878", "CERN_Harvester.01-12"),
    # Upper case, '_' and '.' out of the name; a start no label takes; too long for either.
    ("Site-1", "site-1-c828b91c6f5d79c2", "Site-1"),
    ("_-_.5", "5-b1983850fa446906", "5-b1983850fa446906"),
    ("x" * 64 + "-123456789", "x" * 46 + "-02757c45ed593fa8", "x" * 46 + "-02757c45ed593fa8"),
])
def test_names_and_label_values_derived_from_worker_ids(worker_id: str, name: str, value: str) -> None:
    assert (job_name(worker_id), label_value(worker_id)) == (name, value)
    assert valid_names(worker_id)


def test_names_and_label_values_are_valid_for_every_id() -> None:
    ids = [LONG_ID, worker_id_of(LONG_HARVESTER, 1), "_.x-1", "A.-_-9", "-1", ".", "", "9" * 128, "a" * 63 + "-",
           worker_id_of("HARVESTER", 3), worker_id_of("h.a_r-v", 12345678901234)]
    assert len(LONG_ID) == 128
    assert [worker_id for worker_id in ids if not valid_names(worker_id)] == []


def test_distinct_ids_get_distinct_names_and_label_values() -> None:
    ids = [
        # Only in case, or in '_', '.' and '-': the same once made a name.
        "site-a-1", "Site-a-1", "SITE-A-1", "site_a-1", "site.a-1", "site_a.1", "site__a-1",
        # Long ids alike up to where a name is cut.
        worker_id_of(LONG_HARVESTER, 1), worker_id_of(LONG_HARVESTER, 2), LONG_ID,
        worker_id_of(LONG_HARVESTER.lower(), 1),
    ]
    names = [job_name(worker_id) for worker_id in ids]
    values = [label_value(worker_id) for worker_id in ids]
    assert len(set(names)) == len(ids) and len(set(values)) == len(ids)
    # The same id, the same names: every time, so a Job is found again.
    assert [job_name(worker_id) for worker_id in ids] == names


def test_workers_whose_ids_are_alike_get_their_own_jobs_found_and_killed_by_their_own_names(
        tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    ids = ["site_A.cern-1", "site-a-cern-1", "Site_A.cern-1", LONG_ID, worker_id_of(LONG_HARVESTER, 2)]
    cluster = Cluster()
    outcomes = plugin_on(cluster).submit([spec(worker_id, tmp_path) for worker_id in ids])

    assert [o.error for o in outcomes] == [""] * len(ids)
    assert [o.batch_id for o in outcomes] == [job_name(worker_id) for worker_id in ids] == list(cluster.jobs)
    assert len(cluster.secrets) == len(ids)
    for worker_id, k8s_job in zip(ids, cluster.jobs.values(), strict=True):
        wire = WIRE.sanitize_for_serialization(k8s_job)
        # The whole id, as it is, beside its derived names.
        assert wire["metadata"]["annotations"] == {"harvester.panda/worker-id": worker_id}
        assert wire["spec"]["template"]["metadata"]["annotations"] == {"harvester.panda/worker-id": worker_id}
        assert wire["metadata"]["labels"]["harvester.panda/worker-id"] == label_value(worker_id)

    for worker_id, k8s_job in zip(ids, cluster.jobs.values(), strict=True):
        k8s_job.status = k8s.V1JobStatus(succeeded=1) if worker_id == "site-a-cern-1" else k8s.V1JobStatus(active=1)
    cluster.pods = [pod("Site_A.cern-1", state=k8s.V1ContainerState(running=k8s.V1ContainerStateRunning()))]
    workers = [SubmittedWorker(worker_id, "CERN-k8s_pilots", outcome.batch_id, "/tmp/none", PARAMETERS)
               for worker_id, outcome in zip(ids, outcomes, strict=True)]
    reports = plugin_on(cluster).check(workers)
    assert [(r.worker_id, r.state) for r in reports] == [
        (ids[0], WorkerState.SUBMITTED), (ids[1], WorkerState.FINISHED), (ids[2], WorkerState.RUNNING),
        (ids[3], WorkerState.SUBMITTED), (ids[4], WorkerState.SUBMITTED)]

    assert plugin_on(cluster).kill([workers[0], workers[3]]) == ["", ""]
    assert list(cluster.jobs) == [job_name(ids[1]), job_name(ids[2]), job_name(ids[4])]


def test_submit_writes_the_token_secret_then_the_job(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("eyJ.pilot.token\n")
    cluster = Cluster()
    outcomes = plugin_on(cluster).submit([spec(42, tmp_path)])

    assert [(o.worker_id, o.batch_id, o.error) for o in outcomes] == [("harvester-test-42", "harvester-test-42", "")]
    assert cluster.methods() == ["create_namespaced_secret", "create_namespaced_job"]
    secret = WIRE.sanitize_for_serialization(cluster.secrets["harvester-test-42-token"])
    assert secret == {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "harvester-test-42-token", "namespace": "panda-pilots", "labels": {
            "app.kubernetes.io/managed-by": "panda-harvester", "harvester.panda/instance": INSTANCE,
            "harvester.panda/worker-id": "harvester-test-42", "harvester.panda/queue": "CERN-k8s_pilots"},
            "annotations": {"harvester.panda/worker-id": "harvester-test-42"}},
        "stringData": {"token": "eyJ.pilot.token"},
    }
    assert cluster.calls[1][1]["namespace"] == "panda-pilots"


def test_a_shared_secret_is_written_once_per_submission_and_replaced_when_there(tmp_path: Path) -> None:
    parameters = {**PARAMETERS, "token_secret": "panda-pilot-token"}
    cluster = Cluster()
    cluster.secrets["panda-pilot-token"] = k8s.V1Secret(string_data={"token": "old"})
    token = {"PANDA_TOKEN": "fresh-token"}
    outcomes = plugin_on(cluster).submit([spec(1, parameters=parameters, environment=token),
                                          spec(2, parameters=parameters, environment=token)])

    assert [o.batch_id for o in outcomes] == ["harvester-test-1", "harvester-test-2"]
    assert cluster.methods() == ["create_namespaced_secret", "replace_namespaced_secret",
                                 "create_namespaced_job", "create_namespaced_job"]
    assert cluster.secrets["panda-pilot-token"].string_data == {"token": "fresh-token"}
    # A shared Secret is no single worker's.
    metadata = cluster.secrets["panda-pilot-token"].metadata
    assert metadata is not None and metadata.labels is not None
    assert "harvester.panda/worker-id" not in metadata.labels and not metadata.annotations
    # The token itself never goes into the Job.
    env = WIRE.sanitize_for_serialization(cluster.jobs["harvester-test-1"])["spec"]["template"]["spec"]
    assert "fresh-token" not in json.dumps(env)


def test_an_api_exception_on_create_is_the_workers_outcome(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    cluster = Cluster(failures={"create_namespaced_job": api_exception(
        403, "Forbidden", 'jobs.batch is forbidden: exceeded quota: pilots, requested: cpu=8')})
    outcomes = plugin_on(cluster).submit([spec(1, tmp_path), spec(2, tmp_path)])

    assert [o.batch_id for o in outcomes] == ["", ""]
    assert outcomes[0].error == ("create Job harvester-test-1: 403 Forbidden: jobs.batch is forbidden: "
                                 "exceeded quota: pilots, requested: cpu=8")
    # The worker's own Secret does not outlive its refused Job.
    assert cluster.secrets == {}


def test_a_token_that_cannot_be_read_fails_that_worker_only(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    cluster = Cluster()
    outcomes = plugin_on(cluster).submit([spec(1), spec(2, tmp_path)])
    assert not outcomes[0].batch_id and "cannot read the token file" in outcomes[0].error
    assert outcomes[1].batch_id == "harvester-test-2"
    assert list(cluster.jobs) == ["harvester-test-2"]


@pytest.mark.parametrize(("parameters", "complaint"), [
    ({"namespace": "pilots"}, "image is missing"),
    ({**PARAMETERS, "namespace": "Panda Pilots"}, "DNS-1123"),
    ({**PARAMETERS, "ttl_seconds_after_finished": -1}, "ttl_seconds_after_finished"),
    ({**PARAMETERS, "token_mount_path": "relative"}, "absolute"),
])
def test_a_broken_queue_configuration_is_the_workers_outcome(parameters: dict[str, Any], complaint: str) -> None:
    cluster = Cluster()
    [outcome] = plugin_on(cluster).submit([spec(parameters=parameters, environment={})])
    assert not outcome.batch_id and complaint in outcome.error
    assert cluster.calls == []


# ---- the state mapping --------------------------------------------------------------------


def job(worker: int | str = 42, **status: Any) -> k8s.V1Job:
    built = job_for(spec(worker), KubernetesQueueConfig.from_parameters(PARAMETERS), INSTANCE)
    built.status = k8s.V1JobStatus(start_time=T0, **status)
    return built


def pod(worker: int | str = 42, phase: str = "Running", state: k8s.V1ContainerState | None = None,
        node: str | None = "node-7") -> k8s.V1Pod:
    name = job_name(wid(worker))
    template = job_for(spec(worker), KubernetesQueueConfig.from_parameters(PARAMETERS), INSTANCE)
    assert template.spec is not None and template.spec.template.metadata is not None
    labels = {**(template.spec.template.metadata.labels or {}), "batch.kubernetes.io/job-name": name,
              "job-name": name}
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=f"{name}-x7k2p", labels=labels),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="pilot")], node_name=node),
        status=k8s.V1PodStatus(phase=phase, container_statuses=[k8s.V1ContainerStatus(
            name="pilot", image="registry.example/panda/pilot:3.1", image_id="", ready=phase == "Running",
            restart_count=0, state=state)] if state else None),
    )


def waiting(reason: str, message: str = "") -> k8s.V1ContainerState:
    return k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason=reason, message=message or None))


def terminated(exit_code: int, reason: str) -> k8s.V1ContainerState:
    return k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code, reason=reason))


def condition(kind: str, reason: str, message: str) -> k8s.V1JobCondition:
    return k8s.V1JobCondition(type=kind, status="True", reason=reason, message=message,
                              last_transition_time=datetime(2026, 3, 2, tzinfo=UTC))


MAPPINGS = {
    "created, no pod yet": (job(), [], WorkerState.SUBMITTED, ""),
    "pod pending": (job(active=1), [pod(phase="Pending", state=waiting("ContainerCreating"), node=None)],
                    WorkerState.SUBMITTED, ""),
    "pod running": (job(active=1, ready=1), [pod(state=k8s.V1ContainerState(
        running=k8s.V1ContainerStateRunning(started_at=T0)))], WorkerState.RUNNING, ""),
    "node lost": (job(active=1), [pod(phase="Unknown")], WorkerState.RUNNING, ""),
    "image cannot be pulled": (job(active=1), [pod(phase="Pending", state=waiting(
        "ImagePullBackOff", 'Back-off pulling image "registry.example/panda/pilot:3.1"'), node="node-7")],
        WorkerState.FAILED, 'ImagePullBackOff: Back-off pulling image "registry.example/panda/pilot:3.1"'),
    "succeeded": (job(succeeded=1, completion_time=T0, conditions=[condition("Complete", "", "")]),
                  [pod(phase="Succeeded", state=terminated(0, "Completed"))], WorkerState.FINISHED, ""),
    "succeeded, condition not yet written": (job(succeeded=1), [], WorkerState.FINISHED, ""),
    "pilot failed": (job(failed=1, conditions=[condition(
        "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]),
        [pod(phase="Failed", state=terminated(137, "OOMKilled"))], WorkerState.FAILED,
        "BackoffLimitExceeded: Job has reached the specified backoff limit"),
    "pod failed, condition not yet written": (job(failed=1), [pod(phase="Failed", state=terminated(1, "Error"))],
                                              WorkerState.FAILED, "Error (exit code 1)"),
    "walltime exceeded": (job(failed=1, conditions=[condition(
        "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]), [],
        WorkerState.FAILED, "DeadlineExceeded: Job was active longer than specified deadline"),
}


@pytest.mark.parametrize("case", list(MAPPINGS))
def test_each_job_status_maps_to_a_worker_state(case: str) -> None:
    k8s_job, pods, state, error = MAPPINGS[case]
    report = report_for(wid(42), k8s_job, pods)
    assert (report.worker_id, report.state, report.error) == (wid(42), state, error)


def test_a_report_carries_the_node_exit_code_and_times() -> None:
    report = report_for(wid(42), job(failed=1, conditions=[condition("Failed", "BackoffLimitExceeded", "limit")]),
                        [pod(phase="Failed", state=terminated(137, "OOMKilled"), node="node-3")])
    assert (report.node, report.exit_code, report.start_time, report.end_time) == (
        "node-3", 137, T0, datetime(2026, 3, 2, tzinfo=UTC))
    finished = report_for(wid(42), job(succeeded=1, completion_time=T0), [])
    assert finished.end_time == T0 and finished.exit_code is None


def test_check_lists_jobs_and_pods_by_label_and_misses_what_is_gone() -> None:
    cluster = Cluster()
    cluster.jobs = {"harvester-test-1": job(1, active=1), "harvester-test-2": job(2, succeeded=1),
                    # A Job labelled as another harvester instance's, in the same namespace.
                    "other-3": job(3, active=1)}
    other = cluster.jobs["other-3"].metadata
    assert other is not None and other.labels is not None
    other.labels = {**other.labels, "harvester.panda/instance": "other"}
    cluster.pods = [pod(1, phase="Running", state=k8s.V1ContainerState(running=k8s.V1ContainerStateRunning()))]
    reports = plugin_on(cluster).check([submitted(1), submitted(2), submitted(3)])

    assert [(r.worker_id, r.state) for r in reports] == [
        (wid(1), WorkerState.RUNNING), (wid(2), WorkerState.FINISHED), (wid(3), WorkerState.MISSED)]
    selector = workers_selector(INSTANCE, [wid(1), wid(2), wid(3)])
    assert selector == ("app.kubernetes.io/managed-by=panda-harvester,harvester.panda/instance=harvester-test,"
                        "harvester.panda/worker-id in (harvester-test-1,harvester-test-2,harvester-test-3)")
    assert cluster.calls == [
        ("list_namespaced_job", {"namespace": "panda-pilots", "label_selector": selector}),
        ("list_namespaced_pod", {"namespace": "panda-pilots", "label_selector": selector}),
    ]


def test_a_job_not_found_is_missed() -> None:
    [report] = plugin_on(Cluster()).check([submitted(9)])
    assert report.state == WorkerState.MISSED


def test_an_api_that_fails_fails_the_check() -> None:
    cluster = Cluster(failures={"list_namespaced_job": api_exception(503, "Service Unavailable", "etcd timeout")})
    with pytest.raises(PluginError, match="503 Service Unavailable: etcd timeout"):
        plugin_on(cluster).check([submitted(1)])


# ---- kill and clean -----------------------------------------------------------------------


def test_kill_deletes_the_job_in_the_background() -> None:
    cluster = Cluster(jobs={"harvester-test-1": job(1, active=1)})
    errors = plugin_on(cluster).kill([submitted(1), submitted(2)])

    assert errors == ["", ""]  # worker 2's Job was already gone
    assert cluster.calls == [
        ("delete_namespaced_job", {"name": "harvester-test-1", "namespace": "panda-pilots",
                                   "propagation_policy": "Background"}),
        ("delete_namespaced_job", {"name": "harvester-test-2", "namespace": "panda-pilots",
                                   "propagation_policy": "Background"}),
    ]
    assert cluster.jobs == {}


def test_kill_reports_a_refused_deletion() -> None:
    cluster = Cluster(failures={"delete_namespaced_job": api_exception(403, "Forbidden", "no delete")})
    assert plugin_on(cluster).kill([submitted(1)]) == ["delete Job harvester-test-1: 403 Forbidden: no delete"]


def test_clean_deletes_the_job_the_workers_secret_and_its_access_point(tmp_path: Path) -> None:
    access_point = tmp_path / "ap-1"
    access_point.mkdir()
    cluster = Cluster(jobs={"harvester-test-1": job(1, succeeded=1)},
                      secrets={"harvester-test-1-token": k8s.V1Secret(), "panda-pilot-token": k8s.V1Secret()})
    shared = {**PARAMETERS, "token_secret": "panda-pilot-token"}
    plugin_on(cluster).clean([submitted(1, access_point=str(access_point)), submitted(2, parameters=shared)])

    assert cluster.jobs == {}
    assert list(cluster.secrets) == ["panda-pilot-token"]
    assert not access_point.exists()
    assert cluster.methods() == ["delete_namespaced_job", "delete_namespaced_secret", "delete_namespaced_job"]


def test_clean_reports_what_it_could_not_delete() -> None:
    cluster = Cluster(failures={"delete_namespaced_secret": api_exception(403, "Forbidden", "no")})
    with pytest.raises(PluginError, match="worker harvester-test-1: delete harvester-test-1-token: 403 Forbidden: no"):
        plugin_on(cluster).clean([submitted(1)])


# ---- reaching the cluster -----------------------------------------------------------------


def test_a_queue_reaches_its_cluster_through_its_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "site", "cluster": {"server": "https://k8s.site.example:6443"}}],
        "users": [{"name": "harvester", "user": {"token": "sa-token"}}],
        "contexts": [{"name": "default", "context": {"cluster": "site", "user": "harvester"}},
                     {"name": "other", "context": {"cluster": "site", "user": "harvester", "namespace": "x"}}],
    }))
    apis = connect(KubernetesQueueConfig.from_parameters({**PARAMETERS, "kube_config": str(kubeconfig),
                                                          "context": "other"}))
    assert isinstance(apis.batch, k8s.BatchV1Api) and isinstance(apis.core, k8s.CoreV1Api)
    configuration = apis.batch.api_client.configuration
    assert configuration.host == "https://k8s.site.example:6443"
    assert configuration.api_key == {"BearerToken": "Bearer sa-token"}
    # The client's global default is left alone.
    assert k8s.Configuration.get_default().host != "https://k8s.site.example:6443"


def test_outside_a_cluster_without_a_kubeconfig_the_call_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(PluginError, match="could not be reached"):
        KubernetesPlugin(instance=INSTANCE).check([submitted(1)])
