"""Workers as HTCondor jobs, through HTCondor's own Python bindings (`htcondor2`, `classad2`).

One job per worker, described by an `htcondor2.Submit` built from the domain's submit commands
(harvester_svc/domain/htcondor.py) and queued with `Schedd.submit`; found back with
`Schedd.query`, then `Schedd.history` for the jobs that left the queue, by the worker's custom
attribute; stopped with `Schedd.act(JobAction.Remove, …)`. The schedd is the one a queue's
parameters name (`pool`, `schedd`, found with `Collector.locate`), else this machine's.

The schedd is reached through `schedd_factory`, so tests hand in an object that records calls,
while what goes in and out of it (Submit, SubmitResult, ClassAds) stays the bindings' own."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import htcondor2

from harvester_svc.domain.htcondor import (
    JOB_AD_PROJECTION,
    WORKER_ATTRIBUTE,
    HTCondorQueueConfig,
    JobStatus,
    SubmitDescriptionError,
    batch_id_of,
    report_from_job_ad,
    submit_commands,
    workers_constraint,
)
from harvester_svc.domain.workers import BatchReport, SubmitOutcome, SubmittedWorker, WorkerSpec, WorkerState
from harvester_svc.logic.plugins.access_points import remove_access_point
from harvester_svc.logic.plugins.base import PluginError

__all__ = ["HTCondorPlugin", "ScheddClient", "locate_schedd"]

log = logging.getLogger("panda.harvester")

# The bindings keep process-wide state (configuration, security sessions) and do not say they
# may be called from several threads at once; Harvester serializes its calls too.
_bindings_lock = threading.RLock()


class ScheddClient(Protocol):
    """What the plugin calls of `htcondor2.Schedd`, with the bindings' own argument names."""

    def submit(self, description: htcondor2.Submit) -> htcondor2.SubmitResult: ...

    def query(self, constraint: str, projection: list[str]) -> list[Mapping[str, object]]: ...

    def history(self, constraint: str, projection: list[str], match: int) -> list[Mapping[str, object]]: ...

    def act(self, action: htcondor2.JobAction, job_spec: str | list[str], reason: str) -> Any: ...


ScheddFactory = Callable[[HTCondorQueueConfig], ScheddClient]


def locate_schedd(config: HTCondorQueueConfig) -> ScheddClient:
    """The schedd a queue names: asked of its pool's collector, else this machine's own."""
    if not config.pool and not config.schedd:
        schedd: ScheddClient = htcondor2.Schedd()
        return schedd
    collector = htcondor2.Collector(config.pool or None)
    location = collector.locate(htcondor2.DaemonType.Schedd, config.schedd or None)
    if location is None:
        raise PluginError(f"no schedd {config.schedd or '(local)'} in the pool {config.pool or '(local)'}")
    located: ScheddClient = htcondor2.Schedd(location)
    return located


