"""A caller's side of identity: where its bearer token comes from, kept fresh.

Robots (JEDI, pilots, harvester) hold a client id and secret and use the client_credentials
grant; people sign in once with `panda login` and the command line refreshes their token from
the file it keeps; a token may also be given as is (PANDA_TOKEN) or in a file (PANDA_TOKEN_FILE).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from panda_runtime.settings import CallerSettings

__all__ = [
    "ClientCredentialsToken",
    "CredentialsError",
    "FileToken",
    "IssuerUnreachable",
    "LoginToken",
    "StaticToken",
    "TokenSource",
    "credentials_from_settings",
    "discover",
    "login_file",
    "write_login",
]

# Renew this long before expiry, seconds (or a tenth of the lifetime, if shorter).
RENEW_MARGIN_SECONDS = 300.0
LOGIN_FILE = "token.json"
HTTP_TIMEOUT_SECONDS = 10.0


class CredentialsError(Exception):
    """No usable token; the message says what to do."""


class IssuerUnreachable(CredentialsError):
    """No token because the identity service did not answer (a reason to try again later)."""


class TokenSource(Protocol):
    def token(self) -> str:
        """A bearer token valid now."""
        ...


class StaticToken:
    def __init__(self, token: str) -> None:
        self._token = token.strip()

    def token(self) -> str:
        return self._token


class FileToken:
    """A token some other party keeps fresh in a file (e.g. written for a pilot); re-read when
    the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._cached: tuple[float, str] | None = None

    def token(self) -> str:
        try:
            mtime = self._path.stat().st_mtime
            if self._cached is None or self._cached[0] != mtime:
                self._cached = (mtime, self._path.read_text().strip())
        except OSError as error:
            raise CredentialsError(f"cannot read the token file {self._path}: {error}") from error
        return self._cached[1]


def discover(issuer: str, http: httpx.Client) -> dict[str, Any]:
    """The issuer's OIDC discovery document."""
    try:
        response = http.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
        response.raise_for_status()
        return response.json()
    except httpx.HTTPError as error:
        raise IssuerUnreachable(f"cannot reach the identity service at {issuer}: {error}") from error


def _token_error(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('error', response.status_code)}: {body.get('error_description', '')}".rstrip(": ")
    except ValueError:
        return f"HTTP {response.status_code}"


def _renew_at(issued: float, expires_in: float) -> float:
    return issued + expires_in - min(RENEW_MARGIN_SECONDS, expires_in / 10)


class ClientCredentialsToken:
    """A robot's token from the client_credentials grant, renewed before it expires."""

    def __init__(self, issuer: str, client_id: str, client_secret: str) -> None:
        self._issuer = issuer
        self._client_id = client_id
        self._client_secret = client_secret
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0
        self._token_endpoint = ""

    def token(self) -> str:
        with self._lock:
            if not self._token or time.time() >= self._renew_at:
                self._fetch()
            return self._token

    def _fetch(self) -> None:
        with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as http:
            if not self._token_endpoint:
                self._token_endpoint = discover(self._issuer, http)["token_endpoint"]
            issued = time.time()
            try:
                response = http.post(
                    self._token_endpoint,
                    data={"grant_type": "client_credentials"},
                    auth=(self._client_id, self._client_secret),
                )
            except httpx.HTTPError as error:
                raise IssuerUnreachable(f"cannot reach the identity service at {self._issuer}: {error}") from error
        if response.status_code != 200:
            raise CredentialsError(f"client {self._client_id} was refused a token: {_token_error(response)}")
        body = response.json()
        self._token = body["access_token"]
        self._renew_at = _renew_at(issued, float(body.get("expires_in", 3600)))


def login_file(settings: CallerSettings) -> Path:
    return settings.config_dir / LOGIN_FILE


def write_login(path: Path, issuer: str, client_id: str, response: dict[str, Any], issued: float) -> None:
    """Keep a token response from a sign-in (or a refresh) in `path`, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = {
        "issuer": issuer,
        "client_id": client_id,
        "access_token": response["access_token"],
        "refresh_token": response.get("refresh_token", ""),
        "expires_at": issued + float(response.get("expires_in", 3600)),
        "token_type": "Bearer",
    }
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


class LoginToken:
    """A person's token from `panda login`, refreshed with its refresh token when it nears expiry."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            record = self._read()
            expires_at = float(record.get("expires_at", 0))
            lifetime_left = expires_at - time.time()
            if lifetime_left > min(RENEW_MARGIN_SECONDS, 60.0):
                return str(record["access_token"])
            return self._refresh(record)

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self._path.read_text())
        except FileNotFoundError:
            raise CredentialsError("not signed in: run `panda login`") from None
        except (OSError, ValueError) as error:
            raise CredentialsError(f"cannot read {self._path} ({error}): run `panda login` again") from error

    def _refresh(self, record: dict[str, Any]) -> str:
        if not record.get("refresh_token"):
            raise CredentialsError("your sign-in has expired: run `panda login`")
        issuer, client_id = str(record["issuer"]), str(record.get("client_id", "panda-cli"))
        with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as http:
            endpoint = discover(issuer, http)["token_endpoint"]
            issued = time.time()
            try:
                response = http.post(
                    endpoint,
                    data={"grant_type": "refresh_token", "refresh_token": record["refresh_token"],
                          "client_id": client_id},
                )
            except httpx.HTTPError as error:
                raise IssuerUnreachable(f"cannot reach the identity service at {issuer}: {error}") from error
        if response.status_code != 200:
            raise CredentialsError(f"your sign-in has expired ({_token_error(response)}): run `panda login`")
        body = response.json()
        write_login(self._path, issuer, client_id, body, issued)
        return str(body["access_token"])


def credentials_from_settings(settings: CallerSettings) -> TokenSource | None:
    """This process's token source, first found of: PANDA_TOKEN, PANDA_TOKEN_FILE, a robot's
    PANDA_CLIENT_ID/PANDA_CLIENT_SECRET (from PANDA_IAM_ISSUER), the signed-in user's
    file. None when there is none (a call will then be refused as unauthenticated)."""
    if settings.token:
        return StaticToken(settings.token)
    if settings.token_file:
        return FileToken(Path(settings.token_file))
    if settings.client_id:
        if not settings.client_secret:
            raise CredentialsError("PANDA_CLIENT_ID is set but PANDA_CLIENT_SECRET is not")
        return ClientCredentialsToken(settings.iam_issuer, settings.client_id, settings.client_secret)
    path = login_file(settings)
    if path.exists():
        return LoginToken(path)
    return None
