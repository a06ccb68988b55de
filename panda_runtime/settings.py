"""Settings of every part of PanDA mesh, read from the environment and from a TOML file.

Each part (server, JEDI, identity service, pilot, command line) has a settings class of its
own, in its package, holding only what that part reads. The classes are put together from the
small groups below, so a variable means the same to every part that reads it.

Where a value comes from, first found wins:
1. the environment, `PANDA_<NAME>` (`PANDA_HEARTBEAT_TIMEOUT_SECONDS`);
2. the settings file's section of the part (`[server]`, `[jedi]`, `[iam]`, `[pilot]`, `[cli]`);
3. the settings file's top level, which every part reads;
4. the default.
The settings file is `PANDA_CONFIG_FILE`, else `config.toml` in the configuration directory
(`$XDG_CONFIG_HOME/panda-mesh`, else `~/.config/panda-mesh`) when it exists (else the same
directory's `panda.toml`, its former name, with a notice). Its keys are the
settings' names: the variables' without `PANDA_`, in lower case (`heartbeat_timeout_seconds =
3600`); `server_address`, `jedi_address`, `iam_address` and `gateway_address` for PANDA_SERVER,
PANDA_JEDI, PANDA_IAM and PANDA_GATEWAY.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = [
    "CONFIG_FILE_NAME",
    "CONFIG_FILE_VARIABLE",
    "CREDENTIAL",
    "DEFAULT_AUDIENCE",
    "DEFAULT_GATEWAY_ADDRESS",
    "DEFAULT_GATEWAY_METRICS_PORT",
    "DEFAULT_HARVESTER_ADDRESS",
    "DEFAULT_HARVESTER_METRICS_PORT",
    "DEFAULT_IAM_ADDRESS",
    "DEFAULT_IAM_HTTP_PORT",
    "DEFAULT_IAM_ISSUER",
    "DEFAULT_IAM_METRICS_PORT",
    "DEFAULT_JEDI_ADDRESS",
    "DEFAULT_JEDI_METRICS_PORT",
    "DEFAULT_SERVER_ADDRESS",
    "DEFAULT_SERVER_METRICS_PORT",
    "ENV_PREFIX",
    "FORMER_CONFIG_FILE_NAME",
    "MONITOR_CALLBACK_PATH",
    "MONITOR_CLIENT_ID",
    "CallerSettings",
    "DataDirSettings",
    "DatabaseSettings",
    "FileValue",
    "GatewayAddressSettings",
    "IamAddressSettings",
    "IssuerSettings",
    "JediAddressSettings",
    "JobDefaultsSettings",
    "MetricsHostSettings",
    "PandaSettings",
    "ServerAddressSettings",
    "ServingSettings",
    "SettingsFileError",
    "TrustedIssuersSettings",
    "credential_variables",
    "default_config_dir",
    "default_data_dir",
    "environment_variable",
    "file_values",
    "gateway_url",
    "is_credential",
    "settings_file",
    "variable_names",
]

ENV_PREFIX = "PANDA_"
CONFIG_FILE_VARIABLE = "PANDA_CONFIG_FILE"
CONFIG_FILE_NAME = "config.toml"
# Read when only it exists, with a notice: the settings file's name until it became config.toml.
FORMER_CONFIG_FILE_NAME = "panda.toml"

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
# The HTTP/JSON gateway (every annotated RPC as HTTP, /openapi.json, /docs).
DEFAULT_GATEWAY_ADDRESS = "127.0.0.1:25380"
DEFAULT_GATEWAY_METRICS_PORT = 25390
DEFAULT_HARVESTER_ADDRESS = "127.0.0.1:25480"
DEFAULT_HARVESTER_METRICS_PORT = 25490
# The web monitor (served by the gateway) signs people in at the identity service as this public
# client, which sends them back to the gateway's URL + this path (authorization code with PKCE).
MONITOR_CLIENT_ID = "panda-monitor"
MONITOR_CALLBACK_PATH = "/monitor/auth/callback"
# The `aud` every PanDA mesh service expects in an access token.
DEFAULT_AUDIENCE = "panda-mesh"
# In a field's json_schema_extra: the setting carries a credential (a token, a secret, a key, a
# password), or says where one is; never handed to code the process runs for others.
CREDENTIAL: JsonDict = {"credential": True}


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "panda-mesh"


def default_config_dir() -> Path:
    """Where the command line keeps the signed-in user's tokens (mode 0600) and where the
    settings file is looked for."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "panda-mesh"


