"""Workers as Slurm batch jobs, through Slurm's own commands (`sbatch`, `squeue`, `sacct`,
`scancel`), as Harvester's Slurm submitter and monitor do it.

- submit: the worker's batch script (the queue's template, or the default one, filled for the
  worker: `harvester_svc.domain.slurm`) is written into its access point and submitted with
  `sbatch --parsable --chdir=<access point>`, one call per worker; the job's output goes to
  `slurm-<job id>.out` there.
- check: one `squeue --states=all` for all the workers of the call (in chunks of 1,000 ids). A
  job that ended stays in squeue for the cluster's MinJobAge (300 s by default); those squeue no
  longer shows are looked up with one `sacct` call: in the accounting database when the cluster
  has one (slurmdbd), else in the job completion file (`sacct --completion`, JobCompType=
  jobcomp/filetxt, as deploy/slurm/slurm.conf.in has it). A job none of them knows is MISSED: on
  a cluster with neither, a check must come within MinJobAge of a job's end to see how it ended.
- kill: one `scancel` for all of them; a job that already ended or that Slurm never knew is not
  an error.
- clean: removes the worker's access point, as the other plugins do (batch script, Slurm's
  output file, what the pilot left).

Every command runs with a timeout and with only PATH, HOME, USER, LOGNAME, the locale, TZ and
SLURM_CONF of harvester's environment, plus what the plugin is given: a job inherits sbatch's
environment (Slurm's default), so harvester's own credentials never reach a worker, which gets
its variables from the worker's environment, exported by its batch script.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from harvester_svc.domain.slurm import (
    BATCH_SCRIPT_NAME,
    DEFAULT_TEMPLATE,
    SACCT_FIELDS,
    SLURM_TIME_FORMAT,
    SQUEUE_FORMAT,
    SlurmJob,
    batch_report,
    check_template,
    is_batch_id,
    parse_parameters,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
    render_batch_script,
)
from harvester_svc.domain.workers import BatchReport, SubmitOutcome, SubmittedWorker, WorkerSpec, WorkerState
from harvester_svc.logic.plugins.access_points import remove_access_point
from harvester_svc.logic.plugins.base import PluginError

__all__ = ["SlurmPlugin"]

log = logging.getLogger(__name__)

# What the Slurm commands need of harvester's environment; nothing else of it is passed on.
_PASSED_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SLURM_CONF")
# Job ids per squeue, sacct or scancel call: far below any command line limit.
_IDS_PER_CALL = 1000
# What the Slurm commands say when the controller cannot be reached: no later sbatch of the same
# call would fare better, so the call's remaining workers are not tried.
_UNREACHABLE = re.compile(r"Unable to contact slurm controller|Socket timed out|Connection refused|Zero Bytes")
_NO_ACCOUNTING = "accounting storage is disabled"
_NO_JOB_COMPLETION = "job completion is disabled"
# scancel's complaint about one job: "... job id 123: Invalid job id specified".
_SCANCEL_JOB_ERROR = re.compile(r"job id (\d+)[^:]*: (.*)$")
_GONE = ("Invalid job id", "already completing or completed")
_Parser = Callable[[str, tzinfo], dict[str, SlurmJob]]


@dataclass(frozen=True, slots=True)
class _Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        return (self.stderr.strip() or self.stdout.strip())[:2000]


class _Unanswered(PluginError):
    """A command that did not run or did not end in time."""


class SlurmPlugin:
    name = "slurm"

    def __init__(self, environment: Mapping[str, str] | None = None, timeout_seconds: float = 60.0) -> None:
        """`environment` adds to (or overrides) what the commands get of harvester's own, e.g.
        SLURM_CONF for a cluster other than the machine's."""
        self._environment = {name: os.environ[name] for name in _PASSED_ENVIRONMENT if name in os.environ}
        self._environment.update(environment or {})
        # squeue prints times with their offset; sacct does when it reads the accounting database.
        self._environment["SLURM_TIME_FORMAT"] = SLURM_TIME_FORMAT
        self._timeout = timeout_seconds
        # Where ended jobs are found, once the cluster said which it lacks: "accounting" (sacct),
        # "completion" (sacct --completion) or "" (neither). A cluster does not lose one while
        # harvester runs; a restarted harvester asks again.
        self._ended_jobs_source = "accounting"

    def check_parameters(self, parameters: Mapping[str, object]) -> None:
        """Raise ValueError when a queue's parameters would fail every submission (a bad
        parameter, a template file that cannot be read or holds an unknown placeholder): for
        when the queue configuration is loaded."""
        check_template(self._template(parse_parameters(parameters).template_file, {}))

    # submit

    def submit(self, workers: Sequence[WorkerSpec]) -> list[SubmitOutcome]:
        outcomes: list[SubmitOutcome] = []
        templates: dict[str, str] = {}
        unreachable = ""
        for spec in workers:
            if unreachable:
                outcomes.append(SubmitOutcome(worker_id=spec.worker_id, error=unreachable))
                continue
            try:
                outcome = self._submit_one(spec, templates)
            except _Unanswered as error:
                unreachable = str(error)
                outcome = SubmitOutcome(worker_id=spec.worker_id, error=unreachable)
            if outcome.error and _UNREACHABLE.search(outcome.error):
                unreachable = outcome.error
            outcomes.append(outcome)
        return outcomes

    def _submit_one(self, spec: WorkerSpec, templates: dict[str, str]) -> SubmitOutcome:
        access_point = Path(spec.access_point)
        try:
            parameters = parse_parameters(spec.parameters)
            script = render_batch_script(self._template(parameters.template_file, templates), spec,
                                         parameters.partition)
            access_point.mkdir(parents=True, exist_ok=True)
            script_path = access_point / BATCH_SCRIPT_NAME
            script_path.write_text(script, encoding="utf-8")
            script_path.chmod(0o755)
        except (OSError, ValueError) as error:
            return SubmitOutcome(worker_id=spec.worker_id, error=f"batch script: {error}")
        command = ["sbatch", "--parsable", f"--chdir={access_point}"]
        if parameters.partition:
            command.append(f"--partition={parameters.partition}")
        command += [*parameters.sbatch_args, str(script_path)]
        result = self._run(command)
        if result.returncode != 0:
            return SubmitOutcome(worker_id=spec.worker_id, error=f"sbatch: {result.message}")
        try:
            batch_id = parse_sbatch(result.stdout)
        except ValueError as error:
            return SubmitOutcome(worker_id=spec.worker_id, error=str(error))
        log.debug("worker %s submitted as Slurm job %s", spec.worker_id, batch_id)
        return SubmitOutcome(worker_id=spec.worker_id, batch_id=batch_id)

    def _template(self, template_file: str, cache: dict[str, str]) -> str:
        if not template_file:
            return DEFAULT_TEMPLATE
        if template_file not in cache:
            try:
                cache[template_file] = Path(template_file).read_text(encoding="utf-8")
            except OSError as error:
                raise ValueError(f"template_file {template_file}: {error.strerror or error}") from None
        return cache[template_file]

    # check

    def check(self, workers: Sequence[SubmittedWorker]) -> list[BatchReport]:
        batch_ids = sorted({worker.batch_id for worker in workers if is_batch_id(worker.batch_id)}, key=int)
        zone = _local_zone()
        jobs = self._squeue(batch_ids, zone)
        ended_source = self._ended_jobs_source
        gone = [batch_id for batch_id in batch_ids if batch_id not in jobs]
        if gone:
            jobs.update(self._ended_jobs(gone, zone))
            ended_source = self._ended_jobs_source
        reports: list[BatchReport] = []
        for worker in workers:
            job = jobs.get(worker.batch_id)
            if job is not None:
                reports.append(batch_report(worker.worker_id, job))
            else:
                reports.append(BatchReport(worker_id=worker.worker_id, state=WorkerState.MISSED,
                                           error=_missed_reason(worker.batch_id, ended_source)))
        return reports

    def _squeue(self, batch_ids: Sequence[str], zone: tzinfo) -> dict[str, SlurmJob]:
        jobs: dict[str, SlurmJob] = {}
        for chunk in _chunks(batch_ids):
            result = self._run(["squeue", "--noheader", "--states=all", f"--jobs={','.join(chunk)}",
                                f"--Format={SQUEUE_FORMAT}"])
            if result.returncode != 0:
                # squeue asked for one job it does not know fails; for several, it leaves them out.
                if "Invalid job id specified" in result.stderr:
                    continue
                raise PluginError(f"squeue: {result.message}")
            jobs.update(self._parsed("squeue", parse_squeue, result.stdout, zone))
        return jobs

    def _ended_jobs(self, batch_ids: Sequence[str], zone: tzinfo) -> dict[str, SlurmJob]:
        fields = f"--format={','.join(SACCT_FIELDS)}"
        jobs: dict[str, SlurmJob] = {}
        for chunk in _chunks(batch_ids):
            ids = f"--jobs={','.join(chunk)}"
            if self._ended_jobs_source == "accounting":
                result = self._run(["sacct", "--noheader", "--parsable2", "--allocations", ids, fields])
                if result.returncode == 0:
                    jobs.update(self._parsed("sacct", parse_sacct, result.stdout, zone))
                    continue
                if _NO_ACCOUNTING not in result.message:
                    raise PluginError(f"sacct: {result.message}")
                log.info("Slurm has no accounting database: ended jobs are looked up in its job completion file")
                self._ended_jobs_source = "completion"
            if self._ended_jobs_source == "completion":
                result = self._run(["sacct", "--noheader", "--parsable2", "--completion", ids, fields])
                if result.returncode == 0:
                    jobs.update(self._parsed("sacct --completion", parse_sacct, result.stdout, zone))
                    continue
                if _NO_JOB_COMPLETION not in result.message:
                    raise PluginError(f"sacct --completion: {result.message}")
                log.warning("Slurm keeps no record of ended jobs (no accounting database, no job completion "
                            "file): a job gone from squeue (after MinJobAge) is reported missed")
                self._ended_jobs_source = ""
        return jobs

    @staticmethod
    def _parsed(command: str, parse: _Parser, stdout: str, zone: tzinfo) -> dict[str, SlurmJob]:
        try:
            return parse(stdout, zone)
        except ValueError as error:
            raise PluginError(f"{command}: {error}") from None

    # kill and clean

    def kill(self, workers: Sequence[SubmittedWorker]) -> list[str]:
        batch_ids = sorted({worker.batch_id for worker in workers if is_batch_id(worker.batch_id)}, key=int)
        errors: dict[str, str] = {}
        for chunk in _chunks(batch_ids):
            result = self._run(["scancel", *chunk])
            unexplained: list[str] = []
            for line in result.stderr.splitlines():
                match = _SCANCEL_JOB_ERROR.search(line)
                # scancel says "Unable to contact slurm controller" job by job: that is the call's failure.
                if match is None or _UNREACHABLE.search(line):
                    if line.strip():
                        unexplained.append(line.strip())
                elif not any(gone in match.group(2) for gone in _GONE):
                    errors[match.group(1)] = match.group(2).strip()
            if result.returncode != 0 and (unexplained or not errors):
                raise PluginError(f"scancel: {result.message}")
        # A worker without a Slurm job (its submission failed) has nothing to stop.
        return [errors.get(worker.batch_id, "") for worker in workers]

    def clean(self, workers: Sequence[SubmittedWorker]) -> None:
        """Each ended worker's access point goes, with the batch script, Slurm's output file and
        whatever the pilot left there; Slurm itself forgets an ended job by itself."""
        failures: list[str] = []
        for worker in workers:
            try:
                remove_access_point(worker.access_point)
            except OSError as error:
                failures.append(f"worker {worker.worker_id}: {error.strerror or error}")
        if failures:
            raise PluginError("; ".join(failures))

    # commands

    def _run(self, command: list[str]) -> _Result:
        try:
            completed = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace",
                                       timeout=self._timeout, env=self._environment, stdin=subprocess.DEVNULL,
                                       check=False)
        except subprocess.TimeoutExpired:
            raise _Unanswered(f"{command[0]} did not answer within {self._timeout:g} s") from None
        except OSError as error:  # not installed, not executable
            raise _Unanswered(f"{command[0]}: {error.strerror or error}") from None
        return _Result(completed.returncode, completed.stdout, completed.stderr)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _IDS_PER_CALL):
        yield items[start:start + _IDS_PER_CALL]


def _local_zone() -> tzinfo:
    """The zone of times Slurm prints without an offset (its job completion file's)."""
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None  # astimezone() always sets one
    return zone


def _missed_reason(batch_id: str, ended_source: str) -> str:
    if not is_batch_id(batch_id):
        return f"no Slurm job: {batch_id!r} is not a Slurm job id"
    where = {"accounting": "nor in its accounting database (sacct)",
             "completion": "nor in its job completion file (sacct --completion)",
             "": "and it keeps no record of ended jobs (MinJobAge passed?)"}[ended_source]
    return f"Slurm job {batch_id} is unknown to Slurm: not in squeue {where}"
