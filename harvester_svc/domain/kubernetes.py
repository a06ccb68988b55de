"""Kubernetes' side of a worker, as rules: a queue's Kubernetes parameters, the names and labels
of a worker's Job and token Secret, its resource quantities, and what a Job and its pods say of
the worker. No I/O; the plugin (logic/plugins/kubernetes.py) builds the client's own model
objects (V1Job, V1Secret) from these and reads the ones the API returns into the observations
below.

A worker's id is text (`{harvester_id}-{number}`, up to 128 characters, with '_', '.' and upper
case letters that no Kubernetes name takes), so its Job's name and its label are derived from
it: the id itself where Kubernetes takes it as it is, else a readable part of it followed by a
digest of the whole id, so two distinct ids never share a name. The id itself goes with them, in
an annotation, which takes any text."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from harvester_svc.domain.workers import BatchReport, WorkerState

__all__ = [
    "INSTANCE_LABEL", "MANAGED_BY", "MANAGED_BY_LABEL", "QUEUE_LABEL", "TOKEN_FILE_VARIABLE", "TOKEN_KEY",
    "TOKEN_VARIABLE", "WORKER_ANNOTATION", "WORKER_LABEL", "JobCondition", "JobObservation", "KubernetesQueueConfig",
    "PodObservation", "QueueConfigError", "TokenSource", "container_environment", "dns_label", "job_name",
    "label_value", "memory_quantity", "report_from_observation", "token_secret_name", "token_source",
    "worker_annotations", "worker_labels", "workers_selector",
]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "panda-harvester"
INSTANCE_LABEL = "harvester.panda/instance"
WORKER_LABEL = "harvester.panda/worker-id"
# The worker's id as it is (its label may be a derived one).
WORKER_ANNOTATION = "harvester.panda/worker-id"
QUEUE_LABEL = "harvester.panda/queue"
# The token's key in its Secret, and so its file name where the Secret is mounted.
TOKEN_KEY = "token"
# A container waiting for one of these reasons never starts by itself (Harvester fails such workers too).
STUCK_WAITING_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError",
    "CrashLoopBackOff",
})
_MAX_NAME = 63
# Hexadecimal digits of the SHA-256 digest that end a derived name: 64 bits, so that two of the
# millions of workers an instance runs sharing one is not to be expected.
_DIGEST_LENGTH = 16
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_TOKEN_MOUNT_PATH = "/var/run/secrets/panda"
_TTL_SECONDS_AFTER_FINISHED = 86400


class QueueConfigError(ValueError):
    """A queue's Kubernetes parameters that cannot make a Job; the message says which."""


@dataclass(frozen=True, slots=True)
class KubernetesQueueConfig:
    """A queue's Kubernetes parameters (`WorkerSpec.parameters`)."""

    image: str
    namespace: str = "default"
    service_account: str = ""
    # A kubeconfig file (and its context) to reach the cluster; empty: harvester runs in the
    # cluster, with its pod's service account.
    kube_config: str = ""
    context: str = ""
    # Finished Jobs (and their pods) are deleted by Kubernetes this long after they end; long
    # enough for the monitor to read how they ended, or they are MISSED.
    ttl_seconds_after_finished: int = _TTL_SECONDS_AFTER_FINISHED
    # The Secret holding the pilot's token: one named here, shared by the queue's workers and
    # refreshed at every submission (a mounted Secret follows its updates, so a running pilot
    # reads the fresh token); empty: one Secret per worker, deleted when the worker is cleaned.
    token_secret: str = ""
    # Where the token's Secret is mounted in the container; the pilot finds the token file
    # there (PANDA_TOKEN_FILE).
    token_mount_path: str = _TOKEN_MOUNT_PATH
    # The pod gets no Kubernetes API token of its own unless asked: the pilot needs none, and
    # its payload should not hold one.
    automount_service_account_token: bool = False

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> KubernetesQueueConfig:
        image = _string(parameters, "image", "")
        if not image:
            raise QueueConfigError("image is missing")
        namespace = _string(parameters, "namespace", "default")
        if dns_label(namespace) != namespace:
            raise QueueConfigError(f"namespace {namespace!r} is not a DNS-1123 label")
        token_secret = _string(parameters, "token_secret", "")
        if token_secret and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", token_secret):
            raise QueueConfigError(f"token_secret {token_secret!r} is not a DNS-1123 subdomain")
        mount_path = _string(parameters, "token_mount_path", _TOKEN_MOUNT_PATH)
        if not mount_path.startswith("/") or ":" in mount_path:
            raise QueueConfigError(f"token_mount_path {mount_path!r} is not an absolute path")
        ttl = parameters.get("ttl_seconds_after_finished", _TTL_SECONDS_AFTER_FINISHED)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise QueueConfigError("ttl_seconds_after_finished must be a whole number of seconds, not negative")
        automount = parameters.get("automount_service_account_token", False)
        if not isinstance(automount, bool):
            raise QueueConfigError("automount_service_account_token must be true or false")
        return cls(
            image=image, namespace=namespace, service_account=_string(parameters, "service_account", ""),
            kube_config=_string(parameters, "kube_config", ""), context=_string(parameters, "context", ""),
            ttl_seconds_after_finished=ttl, token_secret=token_secret, token_mount_path=mount_path.rstrip("/") or "/",
            automount_service_account_token=automount,
        )

    @property
    def cluster_key(self) -> tuple[str, str]:
        """Queues with the same key reach the same cluster with the same credentials."""
        return (self.kube_config, self.context)

    @property
    def token_file(self) -> str:
        return f"{self.token_mount_path.rstrip('/')}/{TOKEN_KEY}"


