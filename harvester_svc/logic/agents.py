"""Harvester's agents, as PanDA's Harvester has them, each a periodic step over what harvester's
own table says, so any of them (or the whole process) can stop at any point and pick up where
it was, and running one twice changes nothing more than running it once:

- monitor: the batch system's word on each live worker → its state; a worker queued too long
  or silent too long is marked to be killed; a worker left half-submitted by a restart is
  killed and failed;
- sweeper: kills what was marked, cleans up after ended workers once the server has them;
- adjuster and submitter: new workers per queue from the server's activated jobs, the workers
  already there and the limits, then submitted through the queue's plugin; they also run on
  their own between cycles (`harvester_submit_seconds`), as Harvester's submitter has a sleep
  time of its own, so that new work does not wait for a whole cycle;
- propagator: every changed worker to the server (ReportWorkers), by version;
- heartbeat: tells the server the instance is alive and does the commands it hands over (kill
  a worker, set a queue's limits).

Plugins block (a command, a library call): they run in threads, one queue's plugin never
stalling the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc

from harvester_svc.domain.adjuster import QueueLoad, adjust_workers, worker_timeout
from harvester_svc.domain.limits import with_limits
from harvester_svc.domain.queue_config import MessengerType, QueueConfig, QueueStatus
from harvester_svc.domain.workers import (
    FINAL_STATES,
    QUEUED_STATES,
    BatchReport,
    SubmittedWorker,
    WorkerRecord,
    WorkerState,
    report_change,
)
from harvester_svc.logic.file_messenger import FileRelay
from harvester_svc.logic.pilots import PilotLaunch
from harvester_svc.logic.plugins.base import PluginError, ResourcePlugin
from harvester_svc.logic.server_link import Command, QueueWork, ServerLink
from harvester_svc.settings import HarvesterSettings
from harvester_svc.store.worker_store import NewWorker, WorkerStore
from panda_runtime.service.db import DbRunner

__all__ = ["VERSION", "Harvester"]

log = logging.getLogger("panda.harvester")

T = TypeVar("T")

VERSION = "panda-mesh-harvester/1"
_INTERRUPTED = "harvester stopped while submitting it; killed so that it never runs unaccounted"
# How often the shared-file messenger looks for streams its pilots opened.
FILE_SCAN_SECONDS = 0.5


class Harvester:
    def __init__(self, settings: HarvesterSettings, db: DbRunner, store: WorkerStore, link: ServerLink,
                 plugins: Mapping[str, ResourcePlugin], queues: Mapping[str, QueueConfig], launch: PilotLaunch) -> None:
        self._settings = settings
        self._id = settings.harvester_id
        self._db = db
        self._store = store
        self._link = link
        self._plugins = plugins
        self._configured = dict(queues)
        self._queues = dict(queues)
        self._launch = launch
        self._files = FileRelay(link)
        self._running: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        # Workers found half-submitted at start: the monitor kills them first.
        self._started_at = datetime.now(UTC)
        self.registered = asyncio.Event()
        # Queues whose largest activated job their workers cannot take (warned once).
        self._unfit: set[str] = set()

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._load_limits()
        self._running = [
            asyncio.create_task(self._register_then_heartbeat(), name="harvester-heartbeat"),
            asyncio.create_task(self._cycles(), name="harvester-cycle"),
            asyncio.create_task(self._file_streams(), name="harvester-files"),
        ]

    async def stop(self) -> None:
        for task in self._running:
            task.cancel()
        for task in self._running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._running = []
        await self._files.close()
        if self._settings.harvester_stop_workers_on_exit:
            await self._stop_workers()

    async def _stop_workers(self) -> None:
        """Kills every live worker (their pilots end their jobs as a kill ends them) and tells the
        server, for a harvester whose workers must not outlive it (`panda up`)."""
        workers = [w for w in await self._db.run(self._store.live, self._id)
                   if w.state not in FINAL_STATES and w.batch_id]
        if not workers:
            return
        log.info("stopping %d workers", len(workers))
        await self._kill_now(workers)
        now = datetime.now(UTC)
        await self._db.run(self._store.change, {
            w.worker_id: {"state": WorkerState.CANCELLED, "error": "harvester stopped", "end_time": now,
                          "killed": True} for w in workers}, now)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.propagate(), 5.0)
        await _logged("sweeper", self.sweep)

    def wake(self) -> None:
        self._wake.set()

    async def _load_limits(self) -> None:
        for queue, limits in (await self._db.run(self._store.limits, self._id)).items():
            if queue in self._configured:
                try:
                    self._queues[queue] = with_limits(self._configured[queue], limits)
                except ValueError as error:
                    log.warning("queue %s: the limits set on it no longer fit its configuration (%s); "
                                "its configured limits apply", queue, error)

    async def _register_then_heartbeat(self) -> None:
        interval = self._settings.harvester_heartbeat_seconds
        delay = 1.0
        while True:
            try:
                server_interval = await self._link.register(VERSION, socket.gethostname(), self._configured.values())
                break
            except grpc.aio.AioRpcError as error:
                if error.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.ALREADY_EXISTS,
                                    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                                    grpc.StatusCode.UNAUTHENTICATED):
                    log.error("the server refused this instance (%s): %s; retrying in %.0f s", error.code().name,
                              error.details(), interval)
                    await asyncio.sleep(interval)
                else:
                    log.warning("cannot register with the server yet (%s); retrying", error.code().name)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
        log.info("registered with the server as %s (%d queues)", self._id, len(self._configured))
        self.registered.set()
        self._wake.set()
        interval = min(interval, float(server_interval or interval))
        while True:
            await _logged("heartbeat", self.heartbeat)
            await asyncio.sleep(interval)

    def _file_workers(self, workers: list[WorkerRecord]) -> list[WorkerRecord]:
        return [w for w in workers if w.state not in FINAL_STATES and w.batch_id
                and (config := self._queues.get(w.queue)) is not None
                and config.messenger == MessengerType.SHARED_FILES]

    async def _file_streams(self) -> None:
        """The shared-file messenger: streams a stopped harvester left open are ended, then every
        stream a pilot opens is served, looked for every `FILE_SCAN_SECONDS`."""
        if not any(config.messenger == MessengerType.SHARED_FILES for config in self._configured.values()):
            return  # no queue of this instance uses it: nothing to look for, ever
        await self.registered.wait()
        await self._files.end_orphans(self._file_workers(await self._db.run(self._store.live, self._id)))
        while True:
            await _logged("shared files", self._serve_files)
            await asyncio.sleep(FILE_SCAN_SECONDS)

    async def _serve_files(self) -> None:
        await self._files.serve(self._file_workers(await self._db.run(self._store.live, self._id)))

    async def _cycles(self) -> None:
        await self.registered.wait()
        loop = asyncio.get_running_loop()
        every = self._settings.harvester_submit_seconds
        while True:
            await self.cycle()
            self._wake.clear()
            next_cycle = loop.time() + self._settings.harvester_cycle_seconds
            # Between cycles the adjuster and submitter look for new work more often: their round
            # is one call and one count, while a cycle asks every batch system about every worker.
            while not self._wake.is_set() and (left := next_cycle - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(every, left))
                if every < left and not self._wake.is_set():
                    await _logged("submitter", self._submit_new_work)

    async def _submit_new_work(self) -> None:
        """The adjuster and submitter between cycles; what they submit reaches the server at once."""
        if await self.adjust_and_submit():
            await self.propagate()

    async def cycle(self) -> None:
        """One round of every agent, each on its own (one failing leaves the others to run)."""
        await _logged("monitor", self.monitor)
        await _logged("sweeper", self.sweep)
        await _logged("submitter", self.adjust_and_submit)
        await _logged("propagator", self.propagate)

    # ---- monitor ---------------------------------------------------------------------------------------

    async def monitor(self) -> None:
        workers = [w for w in await self._db.run(self._store.live, self._id) if w.state not in FINAL_STATES]
        now = datetime.now(UTC)
        changes: dict[str, dict[str, object]] = {}
        interrupted = [w for w in workers if not w.batch_id and w.submit_time < self._started_at]
        if interrupted:
            await self._kill_now(interrupted)
            for worker in interrupted:
                changes[worker.worker_id] = {"state": WorkerState.FAILED, "error": _INTERRUPTED, "end_time": now,
                                             "killed": True}
        seen: dict[str, BatchReport] = {}
        for _, reports in await self._per_plugin("check", [w for w in workers if w.batch_id],
                                                 lambda plugin, batch: plugin.check(batch)):
            seen.update((report.worker_id, report) for report in reports)
        for worker in workers:
            report = seen.get(worker.worker_id)
            if report is not None:
                change = report_change(worker, report, now)
                if change:
                    changes[worker.worker_id] = change
        await self._db.run(self._store.change, changes, now)
        await self._timeouts(workers, changes, seen, now)

    async def _timeouts(self, workers: list[WorkerRecord], changes: Mapping[str, Mapping[str, object]],
                        seen: Mapping[str, BatchReport], now: datetime) -> None:
        by_reason: dict[str, list[str]] = defaultdict(list)
        for worker in workers:
            config = self._queues.get(worker.queue)
            state = WorkerState(str(changes.get(worker.worker_id, {}).get("state", worker.state)))
            if config is None or worker.kill_reason or not worker.batch_id:
                continue
            report = seen.get(worker.worker_id)
            # The batch system seeing the worker run is its sign of life (the pilot talks to the
            # server, not to harvester, in the grpc messenger).
            alive_at = now if report is not None and report.state in (WorkerState.RUNNING, WorkerState.IDLE) else None
            kill = worker_timeout(config, state, now, worker.submit_time, worker.start_time, alive_at)
            if kill is not None:
                by_reason[f"{kill.reason}: {kill.detail}"].append(worker.worker_id)
        for reason, worker_ids in by_reason.items():
            log.warning("killing %d workers: %s", len(worker_ids), reason)
            await self._db.run(self._store.ask_kill, worker_ids, reason, now)

    # ---- sweeper ---------------------------------------------------------------------------------------

    async def sweep(self) -> None:
        workers = await self._db.run(self._store.live, self._id)
        now = datetime.now(UTC)
        to_kill = [w for w in workers if w.kill_reason and not w.killed and w.state not in FINAL_STATES]
        if to_kill:
            await self._kill_now(to_kill)
            await self._db.run(self._store.change, {
                w.worker_id: {"state": WorkerState.CANCELLED, "error": w.kill_reason, "end_time": now, "killed": True}
                for w in to_kill}, now)
        # An ended worker is cleaned once the server has its last state (its record outlives it there).
        ended = [w for w in workers if w.state in FINAL_STATES and w.reported_version >= w.version and not w.cleaned]
        for group, _ in await self._per_plugin("clean", ended, lambda plugin, batch: plugin.clean(batch),
                                               errors=(PluginError, OSError)):
            await self._db.run(self._store.mark_cleaned, [w.worker_id for w in group], now)
        keep = timedelta(days=self._settings.harvester_keep_ended_days)
        await self._db.run(self._store.forget_cleaned, self._id, now - keep)

    async def _kill_now(self, workers: list[WorkerRecord]) -> None:
        for group, errors in await self._per_plugin("kill", workers, lambda plugin, batch: plugin.kill(batch)):
            for worker, error_text in zip(group, errors, strict=False):
                if error_text:
                    log.warning("worker %s: the kill failed: %s", worker.worker_id, error_text)

    async def _per_plugin(self, verb: str, workers: list[WorkerRecord],
                          call: Callable[[ResourcePlugin, list[SubmittedWorker]], T],
                          errors: tuple[type[Exception], ...] = (PluginError,)) -> list[tuple[list[WorkerRecord], T]]:
        """`call` once per plugin with its workers, in a thread; each group with what its plugin
        answered. A plugin that fails the whole call is logged and its group left for next time."""
        by_plugin: dict[str, list[WorkerRecord]] = defaultdict(list)
        for worker in workers:
            by_plugin[worker.plugin].append(worker)
        answered: list[tuple[list[WorkerRecord], T]] = []
        for plugin_name, group in by_plugin.items():
            plugin = self._plugins.get(plugin_name)
            if plugin is None:
                continue
            try:
                answer = await asyncio.to_thread(call, plugin, [w.submitted for w in group])
            except errors as error:
                log.warning("plugin %s could not %s %d workers: %s", plugin_name, verb, len(group), error)
                continue
            answered.append((group, answer))
        return answered

    # ---- adjuster and submitter ------------------------------------------------------------------------

    async def adjust_and_submit(self) -> int:
        """Submits the workers the adjuster decides; how many it submitted."""
        queues = {name: config for name, config in self._queues.items() if config.submitter.plugin in self._plugins}
        if not queues:
            return 0
        work = await self._link.queue_work(sorted(queues))
        counts = await self._db.run(self._store.counts, self._id)
        loads = []
        for name, config in queues.items():
            queue_work = work.get(name)
            if queue_work is None:
                continue
            if not queue_work.online and config.status == QueueStatus.ONLINE:
                config = with_limits(config, {"online": False})
            self._warn_unfit(config, queue_work)
            workers = counts.get(name, {})
            # A push worker waiting to start holds the jobs fetched for it.
            fetched = sum(workers.get(state, 0) for state in QUEUED_STATES) * config.n_jobs_per_worker \
                if config.map_type.is_push else 0
            loads.append(QueueLoad(config, queue_work.activated_jobs, workers, fetched))
        submitted = 0
        for decision in adjust_workers(loads):
            if decision.new_workers > 0:
                submitted += await self._submit(queues[decision.queue], decision.new_workers)
        return submitted

    def _warn_unfit(self, config: QueueConfig, work: QueueWork) -> None:
        """Says once (until it fits again) that a queue's workers are too small for its largest
        job: its pilots will never take that job, however many start."""
        needs = []
        if work.largest_cores > config.resources.cores:
            needs.append(f"{work.largest_cores} cores (workers offer {config.resources.cores})")
        if work.largest_memory_mb > config.resources.memory_mb:
            needs.append(f"{work.largest_memory_mb} MB (workers offer {config.resources.memory_mb})")
        if not needs:
            self._unfit.discard(config.name)
        elif config.name not in self._unfit:
            self._unfit.add(config.name)
            log.warning("queue %s: an activated job needs %s; raise the queue's resources in the configuration",
                        config.name, " and ".join(needs))

    async def _submit(self, config: QueueConfig, count: int) -> int:
        plugin = self._plugins[config.submitter.plugin]
        resources = config.resources
        new = [NewWorker(config.name, plugin.name, resources.cores, resources.memory_mb, resources.walltime_seconds,
                         str(self._settings.access_root)) for _ in range(count)]
        now = datetime.now(UTC)
        workers = await self._db.run(self._store.create, self._id, new, now)
        changes: dict[str, dict[str, object]] = {}
        if config.map_type.is_push:
            # The job fetcher: a push worker is submitted only with the jobs it is to run.
            fetched = await asyncio.gather(*(self._files.prefetch(w, config.n_jobs_per_worker) for w in workers))
            for worker, jobs in zip(workers, fetched, strict=True):
                if not jobs:
                    changes[worker.worker_id] = {"state": WorkerState.CANCELLED, "end_time": datetime.now(UTC),
                                                 "error": "not submitted: no job was there for it"}
            workers = [w for w in workers if w.worker_id not in changes]
        specs = [self._launch.spec(config, worker) for worker in workers]
        try:
            outcomes = await asyncio.to_thread(plugin.submit, specs)
        except PluginError as error:
            outcomes = []
            log.warning("queue %s: plugin %s could not submit: %s", config.name, plugin.name, error)
        by_id = {outcome.worker_id: outcome for outcome in outcomes}
        now = datetime.now(UTC)
        for worker in workers:
            outcome = by_id.get(worker.worker_id)
            if outcome is not None and outcome.batch_id:
                changes[worker.worker_id] = {"batch_id": outcome.batch_id}
                self._files.submitted(worker.worker_id)
            else:
                await self._files.release(worker.worker_id)
                why = outcome.error if outcome is not None else "the plugin could not submit it"
                changes[worker.worker_id] = {"state": WorkerState.FAILED, "error": why, "end_time": now}
        await self._db.run(self._store.change, changes, now)
        done = sum(1 for values in changes.values() if "batch_id" in values)
        log.info("queue %s: submitted %d of %d new workers through %s", config.name, done, count, plugin.name)
        return done

    # ---- propagator ------------------------------------------------------------------------------------

    async def propagate(self) -> int:
        """Reports every changed worker to the server; how many."""
        reported = 0
        while True:
            workers = await self._db.run(self._store.unreported, self._id, 1000)
            if not workers:
                return reported
            refused = await self._link.report(workers)
            for worker_id, why in refused.items():
                log.warning("the server refused worker %s: %s", worker_id, why)
            await self._db.run(self._store.mark_reported, {w.worker_id: w.version for w in workers})
            reported += len(workers)
            if len(workers) < 1000:
                return reported

    # ---- heartbeat and commands ------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        commands = await self._link.heartbeat()
        if not commands:
            return
        results = {command.command_id: await self._do(command) for command in commands}
        await self._link.complete(results)
        self._wake.set()

    async def _do(self, command: Command) -> tuple[bool, str]:
        now = datetime.now(UTC)
        if command.kind == "kill_worker":
            worker = await self._db.run(self._store.get, command.worker_id)
            if worker is None or worker.harvester_id != self._id:
                return False, f"worker {command.worker_id} is not one of this instance's"
            if worker.state in FINAL_STATES:
                return True, f"worker {command.worker_id} had already ended ({worker.state})"
            await self._db.run(self._store.ask_kill, [worker.worker_id], f"killed by {command.issuer or 'an operator'}",
                               now)
            return True, f"worker {command.worker_id} is being killed"
        if command.kind == "set_queue_limits":
            config = self._configured.get(command.queue_id)
            if config is None:
                return False, f"queue {command.queue_id} is not provisioned by this instance"
            current = await self._db.run(self._store.limits, self._id)
            limits = {**current.get(command.queue_id, {}), **command.limits}
            try:
                self._queues[command.queue_id] = with_limits(config, limits)
            except ValueError as error:
                return False, str(error)
            await self._db.run(self._store.set_limits, self._id, command.queue_id, limits, now)
            return True, f"queue {command.queue_id}: " + ", ".join(f"{k}={v}" for k, v in sorted(limits.items()))
        return False, f"unknown command {command.kind!r}"


async def _logged(name: str, step: Callable[[], Awaitable[object]]) -> None:
    """Runs one agent's step; a failure is logged and the next round tries again."""
    try:
        await step()
    except grpc.aio.AioRpcError as error:
        log.warning("%s: the server did not answer (%s): %s", name, error.code().name, error.details())
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s failed; it runs again next cycle", name)
