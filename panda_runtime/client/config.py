"""How a caller connects to a PanDA mesh service, in small frozen dataclasses: where
(`ConnectConfig.address`), how long a call may take (`deadline`), over TLS or not (`TlsConfig`),
with whose token (`tokens`, a `TokenSource` that renews itself), and how failed calls are
retried (`RetryPolicy`, carried out by gRPC itself)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from panda_runtime.client.credentials import TokenSource, credentials_from_settings
from panda_runtime.settings import CallerSettings

__all__ = ["DEFAULT_DEADLINE_SECONDS", "ConnectConfig", "RetryPolicy", "TlsConfig"]

# Default deadline of a unary call, seconds.
DEFAULT_DEADLINE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """gRPC's retry policy (the service config's `retryPolicy`) for the calls that are safe to
    repeat: reads, and creates that carry a `request_id` (the service then creates once).

    gRPC waits a random time up to `initial_backoff`, then up to that times `backoff_multiplier`,
    and so on up to `max_backoff`, between attempts; every attempt shares the call's deadline.
    gRPC allows at most 5 attempts; `max_attempts=1` turns retries off."""

    max_attempts: int = 5
    initial_backoff: float = 0.25
    max_backoff: float = 4.0
    backoff_multiplier: float = 2.0
    # The status a caller may assume its request was not acted on: no server took it.
    retryable_codes: tuple[grpc.StatusCode, ...] = (grpc.StatusCode.UNAVAILABLE,)

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 5:
            raise ValueError(f"max_attempts must be 1 to 5 (gRPC's limit), not {self.max_attempts}")
        if self.initial_backoff <= 0 or self.max_backoff <= 0 or self.backoff_multiplier <= 0:
            raise ValueError("backoffs and their multiplier must be above 0")

    @property
    def enabled(self) -> bool:
        return self.max_attempts > 1

    @classmethod
    def off(cls) -> RetryPolicy:
        return cls(max_attempts=1)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS towards services on the legacy x509 path: the CA that signed their certificates, and
    this caller's certificate and key, if it has them (file paths)."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_settings(cls, settings: CallerSettings) -> TlsConfig | None:
        if not settings.tls_ca_file:
            return None
        return cls(settings.tls_ca_file, settings.x509_cert_file, settings.x509_key_file)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.key_file),
            certificate_chain=_read(self.cert_file),
        )


def _read(path: str) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


@dataclass(frozen=True, slots=True)
class ConnectConfig:
    """One connection to one service.

    `unreachable_hint` is added, in brackets, to the message a person reads when nothing answers
    at `address` (e.g. which setting names the address)."""

    address: str
    deadline: float = DEFAULT_DEADLINE_SECONDS
    tokens: TokenSource | None = None
    tls: TlsConfig | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Channel options beyond the ones every caller uses (channels.CHANNEL_OPTIONS).
    options: tuple[tuple[str, Any], ...] = ()
    unreachable_hint: str = ""
    # Count the calls in the `grpc_client_*` metrics: for a service calling another, which
    # serves them on its /metrics.
    metrics: bool = False

    @classmethod
    def from_settings(cls, address: str, settings: CallerSettings, **overrides: Any) -> ConnectConfig:
        """To `address` with this process's token (PANDA_TOKEN, a robot's client credentials, the
        signed-in user's, ...) and TLS when the legacy x509 path is configured; `overrides` set
        any other field (or these two)."""
        if "tokens" not in overrides:
            overrides["tokens"] = credentials_from_settings(settings)
        if "tls" not in overrides:
            overrides["tls"] = TlsConfig.from_settings(settings)
        return cls(address, **overrides)