def _string(parameters: Mapping[str, object], key: str, default: str) -> str:
    value = parameters.get(key, default)
    if not isinstance(value, str):
        raise QueueConfigError(f"{key} must be a string")
    return value


def dns_label(text: str, limit: int = _MAX_NAME) -> str:
    """`text` as a DNS-1123 label: lower case letters, digits and '-', starting and ending with
    a letter or digit, at most `limit` characters."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower())[:limit]
    return label.strip("-")


def label_value(text: str) -> str:
    """`text` as a label value (letters, digits, '-', '_' and '.', starting and ending with a
    letter or digit, at most 63 characters): `text` itself when it is one, else a distinct one
    derived from it."""
    if len(text) <= _MAX_NAME and _LABEL_VALUE.fullmatch(text):
        return text
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    return _with_digest(text, re.sub(r"^[^A-Za-z0-9]+", "", readable))


def job_name(worker_id: str) -> str:
    """The worker's Job (its batch id), a DNS-1123 label: the worker's id when it is one (ids are
    unique across harvester instances), else a distinct one derived from it. Kubernetes copies it
    into a label of the Job's pods, which takes at most 63 characters."""
    if len(worker_id) <= _MAX_NAME and _DNS_LABEL.fullmatch(worker_id):
        return worker_id
    readable = re.sub(r"[^a-z0-9]+", "-", worker_id.lower())
    return _with_digest(worker_id, readable.lstrip("-"))


def _with_digest(text: str, readable: str) -> str:
    """`readable` (a cleaned `text`, starting with a letter or digit), cut to leave room for a
    digest of `text` itself, then that digest: readable, at most 63 characters, and distinct
    for distinct texts however alike their cleaned forms are (`A` and `a`, `_` and `-`)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:_DIGEST_LENGTH]
    stem = re.sub(r"[^A-Za-z0-9]+$", "", readable[:_MAX_NAME - _DIGEST_LENGTH - 1])
    return f"{stem}-{digest}" if stem else digest


def token_secret_name(config: KubernetesQueueConfig, job: str) -> str:
    """The queue's shared token Secret, or the worker's own, named after its Job."""
    return config.token_secret or f"{job}-token"


def worker_labels(instance: str, worker_id: str, queue_id: str) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        INSTANCE_LABEL: label_value(instance),
        WORKER_LABEL: label_value(worker_id),
        QUEUE_LABEL: label_value(queue_id),
    }


def worker_annotations(worker_id: str) -> dict[str, str]:
    return {WORKER_ANNOTATION: worker_id}


def workers_selector(instance: str, worker_ids: Sequence[str]) -> str:
    """A label selector for these workers' Jobs and pods, of this harvester instance."""
    values = ",".join(sorted({label_value(worker_id) for worker_id in worker_ids}))
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{INSTANCE_LABEL}={label_value(instance)},{WORKER_LABEL} in ({values})"


def memory_quantity(memory_mb: int) -> str:
    return f"{memory_mb}Mi"


# How a pilot is handed its token (panda_runtime.client.credentials reads them in this order).
TOKEN_VARIABLE = "PANDA_TOKEN"
TOKEN_FILE_VARIABLE = "PANDA_TOKEN_FILE"


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where the pilot's token is on this machine: the token itself, or the file holding it."""

    token: str = ""
    file: str = ""


