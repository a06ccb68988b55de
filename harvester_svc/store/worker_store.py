"""Harvester's workers: created before the batch system hears of them, changed by what the batch
system and commands say, reported to the server by version. The store decides nothing: which
moves are allowed is `harvester_svc.domain.workers`' to say."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update

from harvester_svc.domain.workers import FINAL_STATES, WorkerRecord, WorkerState, worker_id_of
from harvester_svc.store.tables import harvester_limits, harvester_workers
from panda_runtime.service.db import Store, aware

__all__ = ["NewWorker", "WorkerStore"]

W = harvester_workers
_FINAL = [str(state) for state in FINAL_STATES]


def _record(row: Row[Any]) -> WorkerRecord:
    m = row._mapping
    return WorkerRecord(
        worker_id=m["worker_id"], harvester_id=m["harvester_id"], queue=m["queue"], plugin=m["plugin"],
        batch_id=m["batch_id"], state=WorkerState(m["state"]), node=m["node"], error=m["error"],
        exit_code=m["exit_code"], cores=m["cores"], memory_mb=m["memory_mb"],
        walltime_seconds=m["walltime_seconds"], access_point=m["access_point"],
        submit_time=aware(m["submit_time"]) or datetime.now(UTC), start_time=aware(m["start_time"]),
        end_time=aware(m["end_time"]), update_time=aware(m["update_time"]) or datetime.now(UTC),
        kill_reason=m["kill_reason"], killed=bool(m["killed"]), cleaned=bool(m["cleaned"]), version=m["version"],
        reported_version=m["reported_version"],
    )


class NewWorker:
    """What the submitter asks for: a worker of `queue`, its access point under `access_root`."""

    __slots__ = ("access_root", "cores", "memory_mb", "plugin", "queue", "walltime_seconds")

    def __init__(self, queue: str, plugin: str, cores: int, memory_mb: int, walltime_seconds: int,
                 access_root: str) -> None:
        self.queue, self.plugin, self.access_root = queue, plugin, access_root
        self.cores, self.memory_mb, self.walltime_seconds = cores, memory_mb, walltime_seconds


class WorkerStore(Store):
    def create(self, harvester_id: str, new: Sequence[NewWorker], now: datetime) -> list[WorkerRecord]:
        """Workers in state SUBMITTED with no batch id yet, each with its id and access point."""
        created: list[WorkerRecord] = []
        with self._engine.begin() as conn:
            for worker in new:
                number = conn.execute(insert(W).values(
                    worker_id=f"{harvester_id}-pending-{uuid.uuid4().hex}", harvester_id=harvester_id,
                    queue=worker.queue, plugin=worker.plugin, state=WorkerState.SUBMITTED, cores=worker.cores,
                    memory_mb=worker.memory_mb, walltime_seconds=worker.walltime_seconds, access_point="",
                    submit_time=now, update_time=now,
                ).returning(W.c.number)).scalar_one()
                worker_id = worker_id_of(harvester_id, number)
                access_point = f"{worker.access_root.rstrip('/')}/{worker_id}"
                row = conn.execute(update(W).where(W.c.number == number).values(
                    worker_id=worker_id, access_point=access_point).returning(*W.c)).one()
                created.append(_record(row))
        return created

    def get(self, worker_id: str) -> WorkerRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(W).where(W.c.worker_id == worker_id)).first()
        return _record(row) if row is not None else None

    def live(self, harvester_id: str) -> list[WorkerRecord]:
        """Every worker not yet cleaned up: those the batch system may still hold, and ended ones
        whose leftovers remain."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(W).where(W.c.harvester_id == harvester_id, W.c.cleaned.is_(False))
                                .order_by(W.c.number)).all()
        return [_record(row) for row in rows]

    def counts(self, harvester_id: str) -> dict[str, dict[WorkerState, int]]:
        """Workers in a live state, by queue and state."""
        query = (select(W.c.queue, W.c.state, func.count()).where(
            W.c.harvester_id == harvester_id, W.c.cleaned.is_(False), W.c.state.not_in(_FINAL))
            .group_by(W.c.queue, W.c.state))
        found: dict[str, dict[WorkerState, int]] = {}
        with self._engine.connect() as conn:
            for queue, state, count in conn.execute(query):
                found.setdefault(queue, {})[WorkerState(state)] = count
        return found

    def change(self, changes: Mapping[str, Mapping[str, object]], now: datetime) -> int:
        """Applies each worker's column changes (already judged allowed), bumping its version."""
        changed = 0
        with self._engine.begin() as conn:
            for worker_id, values in changes.items():
                if not values:
                    continue
                changed += conn.execute(update(W).where(W.c.worker_id == worker_id).values(
                    **values, update_time=now, version=W.c.version + 1)).rowcount
        return changed

    def ask_kill(self, worker_ids: Iterable[str], reason: str, now: datetime) -> int:
        """Marks live workers to be killed; a worker already ended or already marked is left alone."""
        ids = list(worker_ids)
        if not ids:
            return 0
        with self._engine.begin() as conn:
            return conn.execute(update(W).where(
                W.c.worker_id.in_(ids), W.c.state.not_in(_FINAL), W.c.kill_reason == "",
            ).values(kill_reason=reason, update_time=now)).rowcount

    def mark_killed(self, worker_ids: Iterable[str], now: datetime) -> None:
        ids = list(worker_ids)
        if ids:
            with self._engine.begin() as conn:
                conn.execute(update(W).where(W.c.worker_id.in_(ids)).values(killed=True, update_time=now))

    def mark_cleaned(self, worker_ids: Iterable[str], now: datetime) -> None:
        ids = list(worker_ids)
        if ids:
            with self._engine.begin() as conn:
                conn.execute(update(W).where(W.c.worker_id.in_(ids)).values(cleaned=True, update_time=now))

    def unreported(self, harvester_id: str, limit: int) -> list[WorkerRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(W).where(W.c.harvester_id == harvester_id,
                                                W.c.reported_version < W.c.version)
                                .order_by(W.c.number).limit(limit)).all()
        return [_record(row) for row in rows]

    def mark_reported(self, versions: Mapping[str, int]) -> None:
        """The server has each worker as of that version (a newer change stays unreported)."""
        with self._engine.begin() as conn:
            for worker_id, version in versions.items():
                conn.execute(update(W).where(W.c.worker_id == worker_id, W.c.reported_version < version)
                             .values(reported_version=version))

    def forget_cleaned(self, harvester_id: str, before: datetime) -> int:
        """Drops cleaned workers the server has, ended before `before`: the registry keeps them."""
        with self._engine.begin() as conn:
            return conn.execute(delete(W).where(
                W.c.harvester_id == harvester_id, W.c.cleaned.is_(True), W.c.reported_version >= W.c.version,
                or_(W.c.end_time < before, and_(W.c.end_time.is_(None), W.c.update_time < before)),
            )).rowcount

    # ---- limits operators set --------------------------------------------------------------------------

    def set_limits(self, harvester_id: str, queue: str, limits: Mapping[str, object], now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(harvester_limits).where(harvester_limits.c.harvester_id == harvester_id,
                                                        harvester_limits.c.queue == queue))
            conn.execute(insert(harvester_limits).values(harvester_id=harvester_id, queue=queue,
                                                         limits=dict(limits), update_time=now))

    def limits(self, harvester_id: str) -> dict[str, dict[str, object]]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(harvester_limits.c.queue, harvester_limits.c.limits)
                                .where(harvester_limits.c.harvester_id == harvester_id)).all()
        return {queue: dict(limits) for queue, limits in rows}
