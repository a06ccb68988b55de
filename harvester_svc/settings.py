"""Harvester's settings (PANDA_ variables, or the settings file's [harvester] section)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from panda_runtime.settings import (
    CREDENTIAL,
    DEFAULT_HARVESTER_ADDRESS,
    DEFAULT_HARVESTER_METRICS_PORT,
    CallerSettings,
    DatabaseSettings,
    ServerAddressSettings,
    ServingSettings,
)

__all__ = ["HarvesterSettings"]


class HarvesterSettings(DatabaseSettings, ServerAddressSettings, ServingSettings, CallerSettings):
    component: ClassVar[str] = "harvester"

    harvester_id: str = Field(
        default="harvester",
        description="this instance's id (letters, digits, `_ - .`, at most 64): its workers' ids start with it; "
        "keep it when the instance restarts",
    )
    harvester_address: str = Field(
        default=DEFAULT_HARVESTER_ADDRESS,
        description="where harvester listens: health, and the relay's DispatchService for pilots with no route "
        "to the server",
    )
    harvester_metrics_port: int = Field(
        default=DEFAULT_HARVESTER_METRICS_PORT, description="harvester's Prometheus `/metrics` port; 0 turns it off"
    )
    harvester_queue_config: Path | None = Field(
        default=None,
        description="the queue configuration (JSON, as PanDA's panda_queueconfig.json); "
        "default: `queueconfig.json` in the data dir",
        json_schema_extra={"shown_default": "queueconfig.json in the data dir"},
    )
    harvester_access_points: Path | None = Field(
        default=None,
        description="where each worker's own directory (its access point) is made; "
        "default: `harvester/workers` in the data dir",
        json_schema_extra={"shown_default": "harvester/workers in the data dir"},
    )
    harvester_cycle_seconds: float = Field(
        default=10.0, description="how often the agents (adjuster, submitter, monitor, propagator, sweeper) run"
    )
    harvester_submit_seconds: float = Field(
        default=2.0, gt=0,
        description="between harvester's cycles, how often the adjuster and submitter alone look for new work "
        "(one GetQueueLoads call and a count of harvester's own workers): work on a queue with no pilot waits about "
        "this long for one, not a whole cycle; at or above the cycle, they run with the cycle only",
    )
    harvester_heartbeat_seconds: float = Field(
        default=60.0, description="how often harvester tells the server it is alive and takes its commands"
    )
    harvester_server_deadline_seconds: float = Field(default=30.0, description="deadline of harvester's calls")
    harvester_kill_grace_seconds: float = Field(
        default=10.0, description="a killed worker's pilot gets this long after SIGTERM before SIGKILL (local plugin)"
    )
    harvester_keep_ended_days: float = Field(
        default=7.0, description="an ended, cleaned worker is dropped from harvester's own table after this long "
        "(the server's registry keeps it)"
    )
    harvester_stop_workers_on_exit: bool = Field(
        default=False,
        description="kill every live worker when harvester stops (`panda up` sets it: its pilots end with it); "
        "off, workers outlive a restart, as batch jobs do",
    )
    harvester_pilot_idle_seconds: float = Field(
        default=60.0, description="a pilot harvester starts leaves after asking this long without getting a job"
    )
    harvester_pilot_server: str = Field(
        default="",
        description="the server address harvester's pilots use (default: harvester's own server address)",
    )
    harvester_relay_address: str = Field(
        default="",
        description="the address relayed pilots (messenger `relay`) reach harvester at (default: "
        "`harvester_address`); give the one worker nodes can reach",
    )
    harvester_relay_key_file: Path | None = Field(
        default=None,
        description="the key relay tokens are made with (made on first start, mode 0600); "
        "default: `harvester/relay.key` in the data dir",
        json_schema_extra={"shown_default": "harvester/relay.key in the data dir"},
    )
    harvester_pilot_client_id: str = Field(
        default="panda-pilot", description="the robot whose credentials harvester's pilots use"
    )
    harvester_pilot_client_secret: str = Field(
        default="", description="that robot's client secret", json_schema_extra=CREDENTIAL
    )
    harvester_pilot_token_file: str = Field(
        default="", description="a token file harvester's pilots use instead of a client secret"
    )

    @property
    def queue_config_path(self) -> Path:
        return self.harvester_queue_config or self.data_dir / "queueconfig.json"

    @property
    def relay_key_path(self) -> Path:
        return self.harvester_relay_key_file or self.data_dir / "harvester" / "relay.key"

    @property
    def access_root(self) -> Path:
        return self.harvester_access_points or self.data_dir / "harvester" / "workers"