class SettingsFileError(ValueError):
    """The settings file cannot be read, or names a setting its section's part does not have."""


def settings_file() -> Path | None:
    """The settings file to read: PANDA_CONFIG_FILE (which must exist), else config.toml in the
    configuration directory if there is one, else panda.toml there (its former name)."""
    named = os.environ.get(CONFIG_FILE_VARIABLE)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise SettingsFileError(f"{CONFIG_FILE_VARIABLE}={named}: no such file")
        return path
    directory = default_config_dir()
    path = directory / CONFIG_FILE_NAME
    if path.is_file():
        return path
    former = directory / FORMER_CONFIG_FILE_NAME
    if former.is_file():
        _say_renamed(former, path)
        return former
    return None


@cache
def _say_renamed(former: Path, path: Path) -> None:
    """Once per process, however many parts' settings read the file."""
    print(f"panda: reading {former}: the settings file is now called {path.name}; rename it to {path}",
          file=sys.stderr)


def variable_names(name: str, info: FieldInfo) -> list[str]:
    """The environment variables that set a field: its aliases, else PANDA_<NAME>."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    return [ENV_PREFIX + name.upper()]


def environment_variable(name: str, info: FieldInfo) -> str | None:
    """The environment variable that sets the field `name` in this process, if one does: the
    first of its names that is set (case aside, as the settings classes read them)."""
    present = {key.upper() for key in os.environ}
    return next((variable for variable in variable_names(name, info) if variable.upper() in present), None)


def is_credential(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("credential"))


@dataclass(frozen=True)
class FileValue:
    """A setting's value in the settings file, and where: its part's section ("cli" for
    `[cli]`), or "" for the top level."""

    value: Any
    section: str


def file_values(settings_cls: type[BaseSettings]) -> dict[str, FileValue]:
    """What the settings file sets of `settings_cls`'s settings: the top level, overlaid with
    the section of the settings' part. A key that part's section does not know is an error."""
    path = settings_file()
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SettingsFileError(f"settings file {path}: {error}") from None
    # A key is the setting's own name (`server_address`, not the short `PANDA_SERVER`,
    # whose `server` would collide with the [server] section).
    keys = settings_cls.model_fields
    component = getattr(settings_cls, "component", "")
    section = data.get(component, {}) if component else {}
    if not isinstance(section, dict):
        raise SettingsFileError(f"settings file {path}: [{component}] must be a table")
    unknown = sorted(key for key in section if key not in keys)
    if unknown:
        raise SettingsFileError(
            f"settings file {path}: [{component}] has no setting {', '.join(unknown)} "
            f"(known: {', '.join(sorted(keys))})"
        )
    values: dict[str, FileValue] = {}
    # Top-level keys a part does not read are other parts' settings: not an error here.
    top_level = {key: value for key, value in data.items() if not isinstance(value, dict)}
    for where, source in (("", top_level), (component, section)):
        for key, value in source.items():
            if key in keys:
                values[key] = FileValue(value, where)
    return values


class _SettingsFileSource(PydanticBaseSettingsSource):
    """The settings file's top level, overlaid with the section of the settings' part."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._values = {name: found.value for name, found in file_values(settings_cls).items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class PandaSettings(BaseSettings):
    """Base of every settings class: PANDA_ variables, then the settings file, then defaults."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True)

    # The settings file's section this part reads; empty for the groups below.
    component: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _SettingsFileSource(settings_cls)


# -- groups: each setting is declared once, in the group of what it is about -------------------


class DataDirSettings(PandaSettings):
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="SQLite file, storage element, logs and pilot work dirs of `panda up`",
        json_schema_extra={"shown_default": "~/.local/share/panda-mesh"},
    )


class DatabaseSettings(DataDirSettings):
    database_url: str = Field(
        default="",
        description="the database, e.g. `postgresql://panda@dbhost/panda` (psycopg 3); "
        "empty: SQLite in the data dir",
        json_schema_extra={"shown_default": "SQLite in the data dir", **CREDENTIAL},
    )

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'panda.db'}"


class ServerAddressSettings(PandaSettings):
    server_address: str = Field(
        default=DEFAULT_SERVER_ADDRESS,
        validation_alias=AliasChoices("PANDA_SERVER", "PANDA_SERVER_ADDRESS"),
        description="where the job server listens, and where pilots, JEDI, the gateway and the command line find it",
    )


class JediAddressSettings(PandaSettings):
    jedi_address: str = Field(
        default=DEFAULT_JEDI_ADDRESS,
        validation_alias=AliasChoices("PANDA_JEDI", "PANDA_JEDI_ADDRESS"),
        description="where JEDI listens, and where the gateway and the command line find it",
    )


class IamAddressSettings(PandaSettings):
    iam_address: str = Field(
        default=DEFAULT_IAM_ADDRESS,
        validation_alias=AliasChoices("PANDA_IAM", "PANDA_IAM_ADDRESS"),
        description="where the identity service's gRPC API listens, and where the gateway and the command line "
        "find it",
    )


class GatewayAddressSettings(PandaSettings):
    gateway_address: str = Field(
        default=DEFAULT_GATEWAY_ADDRESS,
        validation_alias=AliasChoices("PANDA_GATEWAY", "PANDA_GATEWAY_ADDRESS"),
        description="where the HTTP/JSON gateway listens (`host:port`), and where the command line's settings say "
        "it is (`panda config show`)",
    )

    gateway_public_url: str = Field(
        default="",
        description="the gateway's URL as browsers reach it (e.g. `https://panda.example.org`, behind a proxy); "
        f"the web monitor's sign-in comes back to it + `{MONITOR_CALLBACK_PATH}`, the redirect URI the identity "
        f"service registers for the client `{MONITOR_CLIENT_ID}` at every start; empty: `http://` + `PANDA_GATEWAY`",
        json_schema_extra={"shown_default": ""},
    )

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL, as a browser or a script reaches it."""
        return self.gateway_public_url.rstrip("/") or gateway_url(self.gateway_address)

    @property
    def monitor_redirect_uri(self) -> str:
        """Where the identity service sends a person signed in to the web monitor."""
        return self.gateway_url + MONITOR_CALLBACK_PATH


