"""Harvester instances, their queue configurations and their commands: registration, heartbeats,
commands queued and completed, and the reads of each; and the queues' loads, read from the jobs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from panda_runtime.contracts.harvester import OPEN_COMMAND_STATES
from panda_runtime.service.bulk import insert_statement, run_statements, update_statement
from panda_runtime.service.db import Store
from panda_runtime.service.errors import AlreadyExists, NotFound
from panda_runtime.service.principals import Principal
from server_svc.domain.harvester import (
    HarvesterCommand,
    HarvesterInstance,
    LimitValue,
    QueueConfig,
    QueueLoad,
    apply_limits,
    check_queues_free,
    check_server_queues,
    check_speaker,
    complete_command,
    kill_worker_command,
    not_registered,
    queue_online,
    set_limits_command,
)
from server_svc.domain.states import JobState
from server_svc.store.harvester_rows import (
    CONFIG_COLUMNS,
    command_from_row,
    config_from_row,
    instance_from_row,
    instance_queues,
    lock_instance,
)
from server_svc.store.tables import (
    harvester_commands,
    harvester_instances,
    harvester_queue_configs,
    harvester_workers,
    jobs,
    queues,
)
from server_svc.store.worker_store import count_live_workers, worker_from_row

__all__ = ["HarvesterStore"]

_COMMAND_VALUES = tuple(str(c.name) for c in harvester_commands.columns if c.name != "command_id")
_ACTIVATED, _RUNNING = JobState.ACTIVATED.value, JobState.RUNNING.value
_STARTING = (JobState.SENT.value, JobState.STARTING.value)


class HarvesterStore(Store):
    # -- what instances do ----------------------------------------------------------------------

    def register(self, instance: HarvesterInstance, configs: Sequence[QueueConfig], caller: Principal,
                 heartbeat_interval_seconds: int) -> HarvesterInstance:
        """Record the instance (new, or again after a restart) and replace its queue configurations
        with `configs` (checked well formed): each queue must be the server's, and not provisioned
        by another instance that is alive (a dead one's is taken over)."""
        now = instance.register_time
        queue_ids = [config.queue_id for config in configs]
        try:
            with self._engine.begin() as conn:
                known = lock_instance(conn, instance.harvester_id, self._sqlite)
                check_speaker(known, instance.harvester_id, caller, registering=True)
                server_queues = set(conn.execute(select(queues.c.queue_id).where(queues.c.queue_id.in_(queue_ids)))
                                    .scalars()) if queue_ids else set()
                check_server_queues(configs, server_queues)
                check_queues_free(instance.harvester_id, queue_ids, self._owners(conn, queue_ids), now,
                                  heartbeat_interval_seconds)
                if known is None:
                    conn.execute(insert(harvester_instances).values(
                        harvester_id=instance.harvester_id, subject=caller.subject, version=instance.version,
                        host=instance.host, register_time=now, heartbeat_time=now))
                else:
                    conn.execute(update(harvester_instances)
                                 .where(harvester_instances.c.harvester_id == instance.harvester_id)
                                 .values(version=instance.version, host=instance.host, register_time=now,
                                         heartbeat_time=now))
                # Its own configurations, and those of dead instances it takes over.
                replaced = harvester_queue_configs.c.harvester_id == instance.harvester_id
                if queue_ids:
                    replaced = replaced | harvester_queue_configs.c.queue_id.in_(queue_ids)
                conn.execute(delete(harvester_queue_configs).where(replaced))
                for config in configs:
                    config.harvester_id, config.update_time = instance.harvester_id, now
                run_statements(conn, [insert_statement(conn, harvester_queue_configs, list(configs), CONFIG_COLUMNS)])
        except IntegrityError as error:
            raise AlreadyExists(f"harvester {instance.harvester_id}: another registration took the instance or one of "
                                "its queues at the same moment; try again") from error
        return self.get_instance(instance.harvester_id)

    @staticmethod
    def _owners(conn: Connection, queue_ids: Sequence[str]) -> dict[str, HarvesterInstance]:
        """The instance provisioning each of the queues, for those some instance provisions."""
        if not queue_ids:
            return {}
        rows = conn.execute(
            select(harvester_queue_configs.c.queue_id, harvester_instances)
            .join(harvester_instances,
                  harvester_instances.c.harvester_id == harvester_queue_configs.c.harvester_id)
            .where(harvester_queue_configs.c.queue_id.in_(queue_ids))
        )
        return {row.queue_id: instance_from_row(row._mapping, []) for row in rows}

    def heartbeat(self, harvester_id: str, caller: Principal, now: datetime) -> list[HarvesterCommand]:
        """The instance is alive now; its commands not yet done, oldest first, the pending ones now
        delivered."""
        with self._engine.begin() as conn:
            check_speaker(lock_instance(conn, harvester_id, self._sqlite), harvester_id, caller)
            conn.execute(update(harvester_instances).where(harvester_instances.c.harvester_id == harvester_id)
                         .values(heartbeat_time=now))
            rows = conn.execute(
                select(harvester_commands)
                .where(harvester_commands.c.harvester_id == harvester_id,
                       harvester_commands.c.state.in_(sorted(OPEN_COMMAND_STATES)))
                .order_by(harvester_commands.c.command_id)
            )
            commands = [command_from_row(row._mapping) for row in rows]
            pending = [c.command_id for c in commands if c.state == "pending"]
            if pending:
                conn.execute(update(harvester_commands).where(harvester_commands.c.command_id.in_(pending))
                             .values(state="delivered", update_time=now))
                for command in commands:
                    if command.state == "pending":
                        command.state, command.update_time = "delivered", now
        return commands

    def complete_commands(self, harvester_id: str, results: Sequence[tuple[int, bool, str]], caller: Principal,
                          now: datetime) -> None:
        """The instance's word on its commands (id, done, result). A command it completes twice
        keeps its first outcome; one that is not the instance's is NOT_FOUND (nothing is written).
        Limits an instance applied become its queue's."""
        with self._engine.begin() as conn:
            check_speaker(lock_instance(conn, harvester_id, self._sqlite), harvester_id, caller)
            ids = sorted({command_id for command_id, _, _ in results})
            rows = conn.execute(select(harvester_commands).where(harvester_commands.c.command_id.in_(ids),
                                                                  harvester_commands.c.harvester_id == harvester_id))
            commands = {row.command_id: command_from_row(row._mapping) for row in rows}
            changed: dict[int, HarvesterCommand] = {}
            for index, (command_id, done, result) in enumerate(results):
                command = commands.get(command_id)
                if command is None:
                    raise NotFound(f"results[{index}].command_id: harvester {harvester_id} has no command {command_id}",
                                   resource_type="harvester command", resource_name=str(command_id))
                if complete_command(command, done, result, now):
                    changed[command_id] = command
            # Limits applied, in the order they were queued: the last word wins.
            limits = sorted((c for c in changed.values() if c.kind == "set_queue_limits" and c.state == "done"),
                            key=lambda c: c.command_id)
            configs = self._configs(conn, [c.queue_id for c in limits], harvester_id)
            applied: dict[str, QueueConfig] = {}
            for command in limits:
                config = applied.get(command.queue_id) or configs.get(command.queue_id)
                if config is not None:  # still the instance's
                    applied[command.queue_id] = apply_limits(config, command.limits)
                    applied[command.queue_id].update_time = now
            run_statements(conn, [
                update_statement(conn, harvester_commands, "command_id", list(changed.values()),
                                 ("state", "result", "update_time")),
                update_statement(conn, harvester_queue_configs, "queue_id", list(applied.values()),
                                 ("online", "max_workers", "queue_limit_workers", "max_new_workers_per_cycle",
                                  "queue_limit_jobs", "update_time")),
            ])

    @staticmethod
    def _configs(conn: Connection, queue_ids: Sequence[str], harvester_id: str) -> dict[str, QueueConfig]:
        if not queue_ids:
            return {}
        rows = conn.execute(select(harvester_queue_configs).where(
            harvester_queue_configs.c.queue_id.in_(sorted(set(queue_ids))),
            harvester_queue_configs.c.harvester_id == harvester_id))
        return {row.queue_id: config_from_row(row._mapping) for row in rows}

    def queue_loads(self, queue_ids: Sequence[str]) -> list[QueueLoad]:
        """Each queue's jobs waiting (activated), handed out (sent, starting) and running, and the
        largest activated job's needs, field by field: one grouped statement over the jobs of
        those states, whatever the number of queues. A queue the server does not have is left out."""
        active = jobs.c.state.in_([_ACTIVATED, *_STARTING, _RUNNING])
        activated = jobs.c.state == _ACTIVATED

        def largest(column: Any) -> Any:
            return func.coalesce(func.max(column).filter(activated), 0)

        query = (
            select(
                queues.c.queue_id, queues.c.status,
                func.count(jobs.c.job_id).filter(activated),
                func.count(jobs.c.job_id).filter(jobs.c.state.in_(_STARTING)),
                func.count(jobs.c.job_id).filter(jobs.c.state == _RUNNING),
                largest(jobs.c.cores), largest(jobs.c.memory_mb), largest(jobs.c.walltime_seconds),
                largest(jobs.c.disk_mb),
            )
            .select_from(queues.outerjoin(jobs, and_(jobs.c.queue == queues.c.queue_id, active)))
            .group_by(queues.c.queue_id, queues.c.status)
            .order_by(queues.c.queue_id)
        )
        if queue_ids:
            query = query.where(queues.c.queue_id.in_(sorted(set(queue_ids))))
        with self._engine.connect() as conn:
            return [QueueLoad(row[0], queue_online(row[1]), *map(int, row[2:])) for row in conn.execute(query)]

    # -- what operators do ----------------------------------------------------------------------

    def kill_worker(self, worker_id: str, reason: str, issuer: str, now: datetime) -> HarvesterCommand:
        with self._engine.begin() as conn:
            row = conn.execute(select(harvester_workers).where(harvester_workers.c.worker_id == worker_id)).first()
            if row is None:
                raise NotFound(f"worker {worker_id} not found", resource_type="worker",
                               resource_name=f"workers/{worker_id}")
            return self._queue(conn, kill_worker_command(worker_from_row(row._mapping), reason, issuer, now))

    def set_queue_limits(self, queue_id: str, limits: Mapping[str, LimitValue], issuer: str,
                         now: datetime) -> HarvesterCommand:
        with self._engine.begin() as conn:
            row = conn.execute(select(harvester_queue_configs)
                               .where(harvester_queue_configs.c.queue_id == queue_id)).first()
            if row is None:
                raise NotFound(f"queue {queue_id} is provisioned by no harvester instance",
                               resource_type="queue config", resource_name=f"queueConfigs/{queue_id}")
            return self._queue(conn, set_limits_command(config_from_row(row._mapping), limits, issuer, now))

    @staticmethod
    def _queue(conn: Connection, command: HarvesterCommand) -> HarvesterCommand:
        values = {name: getattr(command, name) for name in _COMMAND_VALUES}
        command.command_id = conn.execute(
            insert(harvester_commands).values(**values).returning(harvester_commands.c.command_id)
        ).scalar_one()
        return command

    # -- reads ----------------------------------------------------------------------------------

    def get_instance(self, harvester_id: str) -> HarvesterInstance:
        with self._engine.connect() as conn:
            row = conn.execute(select(harvester_instances)
                               .where(harvester_instances.c.harvester_id == harvester_id)).first()
            if row is None:
                raise not_registered(harvester_id)
            instance = instance_from_row(row._mapping, instance_queues(conn, [harvester_id])[harvester_id])
            instance.worker_counts = count_live_workers(conn, harvester_workers.c.harvester_id,
                                                        [harvester_id]).get(harvester_id, {})
        return instance

    def list_instances(self, *, after: str, limit: int) -> list[HarvesterInstance]:
        """By id, from the one after `after`."""
        query = select(harvester_instances).order_by(harvester_instances.c.harvester_id).limit(limit)
        if after:
            query = query.where(harvester_instances.c.harvester_id > after)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            ids = [row.harvester_id for row in rows]
            provisioned = instance_queues(conn, ids)
            counts = count_live_workers(conn, harvester_workers.c.harvester_id, ids)
        instances = [instance_from_row(row._mapping, provisioned[row.harvester_id]) for row in rows]
        for instance in instances:
            instance.worker_counts = counts.get(instance.harvester_id, {})
        return instances

    def get_config(self, queue_id: str) -> QueueConfig:
        with self._engine.connect() as conn:
            row = conn.execute(select(harvester_queue_configs)
                               .where(harvester_queue_configs.c.queue_id == queue_id)).first()
            if row is None:
                raise NotFound(f"queue {queue_id} is provisioned by no harvester instance",
                               resource_type="queue config", resource_name=f"queueConfigs/{queue_id}")
            config = config_from_row(row._mapping)
            config.worker_counts = count_live_workers(conn, harvester_workers.c.queue, [queue_id]).get(queue_id, {})
        return config

    def list_configs(self, *, harvester_id: str, after: str, limit: int) -> list[QueueConfig]:
        """By queue id, from the one after `after`; only `harvester_id`'s when given."""
        table = harvester_queue_configs
        query = select(table).order_by(table.c.queue_id).limit(limit)
        if harvester_id:
            query = query.where(table.c.harvester_id == harvester_id)
        if after:
            query = query.where(table.c.queue_id > after)
        with self._engine.connect() as conn:
            configs = [config_from_row(row._mapping) for row in conn.execute(query)]
            counts = count_live_workers(conn, harvester_workers.c.queue, [c.queue_id for c in configs])
        for config in configs:
            config.worker_counts = counts.get(config.queue_id, {})
        return configs

    def list_commands(self, harvester_id: str, *, before: int, limit: int) -> list[HarvesterCommand]:
        """The instance's commands, newest first, from the one before `before` (0: the newest)."""
        with self._engine.connect() as conn:
            exists = conn.execute(select(func.count()).select_from(harvester_instances)
                                  .where(harvester_instances.c.harvester_id == harvester_id)).scalar_one()
            if not exists:
                raise not_registered(harvester_id)
            query = (select(harvester_commands).where(harvester_commands.c.harvester_id == harvester_id)
                     .order_by(harvester_commands.c.command_id.desc()).limit(limit))
            if before:
                query = query.where(harvester_commands.c.command_id < before)
            return [command_from_row(row._mapping) for row in conn.execute(query)]

