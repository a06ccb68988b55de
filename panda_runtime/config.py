"""Configuration from environment variables (prefix PANDA_), with documented defaults."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Fixed default addresses, all on loopback, so the command line finds a local `panda up`.
DEFAULT_SERVER_ADDRESS = "127.0.0.1:25080"
DEFAULT_SERVER_METRICS_PORT = 25090
DEFAULT_JEDI_ADDRESS = "127.0.0.1:25180"
DEFAULT_JEDI_METRICS_PORT = 25190
DEFAULT_IAM_ADDRESS = "127.0.0.1:25280"
DEFAULT_IAM_METRICS_PORT = 25290
# The identity service's OIDC endpoints (discovery, JWKS, token, device flow) over HTTP.
DEFAULT_IAM_HTTP_PORT = 25281
DEFAULT_IAM_ISSUER = f"http://127.0.0.1:{DEFAULT_IAM_HTTP_PORT}"
# The `aud` every PanDA mesh service expects in an access token.
DEFAULT_AUDIENCE = "panda-mesh"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "panda-mesh"


def default_config_dir() -> Path:
    """Where the command line keeps the signed-in user's tokens (mode 0600)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
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

    # Identity. "token": every call needs a bearer token from a trusted issuer (the default);
    # "none": no check at all, every caller may do everything (development only, logged loudly).
    auth_mode: Literal["token", "none"] = "token"
    # Trusted OIDC issuers, comma separated; each is found through its discovery document.
    auth_issuers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [DEFAULT_IAM_ISSUER])
    auth_audience: str = DEFAULT_AUDIENCE
    # Clock skew tolerated on exp/nbf/iat, seconds.
    auth_leeway_seconds: int = 30
    # An unknown `kid` refetches the issuer's JWKS at most this often, seconds.
    auth_jwks_min_refresh_seconds: float = 10.0
    # Keys are refetched after this long even when every kid is known, seconds.
    auth_jwks_max_age_seconds: float = 3600.0
    # Verified tokens remembered (until they expire), so a repeated token costs a lookup.
    auth_token_cache_size: int = 10_000

    # The identity service (iam_svc): gRPC address (PANDA_IAM for short), metrics, OIDC over HTTP.
    iam_address: str = Field(
        default=DEFAULT_IAM_ADDRESS, validation_alias=AliasChoices("PANDA_IAM", "PANDA_IAM_ADDRESS")
    )
    iam_metrics_port: int = DEFAULT_IAM_METRICS_PORT
    iam_http_host: str = "127.0.0.1"
    iam_http_port: int = DEFAULT_IAM_HTTP_PORT
    # The issuer URL it signs into tokens (its public HTTP address).
    iam_issuer: str = DEFAULT_IAM_ISSUER
    # Token lifetimes, seconds (PanDA's: about a day for people, about four days for robots).
    iam_user_token_seconds: int = 24 * 3600
    iam_robot_token_seconds: int = 4 * 24 * 3600
    iam_refresh_token_seconds: int = 30 * 24 * 3600
    # Device authorization grant: how long a code lives and how often the client may poll.
    iam_device_code_seconds: int = 600
    iam_device_poll_seconds: int = 5

    # Credentials of this process when it calls others: a robot's client id and secret
    # (client_credentials), or a bearer token given as is, or a file holding one.
    client_id: str = ""
    client_secret: str = ""
    token: str = ""
    token_file: str = ""
    # Where `panda login` keeps the user's tokens.
    config_dir: Path = Field(default_factory=default_config_dir)

    # Legacy x509 (off unless a certificate is given): TLS with client certificates on every
    # gRPC server; a certificate's subject is mapped to a user by the map file (YAML:
    # "subject": {user: name, groups: [/vo, ...]}).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    x509_user_map_file: str = ""
    # The client side of that path: the CA that signed the servers' certificates, and this
    # caller's own certificate and key.
    tls_ca_file: str = ""
    x509_cert_file: str = ""
    x509_key_file: str = ""

    @field_validator("auth_issuers", mode="before")
    @classmethod
    def _split_issuers(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.replace(" ", ",").split(",") if part.strip()]
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'panda.db'}"
