"""The job server's settings (PANDA_ variables, or the settings file's [server] section)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from panda_runtime.contracts.server import DEFAULT_MAX_SUBMIT_JOBS
from panda_runtime.settings import (
    DEFAULT_SERVER_METRICS_PORT,
    DatabaseSettings,
    JobDefaultsSettings,
    ServerAddressSettings,
    ServingSettings,
)

__all__ = ["ServerSettings"]


class ServerSettings(DatabaseSettings, ServerAddressSettings, ServingSettings, JobDefaultsSettings):
    component: ClassVar[str] = "server"

    metrics_port: int = Field(
        default=DEFAULT_SERVER_METRICS_PORT, description="the server's Prometheus `/metrics` port; 0 turns it off"
    )
    max_submit_batch: int = Field(
        default=DEFAULT_MAX_SUBMIT_JOBS, description="most jobs one `SubmitJobs` call may carry"
    )
    # PanDA's values: a heartbeat every 30 minutes, and the watchdogs' limits.
    heartbeat_interval_seconds: int = Field(default=1800, description="how often pilots send a heartbeat per job")
    heartbeat_timeout_seconds: int = Field(
        default=7200, description="running with no heartbeat this long → failed, code 100"
    )
    sent_timeout_seconds: int = Field(default=1800, description="sent and never acknowledged → failed, code 102")
    holding_timeout_seconds: int = Field(default=3 * 24 * 3600, description="holding this long → failed, code 103")
    kill_grace_seconds: int = Field(
        default=600, description="a killed job whose pilot never confirms → cancelled, code 110"
    )
    watchdog_interval_seconds: float = Field(default=60.0, description="how often the watchdogs look")
    harvester_heartbeat_interval_seconds: int = Field(
        default=60, gt=0,
        description="how often harvester instances send a heartbeat; one silent for three intervals is not "
        "alive, and its queues may be taken over by another instance",
    )
    dispatch_poll_seconds: float = Field(
        default=1.0,
        description="how often the dispatcher looks for jobs activated elsewhere (other replicas) and for "
        "commands to deliver",
    )
