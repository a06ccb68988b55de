"""The engine's reads and writes: one method per step of an agent, each one transaction that
takes the task's row lock first (PostgreSQL; SQLite has one writer), so agents running side
by side never see a task half-changed. Everything an agent needs to resume after a crash is
in these tables: a step either happened entirely or not at all."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from jedi_svc.domain import brokerage, fairshare, scouts, splitting, templates
from jedi_svc.domain.progress import final_state
from jedi_svc.domain.states import FINAL_STATES, GENERATING_STATES, TaskState, check_transition
from jedi_svc.store.common import record_event
from jedi_svc.store.tables import commands, contents, datasets, files, jobs, tasks, watch_cursors
from panda_runtime.service import bulk
from panda_runtime.service.db import Store, aware, now

log = logging.getLogger("panda.jedi.store")

# Server job states after which a job does nothing more.
JOB_FINAL_STATES = frozenset({"finished", "failed", "cancelled", "closed"})
# The failure rate is judged once this many jobs of the task ended.
FAILURE_RATE_MIN_JOBS = 10
_IN_CHUNK = 1000


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class PlanResult:
    batches: list[int] = field(default_factory=list)
    jobs: int = 0
    pending_reason: str = ""
    # Batch -> (request id, job specs in serial order), as stored: the submitter needs not read them back.
    specs: dict[int, tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)


@dataclass
class JobEvent:
    """One event of the server's WatchJobs stream, as the engine needs it."""

    cursor: int
    job_id: int
    task_id: int
    state: str
    error_code: int = 0
    reason: str = ""


@dataclass
class JobDetails:
    """What the server tells about a finished job: its outputs and measurements."""

    outputs: list[dict[str, Any]]
    max_rss_mb: int
    walltime_seconds: float
    cpu_seconds: float