def gateway_url(address: str) -> str:
    """The base URL of a gateway listening at `address`, as a browser or a script reaches it."""
    return address if "://" in address else f"http://{address}"


class IssuerSettings(PandaSettings):
    iam_issuer: str = Field(
        default=DEFAULT_IAM_ISSUER,
        description="the identity service's issuer URL (its public HTTP address): signed into its tokens, "
        "and where robots get theirs",
    )


class TrustedIssuersSettings(PandaSettings):
    auth_issuers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_IAM_ISSUER],
        description="trusted token issuers, comma separated, each found through its discovery document; "
        "`panda login` signs in at the first",
        json_schema_extra={"shown_default": DEFAULT_IAM_ISSUER},
    )

    @field_validator("auth_issuers", mode="before")
    @classmethod
    def _split_issuers(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.replace(" ", ",").split(",") if part.strip()]
        return value


class MetricsHostSettings(PandaSettings):
    metrics_host: str = Field(default="127.0.0.1", description="the address every service's `/metrics` binds to")


class ServingSettings(TrustedIssuersSettings, MetricsHostSettings):
    """What every gRPC server reads: its message limit, metrics host, the token check and
    legacy x509."""

    max_message_bytes: int = Field(default=16 * 1024 * 1024, description="largest gRPC message a service accepts")
    auth_mode: Literal["token", "none"] = Field(
        default="token",
        description="`token`: every call needs a bearer token from a trusted issuer; "
        "`none` turns every check off (development only)",
    )
    auth_audience: str = Field(default=DEFAULT_AUDIENCE, description="the `aud` every service expects")
    auth_leeway_seconds: int = Field(default=30, description="clock skew allowed on `exp`, `nbf`, `iat`")
    auth_jwks_min_refresh_seconds: float = Field(
        default=10.0, description="an unknown `kid` refetches the issuer's JWKS at most this often"
    )
    auth_jwks_max_age_seconds: float = Field(
        default=3600.0, description="keys are refetched after this long even when every `kid` is known"
    )
    auth_revocation_refresh_seconds: float = Field(
        default=15.0, gt=0, le=30,
        description="how often the token check refetches the revocation list of an issuer that publishes one "
        "(the identity service does): a disabled or deleted account's tokens are refused within this (at most 30 s)",
    )
    auth_token_cache_size: int = Field(
        default=10_000, description="verified tokens remembered until they expire"
    )
    tls_cert_file: str = Field(default="", description="legacy x509: the service's TLS certificate")
    tls_key_file: str = Field(
        default="", description="legacy x509: the service's TLS key", json_schema_extra=CREDENTIAL
    )
    tls_client_ca_file: str = Field(
        default="", description="legacy x509: the CA of client certificates; set, every client must present one"
    )
    x509_user_map_file: str = Field(
        default="", description="legacy x509: YAML mapping certificate subjects to users and groups"
    )


