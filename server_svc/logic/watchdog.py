"""The watchdog loop: every interval, the rules in force end the jobs they find overdue."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime

from panda_runtime.service.db import DbRunner, log_failure
from server_svc.domain.watchdog import WatchdogLimits, pilots_forgotten_before, rules_in_force
from server_svc.logic.dispatch_hub import DispatchHub
from server_svc.logic.job_metrics import (
    WATCHDOG_SWEEP_FAILURES,
    count_failures,
    count_watchdog_actions,
    watchdog_rules_known,
)
from server_svc.settings import ServerSettings
from server_svc.store.watchdog import WatchdogStore

__all__ = ["run_watchdog"]

log = logging.getLogger("panda.server")


async def run_watchdog(settings: ServerSettings, db: DbRunner, store: WatchdogStore, hub: DispatchHub) -> None:
    """Runs until cancelled; a sweep that fails is logged and tried again next interval."""
    limits = WatchdogLimits(
        sent_timeout=settings.sent_timeout_seconds, heartbeat_timeout=settings.heartbeat_timeout_seconds,
        holding_timeout=settings.holding_timeout_seconds, kill_grace=settings.kill_grace_seconds,
    )
    started = datetime.now(UTC)
    watchdog_rules_known(rules_in_force(limits, watched_for=math.inf))
    while True:
        await asyncio.sleep(settings.watchdog_interval_seconds)
        try:
            # Our pilots' last messages first: a job whose pilot still talks is not overdue.
            await hub.write_pilots_heard()
            now = datetime.now(UTC)
            rules = rules_in_force(limits, watched_for=(now - started).total_seconds())
            sweep = await db.run(store.sweep, rules, now, pilots_forgotten_before(limits, now))
        except Exception as error:
            WATCHDOG_SWEEP_FAILURES.inc()
            log_failure(log, "watchdog sweep failed", error)
            continue
        count_watchdog_actions(rules, sweep.ended)
        count_failures(sweep.failures.items())
        if any(sweep.ended.values()):
            log.info("watchdog: %s", ", ".join(f"{n} {rule}" for rule, n in sweep.ended.items() if n))
            hub.events_written.notify()
        if sweep.reactivated:
            hub.wake()
