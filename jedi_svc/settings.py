"""JEDI's settings (PANDA_ variables, or the settings file's [jedi] section)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from panda_runtime.settings import (
    DEFAULT_JEDI_METRICS_PORT,
    CallerSettings,
    DatabaseSettings,
    JediAddressSettings,
    JobDefaultsSettings,
    ServerAddressSettings,
    ServingSettings,
)

__all__ = ["JediSettings"]


class JediSettings(
    DatabaseSettings, JediAddressSettings, ServerAddressSettings, ServingSettings, CallerSettings, JobDefaultsSettings
):
    component: ClassVar[str] = "jedi"

    jedi_metrics_port: int = Field(
        default=DEFAULT_JEDI_METRICS_PORT, description="JEDI's Prometheus `/metrics` port; 0 turns it off"
    )
    jedi_interval_seconds: float = Field(
        default=1.0, description="how often JEDI's agents look for work when nothing wakes them"
    )
    jedi_pending_retry_seconds: float = Field(
        default=60.0, description="a pending task (no queue fits) is brokered again after this long"
    )
    jedi_default_scout_jobs: int = Field(default=3, description="scouts of a task that does not say")
    jedi_submit_batch: int = Field(
        default=5000, description="jobs per `SubmitJobs` call (the server takes at most its `max_submit_batch`)"
    )
    jedi_max_queued_jobs_per_task: int = Field(
        default=0,
        description="a task with this many jobs not yet started goes `throttled` until half of them started; "
        "0: no limit",
    )
    jedi_fair_share_jobs_per_point: int = Field(
        default=100, description="fair share: a point of priority less per this many jobs the owner has in flight"
    )
    jedi_server_deadline_seconds: float = Field(default=30.0, description="deadline of JEDI's calls to the server")
