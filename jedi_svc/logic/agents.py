"""JEDI's agents, each a loop over what the tables say is to be done, so any of them (or the
whole process) can stop at any point and pick up where it was:

- refiner: registered -> defined -> ready, toretry -> ready (logic.refiner);
- generator: brokerage and job generation, in batches stored before they are submitted
  (logic.generator, logic.submitter);
- watcher: the server's job events: job states, outcomes of ended jobs (logic.watcher);
- post-processor: ends scouting, detects exhaustion, decides the end state (logic.postprocessor);
- commander: what commands need from the server (logic.commander).

Each does each task's work through a TaskGuard (logic.confinement): a task whose own data makes
its work fail is broken, with the reason in its history, and the round goes on with the others.

An agent that changed something wakes the others; otherwise each looks again after the
interval (jedi_interval_seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import grpc

from jedi_svc.logic.commander import Commander
from jedi_svc.logic.confinement import TaskGuard
from jedi_svc.logic.generator import Generator
from jedi_svc.logic.postprocessor import PostProcessor
from jedi_svc.logic.refiner import Refiner
from jedi_svc.logic.server_client import ServerCalls
from jedi_svc.logic.submitter import Submitter
from jedi_svc.logic.watcher import Watcher
from jedi_svc.settings import JediSettings
from jedi_svc.store.command_store import CommandStore
from jedi_svc.store.generation_store import GenerationStore
from jedi_svc.store.postprocess_store import PostprocessStore
from jedi_svc.store.refine_store import RefineStore
from jedi_svc.store.watch_store import WatchStore
from panda_runtime.service.db import DbRunner, log_failure
from panda_runtime.service.notify import Notifier

__all__ = ["AgentStores", "Agents"]

log = logging.getLogger("panda.jedi")

_POSTPROCESSOR = "post-processor"


@dataclass(frozen=True, slots=True)
class AgentStores:
    refine: RefineStore
    generation: GenerationStore
    watch: WatchStore
    postprocess: PostprocessStore
    command: CommandStore


class Agents:
    def __init__(self, settings: JediSettings, db: DbRunner, stores: AgentStores, server: ServerCalls,
                 task_events: Notifier) -> None:
        self._settings = settings
        # Told after every round of an agent: the tasks may have changed.
        self._task_events = task_events
        # Every agent does each task's work through it: one task's failure breaks that task alone.
        guard = TaskGuard(db, stores.refine)
        submitter = Submitter(db, stores.generation, server, guard)
        self.refiner = Refiner(db, stores.refine, guard)
        self.generator = Generator(settings, db, stores.generation, server, submitter, guard)
        self.watcher = Watcher(db, stores.watch, server, submitter, self._jobs_changed, guard)
        self.postprocessor = PostProcessor(db, stores.postprocess, guard)
        self.commander = Commander(db, stores.command, server, submitter, guard)
        self._wakers: dict[str, asyncio.Event] = {}
        self._running: list[asyncio.Task[None]] = []
        self.stopping = False

    def wake(self) -> None:
        """Every agent looks for work now."""
        for event in self._wakers.values():
            event.set()

    def touch(self, task_id: int) -> None:
        """The task changed (a command): the post-processor looks at it now."""
        self._touch([task_id])

    def _touch(self, task_ids: Iterable[int]) -> None:
        self.postprocessor.touch(task_ids)
        self.wake()

    def _jobs_changed(self, task_ids: set[int]) -> None:
        self.postprocessor.touch(task_ids)
        self._wakers.get(_POSTPROCESSOR, asyncio.Event()).set()

    async def _command_step(self) -> bool:
        touched = await self.commander.step()
        if touched:
            self._touch(touched)
        return False

    async def start(self) -> None:
        self._running = [
            asyncio.create_task(self._loop("refiner", self.refiner.step)),
            asyncio.create_task(self._loop("generator", self.generator.step)),
            asyncio.create_task(self._loop(_POSTPROCESSOR, self.postprocessor.step)),
            asyncio.create_task(self._loop("commander", self._command_step)),
            asyncio.create_task(self.watcher.run()),
        ]

    async def stop(self) -> None:
        self.stopping = self.watcher.stopping = True
        self.wake()
        for task in self._running:
            task.cancel()
        for task in self._running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self, name: str, step: Callable[[], Awaitable[bool]]) -> None:
        """Run `step`, waking every agent when it changed something, then wait for a wake-up
        or the interval; a failed step is tried again after a growing pause."""
        waker = self._wakers.setdefault(name, asyncio.Event())
        failures = 0
        while not self.stopping:
            waker.clear()
            try:
                if await step():
                    self.wake()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                if isinstance(error, grpc.aio.AioRpcError):
                    log.warning("%s: server call failed: %s %s", name, error.code().name, error.details())
                else:
                    log_failure(log, f"{name} failed", error)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
            self._task_events.notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), self._settings.jedi_interval_seconds)