class CallerSettings(IssuerSettings):
    """How a process proves who it is when it calls a service."""

    token: str = Field(
        default="", description="a bearer token, as is, for this process's calls", json_schema_extra=CREDENTIAL
    )
    token_file: str = Field(
        default="", description="a file holding a bearer token someone keeps fresh", json_schema_extra=CREDENTIAL
    )
    client_id: str = Field(
        default="", description="a robot's client id (client_credentials grant)", json_schema_extra=CREDENTIAL
    )
    client_secret: str = Field(default="", description="a robot's client secret", json_schema_extra=CREDENTIAL)
    config_dir: Path = Field(
        default_factory=default_config_dir,
        description="where `panda login` keeps the user's tokens (mode 0600)",
        json_schema_extra={"shown_default": "~/.config/panda-mesh"},
    )
    tls_ca_file: str = Field(default="", description="legacy x509: the CA that signed the services' certificates")
    x509_cert_file: str = Field(
        default="", description="legacy x509: this caller's certificate", json_schema_extra=CREDENTIAL
    )
    x509_key_file: str = Field(default="", description="legacy x509: this caller's key", json_schema_extra=CREDENTIAL)


class JobDefaultsSettings(PandaSettings):
    """What a job (or a task's jobs) gets when its submission does not say."""

    default_max_attempts: int = Field(
        default=3, description="attempts of a job that does not say (and per file of a task that does not say)"
    )
    default_cores: int = Field(default=1, description="cores of a job that does not say")
    default_memory_mb: int = Field(default=2000, description="memory (MB) of a job that does not say")
    default_walltime_seconds: int = Field(
        default=0, description="walltime of a job that does not say; 0: only the pilot's lifetime limits it"
    )


def credential_variables() -> frozenset[str]:
    """The environment variables of every setting that carries a credential or says where one
    is (PANDA_TOKEN, PANDA_CLIENT_SECRET, ...): what a pilot keeps from its payload."""
    names: set[str] = set()
    groups: list[type[PandaSettings]] = [PandaSettings]
    while groups:
        group = groups.pop()
        groups.extend(group.__subclasses__())
        for name, info in group.model_fields.items():
            if is_credential(info):
                names.update(variable_names(name, info))
    return frozenset(names)