def token_source(environment: Mapping[str, str]) -> TokenSource | None:
    """The token a worker's environment hands its pilot, if any. In a pod, neither a file on this
    machine nor a token in the pod's description will do: the plugin puts it in a Secret."""
    if environment.get(TOKEN_VARIABLE):
        return TokenSource(token=environment[TOKEN_VARIABLE])
    if environment.get(TOKEN_FILE_VARIABLE):
        return TokenSource(file=environment[TOKEN_FILE_VARIABLE])
    return None


def container_environment(environment: Mapping[str, str], config: KubernetesQueueConfig) -> dict[str, str]:
    """The pilot container's environment: the worker's, its token given as the mounted Secret's file."""
    variables = {name: value for name, value in environment.items()
                 if name not in (TOKEN_VARIABLE, TOKEN_FILE_VARIABLE)}
    if token_source(environment) is not None:
        variables[TOKEN_FILE_VARIABLE] = config.token_file
    return variables


@dataclass(frozen=True, slots=True)
class JobCondition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class PodObservation:
    """One pod of a worker's Job, as its status says."""

    phase: str
    node: str = ""
    # The pilot container's: why it waits, and how it ended.
    waiting_reason: str = ""
    waiting_message: str = ""
    terminated_reason: str = ""
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class JobObservation:
    """A worker's Job (its status) and its pods."""

    active: int = 0
    succeeded: int = 0
    failed: int = 0
    conditions: tuple[JobCondition, ...] = ()
    start_time: datetime | None = None
    completion_time: datetime | None = None
    pods: tuple[PodObservation, ...] = ()


def report_from_observation(worker_id: str, job: JobObservation | None) -> BatchReport:
    """What Kubernetes says of one worker.

    No Job → missed. A Job that failed (its `Failed` condition, e.g. `DeadlineExceeded` when it
    outlived its walltime, or a failed pod: the Job retries none) → failed, with the reason;
    one that succeeded → finished. While it is active: a pod running (or unknown) → running; a pod whose
    container cannot start (its image cannot be pulled, its configuration is wrong) → failed;
    otherwise (pods pending, or none made yet) → submitted."""
    if job is None:
        return BatchReport(worker_id, WorkerState.MISSED, error="the Job is gone")
    node = next((pod.node for pod in job.pods if pod.node), "")
    ended = next((pod for pod in job.pods if pod.phase in ("Succeeded", "Failed")), None)
    exit_code = ended.exit_code if ended else None

    def report(state: WorkerState, error: str = "", end_time: datetime | None = None) -> BatchReport:
        final = state in (WorkerState.FINISHED, WorkerState.FAILED)
        return BatchReport(worker_id, state, node=node, error=error, exit_code=exit_code if final else None,
                           start_time=job.start_time, end_time=end_time)

    failed = _condition(job, "Failed")
    if failed is not None:
        return report(WorkerState.FAILED, _reason(failed.reason, failed.message) or "the Job failed",
                      failed.last_transition_time or job.completion_time)
    complete = _condition(job, "Complete")
    if complete is not None or job.succeeded > 0:
        return report(WorkerState.FINISHED, end_time=job.completion_time)
    if job.failed > 0:
        return report(WorkerState.FAILED, _pod_failure(ended) or "the pilot's pod failed")
    # A pod Unknown was placed on a node that no longer reports: its pilot may well run on.
    if any(pod.phase in ("Running", "Unknown") for pod in job.pods):
        return report(WorkerState.RUNNING)
    stuck = next((pod for pod in job.pods if pod.waiting_reason in STUCK_WAITING_REASONS), None)
    if stuck is not None:
        return report(WorkerState.FAILED, _reason(stuck.waiting_reason, stuck.waiting_message))
    return report(WorkerState.SUBMITTED)


def _condition(job: JobObservation, kind: str) -> JobCondition | None:
    return next((c for c in job.conditions if c.type == kind and c.status == "True"), None)


def _reason(reason: str, message: str) -> str:
    return f"{reason}: {message}" if reason and message else reason or message


def _pod_failure(pod: PodObservation | None) -> str:
    if pod is None:
        return ""
    text = pod.terminated_reason or "the pilot's pod failed"
    return f"{text} (exit code {pod.exit_code})" if pod.exit_code is not None else text
