"""The post-processor's rules: when scouting ends and what it concludes, when a task is
exhausted (too many failures), and how a task ends (done, finished, failed; or when a
finish or kill command has every job ended). No I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jedi_svc.domain import scouts
from jedi_svc.domain.jobs import JOB_FINAL_STATES, TaskJob
from jedi_svc.domain.progress import CANCELLED, FAILED, FINISHED, READY, RUNNING, final_state
from jedi_svc.domain.states import FINAL_STATES, GENERATING_STATES, TaskState
from jedi_svc.domain.tasks import ScoutReport, Task, TaskChange

__all__ = [
    "FAILURE_RATE_MIN_JOBS", "Decision", "end_scouting", "end_state", "exhaustion", "looks_at", "postprocess",
    "summary",
]

# The failure rate is judged once this many jobs of the task ended.
FAILURE_RATE_MIN_JOBS = 10
# States the post-processor leaves alone: final ones, and those the refiner has.
_NOT_MINE = FINAL_STATES | {TaskState.REGISTERED, TaskState.DEFINED, TaskState.TORETRY}


@dataclass(frozen=True, slots=True)
class Decision:
    change: TaskChange | None = None
    # Chunks in these statuses become cancelled.
    cancel: tuple[str, ...] = ()


def looks_at(state: TaskState) -> bool:
    """The post-processor leaves alone final tasks, and those the refiner has."""
    return state not in _NOT_MINE


def postprocess(task: Task, chunk_counts: Mapping[str, int], jobs_in_flight: int,
                scout_jobs: Sequence[TaskJob] = ()) -> Decision:
    """What becomes of a task now, from its chunks by status, its jobs not ended and (while
    it is SCOUTING) its scout jobs."""
    if not looks_at(task.state):
        return Decision()
    total = sum(chunk_counts.values())
    if task.state == TaskState.SCOUTING:
        return end_scouting(task, scout_jobs)
    if task.state in GENERATING_STATES:
        exhausted = exhaustion(task)
        if exhausted is not None:
            return Decision(exhausted)
        if not chunk_counts.get(READY) and not jobs_in_flight:
            return Decision(end_state(chunk_counts, total))
    elif task.state == TaskState.FINISHING and not jobs_in_flight:
        done = total and chunk_counts.get(FINISHED, 0) == total
        return Decision(TaskChange(TaskState.DONE if done else TaskState.FINISHED,
                                   f"finished by request: {summary(chunk_counts, total)}"), cancel=(READY,))
    elif task.state == TaskState.ABORTING and not jobs_in_flight:
        return Decision(TaskChange(TaskState.ABORTED, f"killed; every job ended: {summary(chunk_counts, total)}"),
                        cancel=(READY, RUNNING))
    return Decision()


def end_scouting(task: Task, scout_jobs: Sequence[TaskJob]) -> Decision:
    """Once every scout job ended: BROKEN when none succeeded (the chunks not run are
    cancelled), else SCOUTED with the other jobs' memory and walltime from the scouts'
    measurements (domain.scouts)."""
    if not scout_jobs or any(j.state not in JOB_FINAL_STATES for j in scout_jobs):
        return Decision()
    good = [j for j in scout_jobs if j.state == "finished"]
    report = ScoutReport(**task.scout_report)
    report["jobs"], report["succeeded"], report["failed"] = len(scout_jobs), len(good), len(scout_jobs) - len(good)
    if not good:
        last = scout_jobs[-1]
        why = f"error {last.error_code}: {last.error_diag}" if last.error_code or last.error_diag else last.state
        return Decision(TaskChange(
            TaskState.BROKEN, f"no scout succeeded: {len(scout_jobs)} scout job(s) failed; last: {why}",
            scout_report=report), cancel=(READY,))
    measured = scouts.evaluate([scouts.Measurement(j.max_rss_mb, j.walltime_used, j.cpu_seconds) for j in good])
    report["memory_mb"], report["walltime_seconds"] = measured.memory_mb, measured.walltime_seconds
    report["cpu_seconds"], report["applied"] = measured.cpu_seconds, True
    reason = (f"scouted: {len(good)} of {len(scout_jobs)} scout(s) succeeded; measured {measured.memory_mb} MB "
              f"peak memory, {measured.walltime_seconds} s walltime (95th percentile); the other jobs ask "
              f"for {measured.request_memory_mb} MB and {measured.request_walltime_seconds} s")
    return Decision(TaskChange(TaskState.SCOUTED, reason, scouted=True, scout_report=report,
                               memory_mb=measured.request_memory_mb,
                               walltime_seconds=measured.request_walltime_seconds))


def exhaustion(task: Task) -> TaskChange | None:
    """EXHAUSTED (no new jobs until the task is retried, finished or killed) once at least
    FAILURE_RATE_MIN_JOBS of its jobs ended and more than max_failure_rate of them failed;
    a max_failure_rate of 1 or more never exhausts."""
    ended = task.jobs_finished + task.jobs_failed
    limit = task.max_failure_rate
    if limit >= 1 or ended < FAILURE_RATE_MIN_JOBS:
        return None
    rate = task.jobs_failed / ended
    if rate <= limit:
        return None
    return TaskChange(TaskState.EXHAUSTED, f"{task.jobs_failed} of {ended} jobs failed ({rate:.0%} > {limit:.0%}): "
                                           "no new jobs until the task is retried, finished or killed")


def end_state(chunk_counts: Mapping[str, int], total: int) -> TaskChange:
    """A task with nothing left to run ends done, finished or failed (progress.final_state)."""
    return TaskChange(TaskState(final_state(chunk_counts.get(FINISHED, 0), total)), summary(chunk_counts, total))


def summary(chunk_counts: Mapping[str, int], total: int) -> str:
    parts = [f"{chunk_counts.get(s, 0)} {s}" for s in (FINISHED, FAILED, CANCELLED) if chunk_counts.get(s)]
    return f"{total} chunk(s): " + (", ".join(parts) if parts else "none processed")
