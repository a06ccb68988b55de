"""Workers as Kubernetes Jobs, through the official client (`kubernetes`).

One Job per worker (`V1Job`, one pod, never retried, ended by Kubernetes at its walltime and
deleted a while after it ends), its pilot's token in a Secret (`V1Secret`) mounted into the pod.
Found back by label (one list of Jobs and one of pods per namespace, whatever the number of
workers), stopped by deleting the Job (its pod with it, in the background).

The API is reached through `api_factory`, which gives the client's `BatchV1Api` and `CoreV1Api`
for a queue's cluster (its kubeconfig, else the service account harvester runs under in the
cluster), so tests hand in objects that record calls, while what goes in and out of them (V1Job,
V1JobList, V1PodList, ApiException) stays the client's own."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from harvester_svc.domain.kubernetes import (
    TOKEN_KEY,
    WORKER_LABEL,
    JobCondition,
    JobObservation,
    KubernetesQueueConfig,
    PodObservation,
    QueueConfigError,
    container_environment,
    job_name,
    memory_quantity,
    report_from_observation,
    token_secret_name,
    token_source,
    worker_annotations,
    worker_labels,
    workers_selector,
)
from harvester_svc.domain.workers import BatchReport, SubmitOutcome, SubmittedWorker, WorkerSpec
from harvester_svc.logic.plugins.access_points import remove_access_point
from harvester_svc.logic.plugins.base import PluginError

__all__ = ["BatchApi", "CoreApi", "KubernetesApis", "KubernetesPlugin", "connect", "job_for", "report_for"]

log = logging.getLogger("panda.harvester")

CONTAINER = "pilot"
TOKEN_VOLUME = "panda-token"
# (connect, read) seconds for every API call: a cluster that does not answer fails the call, not the agent.
REQUEST_TIMEOUT = (10.0, 30.0)
# Workers per label selector: a selector travels in the URL.
SELECTOR_CHUNK = 200

Timeout = float | tuple[float, float] | None


class BatchApi(Protocol):
    """What the plugin calls of `kubernetes.client.BatchV1Api`."""

    def create_namespaced_job(self, namespace: str, body: k8s.V1Job, *,
                              _request_timeout: Timeout = None) -> k8s.V1Job: ...

    def list_namespaced_job(self, namespace: str, *, label_selector: str | None = None,
                            _request_timeout: Timeout = None) -> k8s.V1JobList: ...

    def delete_namespaced_job(self, name: str, namespace: str, *, propagation_policy: str | None = None,
                              _request_timeout: Timeout = None) -> object: ...


class CoreApi(Protocol):
    """What the plugin calls of `kubernetes.client.CoreV1Api`."""

    def create_namespaced_secret(self, namespace: str, body: k8s.V1Secret, *,
                                 _request_timeout: Timeout = None) -> k8s.V1Secret: ...

    def replace_namespaced_secret(self, name: str, namespace: str, body: k8s.V1Secret, *,
                                  _request_timeout: Timeout = None) -> k8s.V1Secret: ...

    def delete_namespaced_secret(self, name: str, namespace: str, *,
                                 _request_timeout: Timeout = None) -> object: ...

    def list_namespaced_pod(self, namespace: str, *, label_selector: str | None = None,
                            _request_timeout: Timeout = None) -> k8s.V1PodList: ...


@dataclass(frozen=True, slots=True)
class KubernetesApis:
    batch: BatchApi
    core: CoreApi


ApiFactory = Callable[[KubernetesQueueConfig], KubernetesApis]


@dataclass(frozen=True, slots=True)
class Member:
    """A worker of a call: its place in the call, and its queue's configuration."""

    index: int
    worker: SubmittedWorker
    config: KubernetesQueueConfig


def connect(config: KubernetesQueueConfig) -> KubernetesApis:
    """The cluster a queue names: its kubeconfig (and context), else the one harvester runs in.
    Each gets a configuration of its own; the client's global default is left alone."""
    configuration = k8s.Configuration()
    if config.kube_config:
        # persist_config=False: a refreshed credential is kept in memory, the file is not rewritten.
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=config.kube_config, context=config.context or None,
            client_configuration=configuration, persist_config=False)
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    api_client = k8s.ApiClient(configuration)
    return KubernetesApis(batch=k8s.BatchV1Api(api_client), core=k8s.CoreV1Api(api_client))