class EngineStore(Store):
    # -- which tasks need an agent -----------------------------------------------------

    def tasks_in(self, task_states: Iterable[TaskState]) -> list[dict[str, Any]]:
        names = [s.value for s in task_states]
        with self._engine.connect() as conn:
            query = select(tasks.c.task_id, tasks.c.state, tasks.c.wait_until, tasks.c.resume_state).where(
                tasks.c.state.in_(names)).order_by(tasks.c.priority.desc(), tasks.c.task_id)
            return [dict(r._mapping) for r in conn.execute(query)]

    def _lock_task(self, conn: Connection, task_id: int) -> dict[str, Any] | None:
        row = conn.execute(self._locked(select(tasks).where(tasks.c.task_id == task_id))).first()
        return dict(row._mapping) if row else None

    def _set_state(self, conn: Connection, task: dict[str, Any], new: TaskState, reason: str, at: datetime,
                   **values: Any) -> None:
        current = TaskState(task["state"])
        check_transition(task["task_id"], current, new)
        values.update(state=new.value, state_reason=reason, update_time=at)
        if new in FINAL_STATES:
            values["end_time"] = at
        conn.execute(update(tasks).where(tasks.c.task_id == task["task_id"]).values(**values))
        record_event(conn, task["task_id"], new.value, current.value, reason, at)
        task.update(values)

    # -- refine: registered -> defined ---------------------------------------------------

    def refine(self, task_id: int) -> str | None:
        """Check the input datasets exist and hold files. Returns the new state."""
        at = now()
        with self._engine.begin() as conn:
            task = self._lock_task(conn, task_id)
            if task is None or task["state"] != TaskState.REGISTERED.value:
                return None
            names = task["params"].get("input_datasets", [])
            found = {r.name: r.dataset_id for r in conn.execute(
                select(datasets.c.name, datasets.c.dataset_id).where(datasets.c.name.in_(names)))}
            missing = [n for n in names if n not in found]
            if missing:
                self._set_state(conn, task, TaskState.BROKEN, f"input dataset {missing[0]} not found", at)
                return task["state"]
            counts = dict(conn.execute(
                select(files.c.dataset_id, func.count()).where(files.c.dataset_id.in_(found.values()))
                .group_by(files.c.dataset_id)).all())
            empty = [n for n in names if not counts.get(found[n])]
            if empty:
                self._set_state(conn, task, TaskState.BROKEN, f"input dataset {empty[0]} has no files", at)
                return task["state"]
            total = sum(counts.values())
            self._set_state(conn, task, TaskState.DEFINED,
                            f"refined: {total} input file(s) in {len(names)} dataset(s)", at)
            return task["state"]

    # -- feed contents: defined -> ready ---------------------------------------------------

    def feed(self, task_id: int) -> str | None:
        """Cut the input files into chunks by the split rule."""
        at = now()
        with self._engine.begin() as conn:
            task = self._lock_task(conn, task_id)
            if task is None or task["state"] != TaskState.DEFINED.value:
                return None
            names = task["params"].get("input_datasets", [])
            order = {n: i for i, n in enumerate(names)}
            rows = conn.execute(
                select(files.c.file_id, files.c.lfn, files.c.size_bytes, files.c.events, datasets.c.name)
                .select_from(files.join(datasets, files.c.dataset_id == datasets.c.dataset_id))
                .where(datasets.c.name.in_(names)).order_by(files.c.file_id)
            ).all()
            rows.sort(key=lambda r: (order[r.name], r.file_id))
            inputs = [splitting.InputFile(r.file_id, r.lfn, r.size_bytes, r.events) for r in rows]
            rule = splitting.SplitRule(task["split_kind"], task["split_value"])
            try:
                chunks = splitting.split(inputs, rule)
            except splitting.SplitError as error:
                self._set_state(conn, task, TaskState.BROKEN, str(error), at)
                return task["state"]
            bulk.insert_rows(conn, contents, [
                {"task_id": task_id, "file_id": c.file_id, "first_event": c.first_event, "n_events": c.n_events,
                 "split_group": c.group, "status": "ready", "attempts": 0, "max_attempts": task["max_attempts"],
                 "job_row": 0, "error_code": 0, "error_diag": ""}
                for c in chunks
            ])
            groups = splitting.group_count(chunks)
            self._set_state(conn, task, TaskState.READY,
                            f"{len(inputs)} file(s) split into {len(chunks)} chunk(s) for {groups} job(s), "
                            f"{rule.describe()}", at)
            return task["state"]

    # -- retry: toretry -> ready ---------------------------------------------------------

    def reset_for_retry(self, task_id: int) -> str | None:
        """Failed, cancelled and never-run chunks get a new budget of attempts."""
        at = now()
        with self._engine.begin() as conn:
            task = self._lock_task(conn, task_id)
            if task is None or task["state"] != TaskState.TORETRY.value:
                return None
            again = conn.execute(
                update(contents)
                .where(contents.c.task_id == task_id, contents.c.status.in_(["failed", "cancelled", "ready"]))
                .values(status="ready", max_attempts=contents.c.attempts + task["max_attempts"])
            ).rowcount
            self._set_state(conn, task, TaskState.READY, f"retry: {again} chunk(s) to run again", at,
                            jobs_finished=0, jobs_failed=0, wait_until=None)
            return task["state"]

    # -- broker and generate jobs --------------------------------------------------------

    def has_ready_chunks(self, task_id: int) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(contents.c.content_id).where(
                contents.c.task_id == task_id, contents.c.status == "ready").limit(1)).first() is not None

    def plan_jobs(
        self, task_id: int, queues: list[brokerage.QueueInfo], *, batch_size: int, pending_retry: float,
        jobs_per_point: int, max_jobs: int = 0, max_queued: int = 0,
    ) -> PlanResult:
        """Pick the chunks to run now (at most max_jobs jobs' worth; 0: all), broker them to
        queues and store the jobs (state submitting) in batches; the submitter sends them. A
        task no queue takes goes PENDING; a task with max_queued jobs not yet started goes
        THROTTLED, and comes back when half of them started."""
        at = now()
        result = PlanResult()
        with self._engine.begin() as conn:
            task = self._lock_task(conn, task_id)
            if task is None:
                return result
            state = TaskState(task["state"])
            if state == TaskState.PENDING:
                if task["wait_until"] is not None and aware(task["wait_until"]) > at:
                    return result
            elif state not in GENERATING_STATES and state != TaskState.THROTTLED:
                return result
            ready = conn.execute(
                select(contents).where(contents.c.task_id == task_id, contents.c.status == "ready")
                .order_by(contents.c.content_id)
            ).all()
            if not ready:
                if state == TaskState.PENDING:
                    self._set_state(conn, task, TaskState(task["resume_state"] or "ready"),
                                    "nothing left to broker", at, resume_state="", wait_until=None)
                return result
            underlying = state
            if state in (TaskState.PENDING, TaskState.THROTTLED):
                underlying = TaskState(task["resume_state"] or TaskState.READY.value)
            if max_queued:
                queued = conn.execute(select(func.count()).select_from(jobs).where(
                    jobs.c.task_id == task_id, jobs.c.state.in_(["submitting", "activated"]))).scalar_one()
                if state == TaskState.THROTTLED and queued > max_queued // 2:
                    return result
                if state != TaskState.THROTTLED and queued >= max_queued:
                    self._set_state(conn, task, TaskState.THROTTLED,
                                    f"{queued} job(s) queued, at most {max_queued} per task: the others wait "
                                    "until some start", at, resume_state=underlying.value)
                    return result
                max_jobs = min(max_jobs or max_queued, max_queued - queued)
            elif state == TaskState.THROTTLED:
                return result
            scouting = not task["scouted"] and task["scout_jobs"] > 0
            groups = _job_groups([dict(r._mapping) for r in ready])
            if scouting:
                fresh = [g for g in groups if g[0]["attempts"] == 0]
                groups = fresh[: task["scout_jobs"]]
                if not groups:
                    return result
            if max_jobs:
                groups = groups[:max_jobs]
            request = brokerage.JobRequest(task["cores"], task["memory_mb"], task["walltime_seconds"],
                                           task["disk_mb"])
            found = brokerage.candidates(queues, request, allowed=task["queues"], excluded=task["excluded_queues"])
            if not found.queues:
                reason = "no queue fits: " + found.reason()
                result.pending_reason = reason
                wait = at + timedelta(seconds=pending_retry)
                if state != TaskState.PENDING:
                    self._set_state(conn, task, TaskState.PENDING, reason, at, resume_state=underlying.value,
                                    wait_until=wait)
                elif reason != task["state_reason"]:
                    self._set_state_same(conn, task, reason, at, wait_until=wait)
                else:
                    conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(wait_until=wait))
                return result
            self._generate(conn, task, groups, found.queues, scouting=scouting, batch_size=batch_size,
                           jobs_per_point=jobs_per_point, at=at, result=result)
        return result

    def _set_state_same(self, conn: Connection, task: dict[str, Any], reason: str, at: datetime, **values: Any) -> None:
        """Record a decision that keeps the state (e.g. a pending task's new reason)."""
        values.update(state_reason=reason, update_time=at)
        conn.execute(update(tasks).where(tasks.c.task_id == task["task_id"]).values(**values))
        record_event(conn, task["task_id"], task["state"], task["state"], reason, at)
        task.update(values)

    def _generate(
        self, conn: Connection, task: dict[str, Any], groups: list[list[dict[str, Any]]],
        queues: list[brokerage.QueueInfo], *, scouting: bool, batch_size: int, jobs_per_point: int, at: datetime,
        result: PlanResult,
    ) -> None:
        task_id = task["task_id"]
        file_ids = sorted({c["file_id"] for g in groups for c in g})
        file_rows: dict[int, Any] = {}
        for part in _chunks(file_ids):
            for r in conn.execute(select(files).where(files.c.file_id.in_(part))):
                file_rows[r.file_id] = r
        jobs_inputs = [[(file_rows[c["file_id"]].size_bytes, file_rows[c["file_id"]].storage_elements) for c in g]
                       for g in groups]
        chosen = brokerage.assign(queues, jobs_inputs)
        in_flight = conn.execute(
            select(func.count()).select_from(jobs.join(tasks, jobs.c.task_id == tasks.c.task_id))
            .where(tasks.c.owner == task["owner"], jobs.c.state.not_in(list(JOB_FINAL_STATES)))
        ).scalar_one()
        priorities = fairshare.job_priorities(task["priority"], in_flight, len(groups), jobs_per_point)
        params = task["params"]
        pattern = params.get("output_file_pattern") or templates.DEFAULT_OUTPUT_PATTERN
        output_dataset = params.get("output_dataset", "")
        transformation = list(params.get("transformation", []))
        environment = dict(params.get("environment", {}))
        label = task["task_name"][:240]
        serial, batch = task["next_serial"], task["next_batch"]
        job_rows: list[dict[str, Any]] = []
        for index, (group, queue, priority) in enumerate(zip(groups, chosen, priorities, strict=True)):
            if index and index % batch_size == 0:
                batch += 1
            attempt = max(c["attempts"] for c in group) + 1
            spec = self._job_spec(task, group, file_rows, queue, priority, serial, attempt, pattern,
                                  output_dataset, transformation, environment, label + (" (scout)" if scouting else ""))
            job_rows.append({
                "task_id": task_id, "serial": serial, "batch": batch, "job_id": None, "state": "submitting",
                "scout": scouting, "queue": queue.queue_id, "priority": priority, "attempt": attempt,
                "content_ids": [c["content_id"] for c in group], "spec": spec,
                "output_lfn": spec["files"][-1]["lfn"], "last_cursor": 0, "error_code": 0, "error_diag": "",
                "max_rss_mb": 0, "walltime_used": 0.0, "cpu_seconds": 0.0, "create_time": at,
            })
            serial += 1
        # A bulk insert is much faster than one INSERT ... RETURNING of thousands of rows; the
        # ids are read back by serial, which is unique in the task.
        bulk.insert_rows(conn, jobs, job_rows)
        by_serial = dict(conn.execute(
            select(jobs.c.serial, jobs.c.row_id).where(
                jobs.c.task_id == task_id, jobs.c.serial >= job_rows[0]["serial"], jobs.c.serial < serial)
        ).all())
        row_ids = [by_serial[r["serial"]] for r in job_rows]
        bulk.update_rows(conn, contents, "content_id", [
            {"content_id": c["content_id"], "status": "running", "attempts": c["attempts"] + 1, "job_row": row_id}
            for row_id, group in zip(row_ids, groups, strict=True) for c in group
        ])
        for row in job_rows:
            result.specs.setdefault(row["batch"], (self._request_id(task, row["batch"]), []))[1].append(row["spec"])
        values: dict[str, Any] = {"next_serial": serial, "next_batch": batch + 1, "wait_until": None,
                                  "resume_state": ""}
        if task["start_time"] is None:
            values["start_time"] = at
        if scouting:
            report = dict(task["scout_report"])
            report["jobs"] = report.get("jobs", 0) + len(groups)
            values["scout_report"] = report
        per_queue: dict[str, int] = {}
        for queue in chosen:
            per_queue[queue.queue_id] = per_queue.get(queue.queue_id, 0) + 1
        placed = ", ".join(f"{q} x{n}" for q, n in sorted(per_queue.items()))
        what = "scout job(s)" if scouting else "job(s)"
        reason = (f"generated {len(groups)} {what} (priority {priorities[0]}"
                  f"{'..' + str(priorities[-1]) if priorities[-1] != priorities[0] else ''}): {placed}")
        new = TaskState.SCOUTING if scouting else TaskState.RUNNING
        current = TaskState(task["state"])
        if current == TaskState.PENDING:
            reason = "brokerage found a queue; " + reason
        elif current == TaskState.THROTTLED:
            reason = "queued jobs started; " + reason
        if new != current:
            self._set_state(conn, task, new, reason, at, **values)
        else:
            self._set_state_same(conn, task, reason, at, **values)
        result.batches = sorted({r["batch"] for r in job_rows})
        result.jobs = len(job_rows)

    @staticmethod
    def _job_spec(
        task: dict[str, Any], group: list[dict[str, Any]], file_rows: dict[int, Any], queue: brokerage.QueueInfo,
        priority: int, serial: int, attempt: int, pattern: str, output_dataset: str, transformation: list[str],
        environment: dict[str, str], label: str,
    ) -> dict[str, Any]:
        task_id = task["task_id"]
        output = templates.output_name(pattern, task_id=task_id, dataset=output_dataset, serial=serial,
                                       attempt=attempt)
        inputs: list[str] = []
        input_files: list[dict[str, Any]] = []
        for chunk in group:
            f = file_rows[chunk["file_id"]]
            if f.lfn in inputs:
                continue
            inputs.append(f.lfn)
            replicas = list(f.storage_elements or [])
            se = queue.storage_element if queue.storage_element in replicas else (replicas[0] if replicas else "")
            input_files.append({"lfn": f.lfn, "kind": "input", "size_bytes": f.size_bytes, "adler32": f.adler32,
                                "storage_element": se})
        if task["split_kind"] == "events":
            first = group[0]
            skip = first["first_event"]
            count = sum(c["n_events"] or file_rows[c["file_id"]].events for c in group)
        else:
            skip = 0
            known = [file_rows[c["file_id"]].events for c in group]
            count = sum(known) if all(known) else -1
        values = templates.JobValues(inputs=inputs, output=output, task_id=task_id, serial=serial, attempt=attempt,
                                     skip_events=skip, max_events=count)
        env = {**environment, "PANDA_TASK_ID": str(task_id), "PANDA_JOB_SERIAL": str(serial)}
        return {
            "queue": queue.queue_id, "priority": priority, "label": label, "task_id": task_id, "max_attempts": 1,
            "command": templates.expand_transformation(transformation, values), "environment": env,
            "resources": {"cores": task["cores"], "memory_mb": task["memory_mb"],
                          "walltime_seconds": task["walltime_seconds"], "disk_mb": task["disk_mb"]},
            "files": [*input_files, {"lfn": output, "kind": "output"}],
        }

    # -- submitting batches --------------------------------------------------------------

    def submitting_batches(self, task_ids: Sequence[int] = ()) -> list[tuple[int, int]]:
        """(task id, batch) of every batch stored but not yet known to be at the server."""
        query = select(jobs.c.task_id, jobs.c.batch).where(jobs.c.state == "submitting").distinct()
        if task_ids:
            query = query.where(jobs.c.task_id.in_(list(task_ids)))
        with self._engine.connect() as conn:
            return sorted((r.task_id, r.batch) for r in conn.execute(query))

    def owner_of(self, task_id: int) -> tuple[str, str]:
        """Owner and VO of a task: its jobs are submitted for them."""
        with self._engine.connect() as conn:
            row = conn.execute(select(tasks.c.owner, tasks.c.vo).where(tasks.c.task_id == task_id)).one()
        return row.owner, row.vo

    def batch(self, task_id: int, batch: int) -> tuple[str, list[dict[str, Any]]]:
        """The request id and the job specs of a batch, in serial order."""
        with self._engine.connect() as conn:
            token = conn.execute(select(tasks.c.token).where(tasks.c.task_id == task_id)).scalar_one()
            request_id = self._request_id({"token": token, "task_id": task_id}, batch)
            rows = conn.execute(
                select(jobs.c.row_id, jobs.c.serial, jobs.c.state, jobs.c.spec)
                .where(jobs.c.task_id == task_id, jobs.c.batch == batch).order_by(jobs.c.serial)
            ).all()
        return request_id, [dict(r._mapping) for r in rows]

    @staticmethod
    def _request_id(task: dict[str, Any], batch: int) -> str:
        """A batch's request id: the task's random token, its id and the batch number."""
        return f"jedi-{task['token'][:20]}-{task['task_id']}-{batch}"

    def record_submitted(self, task_id: int, batch: int, job_ids: list[int]) -> None:
        with self._engine.begin() as conn:
            rows = conn.execute(
                select(jobs.c.row_id, jobs.c.state).where(jobs.c.task_id == task_id, jobs.c.batch == batch)
                .order_by(jobs.c.serial)
            ).all()
            if len(rows) != len(job_ids):
                raise RuntimeError(f"task {task_id} batch {batch}: {len(rows)} jobs stored, "
                                   f"the server returned {len(job_ids)}")
            bulk.update_rows(conn, jobs, "row_id", [
                {"row_id": r.row_id, "job_id": j, "state": "activated" if r.state == "submitting" else r.state}
                for r, j in zip(rows, job_ids, strict=True)
            ])

    # -- outcomes from the server's event stream ------------------------------------------

    def watch_cursor(self) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(select(watch_cursors.c.cursor).where(watch_cursors.c.name == "server")).scalar()
            return int(value or 0)

    def has_jobs(self) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(jobs.c.row_id).limit(1)).first() is not None

    def unmapped(self, events: list[JobEvent]) -> list[int]:
        """Tasks with batches still submitting whose jobs end in `events` under ids JEDI has not
        recorded yet (a submit call whose answer was lost). Other states of such jobs need no
        waiting: the job's end will come and is what counts."""
        events = [e for e in events if e.state in JOB_FINAL_STATES]
        by_task = {e.task_id for e in events if e.task_id}
        if not by_task:
            return []
        with self._engine.connect() as conn:
            pending = {r.task_id for r in conn.execute(
                select(jobs.c.task_id).where(jobs.c.task_id.in_(list(by_task)), jobs.c.state == "submitting")
                .distinct())}
            if not pending:
                return []
            ids = sorted({e.job_id for e in events if e.task_id in pending})
            known: set[int] = set()
            for part in _chunks(ids):
                known.update(conn.execute(select(jobs.c.job_id).where(jobs.c.job_id.in_(part))).scalars())
        return sorted({e.task_id for e in events if e.task_id in pending and e.job_id not in known})

    def finished_jobs_needing_details(self, events: list[JobEvent]) -> dict[int, list[int]]:
        """Task id -> server job ids that these events finish and JEDI has not yet seen finish."""
        ids = sorted({e.job_id for e in events if e.state == "finished" and e.task_id})
        wanted: dict[int, list[int]] = {}
        with self._engine.connect() as conn:
            for part in _chunks(ids):
                for r in conn.execute(select(jobs.c.task_id, jobs.c.job_id, jobs.c.state)
                                      .where(jobs.c.job_id.in_(part))):
                    if r.state not in JOB_FINAL_STATES:
                        wanted.setdefault(r.task_id, []).append(r.job_id)
        return wanted

    def apply_job_events(self, events: list[JobEvent], details: dict[int, JobDetails], cursor: int) -> set[int]:
        """Apply a batch of server events: job states, then for ended jobs their chunks (done,
        to retry, failed for good), outputs and measurements; and store the stream's cursor,
        all in one transaction. An event older than the last one applied to its job is
        ignored, so replaying the stream after a crash changes nothing. Returns the tasks touched."""
        at = now()
        touched: set[int] = set()
        with self._engine.begin() as conn:
            ids = sorted({e.job_id for e in events if e.task_id})
            rows: dict[int, dict[str, Any]] = {}
            # Every column but the (large) spec.
            columns = [c for c in jobs.c if c.name != "spec"]
            for part in _chunks(ids):
                for r in conn.execute(select(*columns).where(jobs.c.job_id.in_(part))):
                    rows[r.job_id] = dict(r._mapping)
            task_ids = sorted({r["task_id"] for r in rows.values()})
            task_rows: dict[int, dict[str, Any]] = {}
            for task_id in task_ids:
                task = self._lock_task(conn, task_id)
                if task is not None:
                    task_rows[task_id] = task
            changed: dict[int, dict[str, Any]] = {}
            ended: list[dict[str, Any]] = []
            for event in events:
                row = rows.get(event.job_id)
                if row is None or row["task_id"] not in task_rows:
                    continue
                if event.cursor <= row["last_cursor"] or row["state"] in JOB_FINAL_STATES:
                    continue
                if event.state == row["state"]:
                    continue  # nothing changes (e.g. the activated event of a job just recorded)
                row["state"], row["last_cursor"] = event.state, event.cursor
                if event.state in JOB_FINAL_STATES:
                    row["end_time"] = at
                    row["error_code"], row["error_diag"] = event.error_code, event.reason[:4000]
                    if event.state == "finished":
                        detail = details.get(event.job_id)
                        if detail is not None:
                            row["max_rss_mb"] = detail.max_rss_mb
                            row["walltime_used"] = detail.walltime_seconds
                            row["cpu_seconds"] = detail.cpu_seconds
                    ended.append(row)
                changed[row["row_id"]] = row
                touched.add(row["task_id"])
            if changed:
                names = ("row_id", "state", "last_cursor", "error_code", "error_diag", "max_rss_mb",
                         "walltime_used", "cpu_seconds", "end_time")
                bulk.update_rows(conn, jobs, "row_id", [{n: r[n] for n in names} for r in changed.values()])
            if ended:
                self._apply_outcomes(conn, ended, task_rows, details, at)
            self._store_cursor(conn, cursor, at)
        return touched

    def _apply_outcomes(
        self, conn: Connection, ended: list[dict[str, Any]], task_rows: dict[int, dict[str, Any]],
        details: dict[int, JobDetails], at: datetime,
    ) -> None:
        content_ids = sorted({c for r in ended for c in r["content_ids"]})
        chunks: dict[int, dict[str, Any]] = {}
        for part in _chunks(content_ids):
            for c in conn.execute(select(contents).where(contents.c.content_id.in_(part))):
                chunks[c.content_id] = dict(c._mapping)
        chunk_updates: list[dict[str, Any]] = []
        outputs: list[dict[str, Any]] = []
        counters: dict[int, list[int]] = {}
        for row in ended:
            task = task_rows[row["task_id"]]
            stopping = task["state"] in (TaskState.ABORTING.value, TaskState.FINISHING.value)
            finished = row["state"] == "finished"
            count = counters.setdefault(row["task_id"], [0, 0])
            if finished:
                count[0] += 1
            elif not (stopping and row["state"] == "cancelled"):
                count[1] += 1
            for content_id in row["content_ids"]:
                chunk = chunks.get(content_id)
                if chunk is None or chunk["job_row"] != row["row_id"]:
                    continue
                if finished:
                    status = "finished"
                elif task["state"] == TaskState.ABORTING.value:
                    status = "cancelled"
                elif chunk["attempts"] < chunk["max_attempts"] and not (stopping and row["state"] == "cancelled"):
                    status = "ready"
                elif stopping and row["state"] == "cancelled":
                    status = "cancelled"
                else:
                    status = "failed"
                update_row = {"content_id": content_id, "status": status,
                              "error_code": chunk["error_code"], "error_diag": chunk["error_diag"]}
                if not finished:
                    update_row["error_code"], update_row["error_diag"] = row["error_code"], row["error_diag"]
                chunk_updates.append(update_row)
            if finished:
                detail = details.get(row["job_id"])
                for out in detail.outputs if detail else []:
                    outputs.append({"task_id": row["task_id"], "job_id": row["job_id"], **out})
        bulk.update_rows(conn, contents, "content_id", chunk_updates)
        for task_id, (ok, bad) in counters.items():
            conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(
                jobs_finished=tasks.c.jobs_finished + ok, jobs_failed=tasks.c.jobs_failed + bad, update_time=at))
        if outputs:
            self._register_outputs(conn, outputs, task_rows, at)

    @staticmethod
    def _register_outputs(conn: Connection, outputs: list[dict[str, Any]], task_rows: dict[int, dict[str, Any]],
                          at: datetime) -> None:
        by_dataset: dict[int, list[dict[str, Any]]] = {}
        for out in outputs:
            dataset_id = task_rows[out["task_id"]]["output_dataset_id"]
            if dataset_id:
                by_dataset.setdefault(dataset_id, []).append(out)
        for dataset_id, items in by_dataset.items():
            lfns = [o["lfn"] for o in items]
            existing: set[str] = set()
            for part in _chunks(lfns):
                existing.update(conn.execute(select(files.c.lfn).where(
                    files.c.dataset_id == dataset_id, files.c.lfn.in_(part))).scalars())
            new = [o for o in items if o["lfn"] not in existing]
            if new:
                bulk.insert_rows(conn, files, [
                    {"dataset_id": dataset_id, "lfn": o["lfn"], "size_bytes": o["size_bytes"],
                     "adler32": o["adler32"], "events": 0,
                     "storage_elements": [o["storage_element"]] if o["storage_element"] else [],
                     "job_id": o["job_id"], "create_time": at}
                    for o in new
                ])
                conn.execute(update(datasets).where(datasets.c.dataset_id == dataset_id).values(update_time=at))

    def _store_cursor(self, conn: Connection, cursor: int, at: datetime) -> None:
        done = conn.execute(update(watch_cursors).where(watch_cursors.c.name == "server")
                            .values(cursor=cursor, update_time=at)).rowcount
        if not done:
            conn.execute(insert(watch_cursors).values(name="server", cursor=cursor, update_time=at))

    def store_cursor(self, cursor: int) -> None:
        with self._engine.begin() as conn:
            self._store_cursor(conn, cursor, now())

    def jobs_in_flight(self, task_id: int, *, states: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The task's jobs at the server that have not ended (optionally only in `states`)."""
        query = select(jobs.c.row_id, jobs.c.job_id, jobs.c.state, jobs.c.queue, jobs.c.spec).where(
            jobs.c.task_id == task_id, jobs.c.job_id.is_not(None), jobs.c.state.not_in(list(JOB_FINAL_STATES)))
        if states:
            query = query.where(jobs.c.state.in_(list(states)))
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(jobs.c.job_id))]

    def tasks_with_jobs_in_flight(self) -> list[int]:
        with self._engine.connect() as conn:
            return list(conn.execute(select(jobs.c.task_id).where(
                jobs.c.state.not_in(list(JOB_FINAL_STATES))).distinct()).scalars())

    def set_job_queues(self, moves: list[tuple[int, str]]) -> None:
        if not moves:
            return
        with self._engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.job_id == bindparam("b_job")).values(queue=bindparam("b_q")),
                         [{"b_job": j, "b_q": q} for j, q in moves])

    # -- post-processing: decide what a task's state becomes ------------------------------

    def postprocess(self, task_id: int) -> str | None:
        """End scouting, end the task, or stop it for too many failures. Returns the new state."""
        at = now()
        with self._engine.begin() as conn:
            task = self._lock_task(conn, task_id)
            if task is None:
                return None
            state = TaskState(task["state"])
            if state in FINAL_STATES or state in (TaskState.REGISTERED, TaskState.DEFINED, TaskState.TORETRY):
                return None
            counts = dict(conn.execute(select(contents.c.status, func.count()).where(contents.c.task_id == task_id)
                                       .group_by(contents.c.status)).all())
            total = sum(counts.values())
            in_flight = conn.execute(select(func.count()).select_from(jobs).where(
                jobs.c.task_id == task_id, jobs.c.state.not_in(list(JOB_FINAL_STATES)))).scalar_one()
            before = task["state"]
            if state == TaskState.SCOUTING:
                self._end_scouting(conn, task, at)
            elif state in GENERATING_STATES:
                if not self._exhausted(conn, task, at) and not counts.get("ready") and not in_flight:
                    self._finish(conn, task, counts, total, at)
            elif state == TaskState.FINISHING and not in_flight:
                conn.execute(update(contents).where(contents.c.task_id == task_id, contents.c.status == "ready")
                             .values(status="cancelled"))
                finished = counts.get("finished", 0)
                new = TaskState.DONE if total and finished == total else TaskState.FINISHED
                self._set_state(conn, task, new, f"finished by request: {_summary(counts, total)}", at)
            elif state == TaskState.ABORTING and not in_flight:
                conn.execute(update(contents).where(contents.c.task_id == task_id,
                                                    contents.c.status.in_(["ready", "running"]))
                             .values(status="cancelled"))
                self._set_state(conn, task, TaskState.ABORTED, f"killed; every job ended: {_summary(counts, total)}",
                                at)
            return task["state"] if task["state"] != before else None

    def _end_scouting(self, conn: Connection, task: dict[str, Any], at: datetime) -> None:
        task_id = task["task_id"]
        scout_rows = conn.execute(select(jobs).where(jobs.c.task_id == task_id, jobs.c.scout.is_(True))).all()
        if not scout_rows or any(r.state not in JOB_FINAL_STATES for r in scout_rows):
            return
        good = [r for r in scout_rows if r.state == "finished"]
        report = dict(task["scout_report"])
        report.update(jobs=len(scout_rows), succeeded=len(good), failed=len(scout_rows) - len(good))
        if not good:
            last = scout_rows[-1]
            why = f"error {last.error_code}: {last.error_diag}" if last.error_code or last.error_diag else last.state
            conn.execute(update(contents).where(contents.c.task_id == task_id, contents.c.status == "ready")
                         .values(status="cancelled"))
            self._set_state(conn, task, TaskState.BROKEN,
                            f"no scout succeeded: {len(scout_rows)} scout job(s) failed; last: {why}", at,
                            scout_report=report)
            return
        measured = scouts.evaluate([scouts.Measurement(r.max_rss_mb, r.walltime_used, r.cpu_seconds) for r in good])
        report.update(memory_mb=measured.memory_mb, walltime_seconds=measured.walltime_seconds,
                      cpu_seconds=measured.cpu_seconds, applied=True)
        reason = (f"scouted: {len(good)} of {len(scout_rows)} scout(s) succeeded; measured {measured.memory_mb} MB "
                  f"peak memory, {measured.walltime_seconds} s walltime (95th percentile); the other jobs ask "
                  f"for {measured.request_memory_mb} MB and {measured.request_walltime_seconds} s")
        self._set_state(conn, task, TaskState.SCOUTED, reason, at, scouted=True, scout_report=report,
                        memory_mb=measured.request_memory_mb, walltime_seconds=measured.request_walltime_seconds)

    def _exhausted(self, conn: Connection, task: dict[str, Any], at: datetime) -> bool:
        ended = task["jobs_finished"] + task["jobs_failed"]
        limit = task["max_failure_rate"]
        if limit >= 1 or ended < FAILURE_RATE_MIN_JOBS:
            return False
        rate = task["jobs_failed"] / ended
        if rate <= limit:
            return False
        self._set_state(conn, task, TaskState.EXHAUSTED,
                        f"{task['jobs_failed']} of {ended} jobs failed ({rate:.0%} > {limit:.0%}): no new jobs "
                        "until the task is retried, finished or killed", at)
        return True

    def _finish(self, conn: Connection, task: dict[str, Any], counts: dict[str, int], total: int, at: datetime) -> None:
        new = TaskState(final_state(counts.get("finished", 0), total))
        self._set_state(conn, task, new, _summary(counts, total), at)

    # -- commands for the server -----------------------------------------------------------

    def pending_commands(self) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(commands).where(commands.c.done_time.is_(None)).order_by(commands.c.command_id))]

    def command_done(self, command_id: int, note: str = "") -> None:
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(update(commands).where(commands.c.command_id == command_id)
                               .values(done_time=at).returning(commands.c.task_id, commands.c.kind)).first()
            if row is not None and note:
                state = conn.execute(select(tasks.c.state).where(tasks.c.task_id == row.task_id)).scalar_one()
                record_event(conn, row.task_id, state, state, note, at)


def _summary(counts: dict[str, int], total: int) -> str:
    parts = [f"{counts.get(s, 0)} {s}" for s in ("finished", "failed", "cancelled") if counts.get(s)]
    return f"{total} chunk(s): " + (", ".join(parts) if parts else "none processed")


def _job_groups(ready: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Chunks never run go in the groups of the first split; retried chunks run one per job."""
    groups: dict[int, list[dict[str, Any]]] = {}
    retries: list[list[dict[str, Any]]] = []
    for chunk in ready:
        if chunk["attempts"] == 0:
            groups.setdefault(chunk["split_group"], []).append(chunk)
        else:
            retries.append([chunk])
    return [groups[g] for g in sorted(groups)] + retries
