"""Configuration from environment variables (prefix PANDA_), with documented defaults."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Fixed default addresses, all on loopback, so the command line finds a local `panda up`.
DEFAULT_SERVER_ADDRESS = "127.0.0.1:25080"
DEFAULT_SERVER_METRICS_PORT = 25090
DEFAULT_JEDI_ADDRESS = "127.0.0.1:25180"
DEFAULT_JEDI_METRICS_PORT = 25190


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "panda-mesh"


class Settings(BaseSettings):
    """Every knob of the server and the command line. Environment: PANDA_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="PANDA_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # SQLAlchemy URL; empty means SQLite in data_dir. PostgreSQL: postgresql+psycopg://user@host/db
    database_url: str = ""

    # Where the server listens, and where clients find it (PANDA_SERVER for short).
    server_address: str = Field(
        default=DEFAULT_SERVER_ADDRESS,
        validation_alias=AliasChoices("PANDA_SERVER", "PANDA_SERVER_ADDRESS"),
    )
    # Port of the Prometheus /metrics endpoint; 0 disables it.
    metrics_port: int = DEFAULT_SERVER_METRICS_PORT
    metrics_host: str = "127.0.0.1"

    # Largest gRPC message accepted, bytes.
    max_message_bytes: int = 16 * 1024 * 1024
    # Largest batch of SubmitJobs.
    max_submit_batch: int = 5000

    # Pilot heartbeats (PanDA: every 30 minutes) and the watchdogs' limits (PanDA's defaults).
    heartbeat_interval_seconds: int = 1800
    heartbeat_timeout_seconds: int = 7200
    sent_timeout_seconds: int = 1800
    holding_timeout_seconds: int = 3 * 24 * 3600
    # A running job told to stop is cancelled after this long without the pilot's word.
    kill_grace_seconds: int = 600
    watchdog_interval_seconds: float = 60.0
    # How often the dispatcher looks for jobs activated elsewhere (other replicas).
    dispatch_poll_seconds: float = 1.0

    # Job defaults when a submission does not say.
    default_max_attempts: int = 3
    default_cores: int = 1
    default_memory_mb: int = 2000
    # 0: not stated, so it fits any pilot and only the pilot's own lifetime limits it.
    default_walltime_seconds: int = 0

    # JEDI, the task engine: where it listens (PANDA_JEDI for short) and its metrics port.
    jedi_address: str = Field(
        default=DEFAULT_JEDI_ADDRESS, validation_alias=AliasChoices("PANDA_JEDI", "PANDA_JEDI_ADDRESS")
    )
    jedi_metrics_port: int = DEFAULT_JEDI_METRICS_PORT
    # How often JEDI's agents look for work when nothing wakes them, seconds.
    jedi_interval_seconds: float = 1.0
    # A pending task (no queue fits) is brokered again after this long, seconds.
    jedi_pending_retry_seconds: float = 60.0
    # Scout jobs of a task that does not say.
    jedi_default_scout_jobs: int = 3
    # Jobs per SubmitJobs call (the server takes at most max_submit_batch).
    jedi_submit_batch: int = 5000
    # A task with this many jobs queued (not yet started) is throttled; 0: no limit.
    jedi_max_queued_jobs_per_task: int = 0
    # Fair share: one point of priority less per this many jobs the owner has in flight.
    jedi_fair_share_jobs_per_point: int = 100
    # Deadline of JEDI's unary calls to the server, seconds.
    jedi_server_deadline_seconds: float = 30.0

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'panda.db'}"