class HTCondorPlugin:
    name = "htcondor"

    def __init__(self, *, instance: str = "harvester", schedd_factory: ScheddFactory = locate_schedd,
                 find_executable: Callable[[str], str | None] = shutil.which) -> None:
        # Written into every job (`harvesterID`): which harvester's jobs these are in a shared schedd.
        self.instance = instance
        self._schedd_factory = schedd_factory
        self._find_executable = find_executable

    # ---- submit ---------------------------------------------------------------------------

    def submit(self, workers: Sequence[WorkerSpec]) -> list[SubmitOutcome]:
        outcomes: dict[int, SubmitOutcome] = {}
        groups: dict[tuple[str, str], list[tuple[int, HTCondorQueueConfig, htcondor2.Submit]]] = {}
        for index, worker in enumerate(workers):
            try:
                config = HTCondorQueueConfig.from_parameters(worker.parameters)
                description = self.submit_description(worker, config)
                os.makedirs(worker.access_point, exist_ok=True)
            except (SubmitDescriptionError, OSError) as error:
                outcomes[index] = SubmitOutcome(worker.worker_id, error=str(error))
                continue
            groups.setdefault(config.schedd_key, []).append((index, config, description))

        unreachable = 0
        for members in groups.values():
            try:
                with _bindings_lock:
                    schedd = self._schedd_factory(members[0][1])
            except Exception as error:
                # Every worker of this schedd failed; nothing was queued for them.
                unreachable += len(members)
                for index, _, _ in members:
                    outcomes[index] = SubmitOutcome(workers[index].worker_id, error=f"schedd: {error}")
                continue
            for index, _, description in members:
                outcomes[index] = self._submit_one(schedd, workers[index], description)
        if workers and unreachable == len(workers):
            raise PluginError(f"no schedd could be reached: {outcomes[0].error}")
        return [outcomes[index] for index in range(len(workers))]

    def submit_description(self, worker: WorkerSpec, config: HTCondorQueueConfig) -> htcondor2.Submit:
        """The worker's job as the bindings' Submit object."""
        if not worker.pilot_command:
            raise SubmitDescriptionError("the pilot command is empty")
        executable = worker.pilot_command[0]
        if not os.path.isabs(executable):
            found = self._find_executable(executable)
            if found is None:
                raise SubmitDescriptionError(f"the executable {executable!r} is not found on this machine's PATH")
            executable = os.path.abspath(found)
        commands = submit_commands(worker, executable, self.instance, config)
        with _bindings_lock:
            return htcondor2.Submit(commands)

    def _submit_one(self, schedd: ScheddClient, worker: WorkerSpec, description: htcondor2.Submit) -> SubmitOutcome:
        try:
            with _bindings_lock:
                result = schedd.submit(description)
            batch_id = f"{result.cluster()}.{result.first_proc()}"
        except Exception as error:
            # A submission refused (a bad command, a quota) or lost: this worker only; the others go on.
            log.warning("worker %s: HTCondor refused the submission: %s", worker.worker_id, error)
            return SubmitOutcome(worker.worker_id, error=f"submit: {error}")
        return SubmitOutcome(worker.worker_id, batch_id=batch_id)

    # ---- check ----------------------------------------------------------------------------

    def check(self, workers: Sequence[SubmittedWorker]) -> list[BatchReport]:
        reports: dict[int, BatchReport] = {}
        for config, members in self._by_schedd(workers):
            schedd = self._schedd(config)
            ads = self._job_ads(schedd, members)
            held: list[str] = []
            for index, worker in members:
                # The job submitted for it, else any of its jobs (one whose submission was never recorded).
                found = ads.get(worker.worker_id, {})
                ad = found.get(worker.batch_id) or next(iter(found.values()), None)
                if ad is None:
                    reports[index] = BatchReport(worker.worker_id, WorkerState.MISSED,
                                                 error="in neither the schedd's queue nor its history")
                    continue
                reports[index] = report_from_job_ad(worker.worker_id, ad)
                if ad.get("JobStatus") == JobStatus.HELD:
                    held.append(batch_id_of(ad))
            if held:
                self._remove_held(schedd, held)
        return [reports[index] for index in range(len(workers))]

    def _job_ads(self, schedd: ScheddClient,
                 members: list[tuple[int, SubmittedWorker]]) -> dict[str, dict[str, Mapping[str, object]]]:
        """Each worker's job ads by batch id: from the queue, then the history for the rest."""
        found: dict[str, dict[str, Mapping[str, object]]] = {}

        def keep(ads: list[Mapping[str, object]]) -> None:
            for ad in ads:
                worker_id = ad.get(WORKER_ATTRIBUTE)
                if isinstance(worker_id, str):
                    found.setdefault(worker_id, {})[batch_id_of(ad)] = ad

        worker_ids = [worker.worker_id for _, worker in members]
        try:
            with _bindings_lock:
                keep(schedd.query(constraint=workers_constraint(self.instance, worker_ids),
                                  projection=list(JOB_AD_PROJECTION)))
                gone = [worker_id for worker_id in worker_ids if worker_id not in found]
                if gone:
                    keep(schedd.history(constraint=workers_constraint(self.instance, gone),
                                        projection=list(JOB_AD_PROJECTION), match=len(gone)))
        except Exception as error:
            raise PluginError(f"the schedd did not answer: {error}") from error
        return found

    def _remove_held(self, schedd: ScheddClient, batch_ids: list[str]) -> None:
        """A held pilot never resumes by itself: its worker is failed and its job removed, as
        Harvester does. A job whose removal fails here is removed when its worker is cleaned."""
        try:
            with _bindings_lock:
                schedd.act(htcondor2.JobAction.Remove, batch_ids, reason="held; removed by harvester")
        except Exception as error:
            log.warning("could not remove held jobs %s: %s", ", ".join(batch_ids), error)

    # ---- kill and clean -------------------------------------------------------------------

    def kill(self, workers: Sequence[SubmittedWorker]) -> list[str]:
        errors: dict[int, str] = {}
        for config, members in self._by_schedd(workers):
            schedd = self._schedd(config)
            worker_ids = [worker.worker_id for _, worker in members]
            constraint = workers_constraint(self.instance, worker_ids)
            try:
                with _bindings_lock:
                    result = schedd.act(htcondor2.JobAction.Remove, constraint, reason="killed by harvester")
                    troubles = _act_troubles(result)
                    still: list[Mapping[str, object]] = []
                    if troubles:
                        # Which of them were not removed: those still queued and neither removed nor completed.
                        still = schedd.query(
                            constraint=f"({constraint}) && JobStatus =!= {JobStatus.REMOVED}"
                                       f" && JobStatus =!= {JobStatus.COMPLETED}",
                            projection=list(JOB_AD_PROJECTION))
            except Exception as error:
                raise PluginError(f"the schedd did not answer: {error}") from error
            not_removed = {ad.get(WORKER_ATTRIBUTE) for ad in still}
            for index, worker in members:
                errors[index] = f"not removed ({troubles})" if worker.worker_id in not_removed else ""
        return [errors[index] for index in range(len(workers))]

    def clean(self, workers: Sequence[SubmittedWorker]) -> None:
        """What an ended worker may have left: its job, when still queued (held, and its
        removal at the check failed), and its access point with the batch files in it. The
        schedd moves ended jobs into its history by itself."""
        failures: list[str] = []
        for config, members in self._by_schedd(workers):
            constraint = workers_constraint(self.instance, [worker.worker_id for _, worker in members])
            try:
                schedd = self._schedd(config)
                with _bindings_lock:
                    left = schedd.query(constraint=f"({constraint}) && JobStatus =!= {JobStatus.REMOVED}",
                                        projection=list(JOB_AD_PROJECTION))
                    if left:
                        schedd.act(htcondor2.JobAction.Remove, [batch_id_of(ad) for ad in left],
                                   reason="ended; removed by harvester")
            except Exception as error:
                failures.append(f"schedd {config.schedd or '(local)'}: {error}")
        for worker in workers:
            try:
                remove_access_point(worker.access_point)
            except OSError as error:
                failures.append(f"worker {worker.worker_id}: {error}")
        if failures:
            raise PluginError("; ".join(failures))

    # ---- helpers --------------------------------------------------------------------------

    def _by_schedd(self, workers: Sequence[SubmittedWorker]
                   ) -> list[tuple[HTCondorQueueConfig, list[tuple[int, SubmittedWorker]]]]:
        """The workers (with their place in the call) grouped by the schedd that holds them."""
        groups: dict[tuple[str, str], tuple[HTCondorQueueConfig, list[tuple[int, SubmittedWorker]]]] = {}
        for index, worker in enumerate(workers):
            try:
                config = HTCondorQueueConfig.from_parameters(worker.parameters)
            except SubmitDescriptionError as error:
                raise PluginError(f"worker {worker.worker_id}: queue configuration: {error}") from error
            groups.setdefault(config.schedd_key, (config, []))[1].append((index, worker))
        return list(groups.values())

    def _schedd(self, config: HTCondorQueueConfig) -> ScheddClient:
        try:
            with _bindings_lock:
                return self._schedd_factory(config)
        except Exception as error:
            raise PluginError(f"the schedd could not be reached: {error}") from error


def _act_troubles(result: object) -> str:
    """What went wrong in a `Schedd.act`, from the totals of the ClassAd it returns; empty when nothing did."""
    if not isinstance(result, Mapping):
        return ""
    troubles = {key: result.get(key) for key in ("TotalError", "TotalBadStatus", "TotalPermissionDenied")}
    return ", ".join(f"{key} = {value}" for key, value in troubles.items() if isinstance(value, int) and value > 0)