def job_for(worker: WorkerSpec, config: KubernetesQueueConfig, instance: str) -> k8s.V1Job:
    """The worker's Job: one pod, never restarted nor retried, ended by Kubernetes at the
    worker's walltime (`DeadlineExceeded`), deleted `ttl_seconds_after_finished` after it ends."""
    name = job_name(worker.worker_id)
    labels = worker_labels(instance, worker.worker_id, worker.queue_id)
    annotations = worker_annotations(worker.worker_id)
    resources = {"cpu": str(max(worker.cores, 1)), "memory": memory_quantity(max(worker.memory_mb, 1))}
    mounts: list[k8s.V1VolumeMount] = []
    volumes: list[k8s.V1Volume] = []
    if token_source(worker.environment) is not None:
        mounts.append(k8s.V1VolumeMount(name=TOKEN_VOLUME, mount_path=config.token_mount_path, read_only=True))
        volumes.append(k8s.V1Volume(name=TOKEN_VOLUME, secret=k8s.V1SecretVolumeSource(
            secret_name=token_secret_name(config, name))))
    container = k8s.V1Container(
        name=CONTAINER,
        image=config.image,
        command=list(worker.pilot_command),
        env=[k8s.V1EnvVar(name=key, value=value)
             for key, value in container_environment(worker.environment, config).items()],
        resources=k8s.V1ResourceRequirements(requests=dict(resources), limits=dict(resources)),
        volume_mounts=mounts or None,
    )
    pod = k8s.V1PodSpec(
        containers=[container],
        restart_policy="Never",
        service_account_name=config.service_account or None,
        automount_service_account_token=config.automount_service_account_token,
        volumes=volumes or None,
    )
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(name=name, namespace=config.namespace, labels=labels, annotations=annotations),
        spec=k8s.V1JobSpec(
            backoff_limit=0,
            active_deadline_seconds=worker.walltime_seconds or None,
            ttl_seconds_after_finished=config.ttl_seconds_after_finished,
            template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=labels, annotations=annotations),
                                           spec=pod),
        ),
    )


def secret_for(name: str, token: str, config: KubernetesQueueConfig, labels: dict[str, str],
               annotations: dict[str, str]) -> k8s.V1Secret:
    return k8s.V1Secret(
        api_version="v1", kind="Secret", type="Opaque",
        metadata=k8s.V1ObjectMeta(name=name, namespace=config.namespace, labels=labels,
                                  annotations=annotations or None),
        string_data={TOKEN_KEY: token},
    )


def report_for(worker_id: str, job: k8s.V1Job | None, pods: Sequence[k8s.V1Pod]) -> BatchReport:
    """What a worker's Job (None: not found) and its pods say of the worker."""
    if job is None:
        return report_from_observation(worker_id, None)
    status = job.status or k8s.V1JobStatus()
    observation = JobObservation(
        active=status.active or 0,
        succeeded=status.succeeded or 0,
        failed=status.failed or 0,
        conditions=tuple(
            JobCondition(type=c.type, status=c.status, reason=c.reason or "", message=c.message or "",
                         last_transition_time=c.last_transition_time)
            for c in status.conditions or ()
        ),
        start_time=status.start_time,
        completion_time=status.completion_time,
        pods=tuple(_pod_observation(pod) for pod in pods),
    )
    return report_from_observation(worker_id, observation)


def _pod_observation(pod: k8s.V1Pod) -> PodObservation:
    status = pod.status or k8s.V1PodStatus()
    pilot = next((c for c in status.container_statuses or () if c.name == CONTAINER), None)
    state = pilot.state if pilot is not None else None
    waiting = state.waiting if state is not None else None
    terminated = state.terminated if state is not None else None
    return PodObservation(
        phase=status.phase or "",
        node=(pod.spec.node_name or "") if pod.spec is not None else "",
        waiting_reason=(waiting.reason or "") if waiting is not None else "",
        waiting_message=(waiting.message or "") if waiting is not None else "",
        terminated_reason=(terminated.reason or "") if terminated is not None else "",
        exit_code=terminated.exit_code if terminated is not None else None,
    )


def api_error(error: Exception) -> str:
    """An API error in a line: its HTTP status and the API's own message (from its Status body)."""
    if not isinstance(error, ApiException):
        return f"{type(error).__name__}: {error}"
    message = ""
    if error.body:
        try:
            body = json.loads(error.body)
            message = body.get("message", "") if isinstance(body, dict) else ""
        except ValueError:
            message = str(error.body)[:1000]
    return f"{error.status} {error.reason}" + (f": {message}" if message else "")


def _not_found(error: Exception) -> bool:
    return isinstance(error, ApiException) and error.status == 404


class KubernetesPlugin:
    name = "kubernetes"

    def __init__(self, *, instance: str = "harvester", api_factory: ApiFactory = connect) -> None:
        # Labels every Job: which harvester's Jobs these are.
        self.instance = instance
        self._api_factory = api_factory
        self._apis: dict[tuple[str, str], KubernetesApis] = {}
        self._lock = threading.Lock()

    def _apis_for(self, config: KubernetesQueueConfig) -> KubernetesApis:
        """One client per cluster, kept: it holds the connection pool and the refreshed credentials."""
        with self._lock:
            apis = self._apis.get(config.cluster_key)
            if apis is None:
                apis = self._apis[config.cluster_key] = self._api_factory(config)
            return apis

    # ---- submit ---------------------------------------------------------------------------

    def submit(self, workers: Sequence[WorkerSpec]) -> list[SubmitOutcome]:
        outcomes: dict[int, SubmitOutcome] = {}
        # Shared token Secrets written in this call: once each, (namespace, name) → error (empty: written).
        shared_secrets: dict[tuple[str, str], str] = {}
        unreachable = 0
        for index, worker in enumerate(workers):
            try:
                config = KubernetesQueueConfig.from_parameters(worker.parameters)
                job = job_for(worker, config, self.instance)
            except ValueError as error:  # QueueConfigError, or the client's models refusing a value
                outcomes[index] = SubmitOutcome(worker.worker_id, error=f"queue configuration: {error}")
                continue
            try:
                apis = self._apis_for(config)
            except Exception as error:
                unreachable += 1
                outcomes[index] = SubmitOutcome(worker.worker_id, error=f"cluster: {error}")
                continue
            outcomes[index] = self._submit_one(apis, worker, config, job, shared_secrets)
        if workers and unreachable == len(workers):
            raise PluginError(f"no cluster could be reached: {outcomes[0].error}")
        return [outcomes[index] for index in range(len(workers))]

    def _submit_one(self, apis: KubernetesApis, worker: WorkerSpec, config: KubernetesQueueConfig,
                    job: k8s.V1Job, shared_secrets: dict[tuple[str, str], str]) -> SubmitOutcome:
        name = job_name(worker.worker_id)
        source = token_source(worker.environment)
        if source is not None:
            secret = token_secret_name(config, name)
            key = (config.namespace, secret)
            if not config.token_secret or key not in shared_secrets:
                error = self._write_token(apis, worker, config, secret, source.token or source.file,
                                          from_file=not source.token)
                if config.token_secret:
                    shared_secrets[key] = error
            else:
                error = shared_secrets[key]
            if error:
                return SubmitOutcome(worker.worker_id, error=f"token Secret {secret}: {error}")
        try:
            apis.batch.create_namespaced_job(namespace=config.namespace, body=job, _request_timeout=REQUEST_TIMEOUT)
        except Exception as error:
            # This worker only: its own Secret goes (a shared one stays for the others).
            log.warning("worker %s: Kubernetes refused its Job: %s", worker.worker_id, api_error(error))
            if source is not None and not config.token_secret:
                self._delete_quietly(apis.core.delete_namespaced_secret, token_secret_name(config, name), config)
            return SubmitOutcome(worker.worker_id, error=f"create Job {name}: {api_error(error)}")
        return SubmitOutcome(worker.worker_id, batch_id=name)

    def _write_token(self, apis: KubernetesApis, worker: WorkerSpec, config: KubernetesQueueConfig,
                     secret: str, token_or_file: str, *, from_file: bool) -> str:
        """Create the token's Secret, or replace it when it is there; an error message, empty on success."""
        try:
            token = Path(token_or_file).read_text().strip() if from_file else token_or_file
        except OSError as error:
            return f"cannot read the token file: {error}"
        labels = worker_labels(self.instance, worker.worker_id, worker.queue_id)
        annotations = worker_annotations(worker.worker_id)
        if config.token_secret:
            # Shared by the queue's workers: labelled and annotated as no single worker's.
            labels = {key: value for key, value in labels.items() if key != WORKER_LABEL}
            annotations = {}
        body = secret_for(secret, token, config, labels, annotations)
        try:
            try:
                apis.core.create_namespaced_secret(namespace=config.namespace, body=body,
                                                   _request_timeout=REQUEST_TIMEOUT)
            except ApiException as error:
                if error.status != 409:
                    raise
                apis.core.replace_namespaced_secret(name=secret, namespace=config.namespace, body=body,
                                                    _request_timeout=REQUEST_TIMEOUT)
        except Exception as error:
            return api_error(error)
        return ""

    # ---- check ----------------------------------------------------------------------------

    def check(self, workers: Sequence[SubmittedWorker]) -> list[BatchReport]:
        reports: dict[int, BatchReport] = {}
        for config, members in self._by_namespace(workers):
            apis = self._reach(config)
            jobs: dict[str, k8s.V1Job] = {}
            pods: dict[str, list[k8s.V1Pod]] = {}
            for chunk in _chunks([member.worker for member in members], SELECTOR_CHUNK):
                selector = workers_selector(self.instance, [worker.worker_id for worker in chunk])
                try:
                    job_list = apis.batch.list_namespaced_job(namespace=config.namespace, label_selector=selector,
                                                              _request_timeout=REQUEST_TIMEOUT)
                    pod_list = apis.core.list_namespaced_pod(namespace=config.namespace, label_selector=selector,
                                                             _request_timeout=REQUEST_TIMEOUT)
                except Exception as error:
                    raise PluginError(f"the Kubernetes API did not answer: {api_error(error)}") from error
                for job in job_list.items:
                    if job.metadata is not None and job.metadata.name:
                        jobs[job.metadata.name] = job
                for pod in pod_list.items:
                    labels = (pod.metadata.labels or {}) if pod.metadata is not None else {}
                    # Kubernetes labels a Job's pods with the Job's name.
                    owner = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
                    if owner:
                        pods.setdefault(owner, []).append(pod)
            for member in members:
                batch_id = member.worker.batch_id
                reports[member.index] = report_for(member.worker.worker_id, jobs.get(batch_id),
                                                   pods.get(batch_id, []))
        return [reports[index] for index in range(len(workers))]

    # ---- kill and clean -------------------------------------------------------------------

    def kill(self, workers: Sequence[SubmittedWorker]) -> list[str]:
        """Delete each worker's Job; its pod goes with it, in the background (the pilot gets its
        termination grace period)."""
        errors: dict[int, str] = {}
        for config, members in self._by_namespace(workers):
            apis = self._reach(config)
            for member in members:
                errors[member.index] = self._delete_job(apis, member.worker.batch_id, member.config)
        return [errors[index] for index in range(len(workers))]

    def clean(self, workers: Sequence[SubmittedWorker]) -> None:
        """Delete each ended worker's Job if Kubernetes has not yet, its own token Secret, and its
        access point."""
        failures: list[str] = []
        for config, members in self._by_namespace(workers):
            apis = self._reach(config)
            for member in members:
                worker, own = member.worker, member.config
                problems = [self._delete_job(apis, worker.batch_id, own)]
                if not own.token_secret and worker.batch_id:
                    problems.append(self._delete(apis.core.delete_namespaced_secret,
                                                 token_secret_name(own, worker.batch_id), own))
                try:
                    remove_access_point(worker.access_point)
                except OSError as error:
                    problems.append(str(error))
                failures += [f"worker {worker.worker_id}: {problem}" for problem in problems if problem]
        if failures:
            raise PluginError("; ".join(failures))

    def _delete_job(self, apis: KubernetesApis, name: str, config: KubernetesQueueConfig) -> str:
        if not name:
            return ""
        try:
            apis.batch.delete_namespaced_job(name=name, namespace=config.namespace, propagation_policy="Background",
                                             _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            return "" if _not_found(error) else f"delete Job {name}: {api_error(error)}"
        except Exception as error:
            raise PluginError(f"the Kubernetes API did not answer: {api_error(error)}") from error
        return ""

    def _delete(self, delete: Callable[..., object], name: str, config: KubernetesQueueConfig) -> str:
        try:
            delete(name=name, namespace=config.namespace, _request_timeout=REQUEST_TIMEOUT)
        except Exception as error:
            return "" if _not_found(error) else f"delete {name}: {api_error(error)}"
        return ""

    def _delete_quietly(self, delete: Callable[..., object], name: str, config: KubernetesQueueConfig) -> None:
        problem = self._delete(delete, name, config)
        if problem:
            log.warning("%s", problem)

    # ---- helpers --------------------------------------------------------------------------

    def _by_namespace(self, workers: Sequence[SubmittedWorker]) -> list[tuple[KubernetesQueueConfig, list[Member]]]:
        """The workers grouped by cluster and namespace (the group's first configuration reaches
        them), each with its place in the call and its own queue's configuration."""
        groups: dict[tuple[str, str, str], tuple[KubernetesQueueConfig, list[Member]]] = {}
        for index, worker in enumerate(workers):
            try:
                config = KubernetesQueueConfig.from_parameters(worker.parameters)
            except QueueConfigError as error:
                raise PluginError(f"worker {worker.worker_id}: queue configuration: {error}") from error
            groups.setdefault((*config.cluster_key, config.namespace), (config, []))[1].append(
                Member(index, worker, config))
        return list(groups.values())

    def _reach(self, config: KubernetesQueueConfig) -> KubernetesApis:
        try:
            return self._apis_for(config)
        except Exception as error:
            raise PluginError(f"the cluster could not be reached: {error}") from error


def _chunks(items: Sequence[SubmittedWorker], size: int) -> Iterator[Sequence[SubmittedWorker]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
