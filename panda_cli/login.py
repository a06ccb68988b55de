"""Signing in and out: `panda login` (OAuth device flow, RFC 8628), `panda logout` and
`panda whoami` (their parsers: commands/login.py). The tokens live in <config dir>/token.json
(mode 0600), the file panda_runtime.client.credentials reads and refreshes."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt

from panda.iam.v1 import iam_service_pb2
from panda_runtime.client.credentials import CredentialsError, discover, login_file, write_login

from . import output
from .clients import iam_client
from .errors import CliError, ExitCode, exit_code_of
from .output import format_duration, format_time, render_fields
from .settings import CliSettings

__all__ = [
    "CLI_CLIENT_ID", "HTTP_TIMEOUT_SECONDS", "LOGIN_SCOPE", "SLOW_DOWN_STEP_SECONDS", "cmd_login", "cmd_logout",
    "cmd_whoami", "login_issuer", "render_identity",
]

CLI_CLIENT_ID = "panda-cli"
# What the command line asks for: who the person is, their groups, and a refresh token.
LOGIN_SCOPE = "openid profile email offline_access wlcg.groups"
HTTP_TIMEOUT_SECONDS = 10.0
# RFC 8628 §3.5: slow_down adds five seconds to the interval.
SLOW_DOWN_STEP_SECONDS = 5
SIGN_IN_EXPIRED = "sign-in expired: the code was not approved in time; run `panda login` again"


def login_issuer(args: argparse.Namespace, settings: CliSettings) -> str:
    """--issuer, else the first issuer this installation trusts (signing in anywhere else would
    give tokens no service accepts), else the embedded identity service's."""
    if args.issuer:
        return str(args.issuer).rstrip("/")
    return (settings.auth_issuers[0] if settings.auth_issuers else settings.iam_issuer).rstrip("/")


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
        return str(body.get("error", "")), str(body.get("error_description", ""))
    except ValueError:
        return f"HTTP {response.status_code}", response.text[:200]


def _post(http: httpx.Client, url: str, data: dict[str, str], issuer: str) -> httpx.Response:
    try:
        return http.post(url, data=data)
    except httpx.HTTPError as error:
        raise CliError(f"cannot reach the identity service at {issuer}: {error}", ExitCode.UNREACHABLE) from None


def cmd_login(args: argparse.Namespace) -> int:
    settings = CliSettings()
    issuer = login_issuer(args, settings)
    path = login_file(settings)
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as http:
        try:
            document = discover(issuer, http)
        except CredentialsError as error:
            raise CliError(str(error), exit_code_of(error)) from None
        device_endpoint, token_endpoint = document.get("device_authorization_endpoint"), document.get("token_endpoint")
        if not device_endpoint or not token_endpoint:
            raise CliError(f"the identity service at {issuer} does not offer the device flow (RFC 8628)")
        response = _post(http, device_endpoint, {"client_id": CLI_CLIENT_ID, "scope": LOGIN_SCOPE}, issuer)
        if response.status_code != 200:
            code, description = _error_of(response)
            raise CliError(f"the identity service refused to start a sign-in: {code}: {description}")
        start = response.json()
        _tell_person(start)
        tokens, issued = _poll(http, token_endpoint, start, issuer)
    write_login(path, issuer, CLI_CLIENT_ID, tokens, issued)
    claims = _unverified_claims(tokens["access_token"])
    groups = ", ".join(claims.get("wlcg.groups", [])) or "none"
    print(f"Signed in as {claims.get('sub', '?')} (groups: {groups}). Token saved in {path}.")
    return 0


def _tell_person(start: dict[str, Any]) -> None:
    minutes = max(1, round(int(start.get("expires_in", 600)) / 60))
    lines = [
        f"To sign in, open {start['verification_uri']} in a browser and enter the code:",
        "",
        f"    {start['user_code']}",
        "",
    ]
    if start.get("verification_uri_complete"):
        lines.append(f"or open {start['verification_uri_complete']} (the code filled in).")
    lines.append(f"Waiting for you to approve (the code expires in {minutes} minute{'s' if minutes != 1 else ''})...")
    print("\n".join(lines), flush=True)


def _poll(http: httpx.Client, token_endpoint: str, start: dict[str, Any], issuer: str) -> tuple[dict[str, Any], float]:
    """Polls the token endpoint at the interval asked for until the person decides."""
    interval = float(start.get("interval", 5))
    deadline = time.monotonic() + float(start.get("expires_in", 600)) + interval
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": start["device_code"],
            "client_id": CLI_CLIENT_ID}
    while time.monotonic() < deadline:
        time.sleep(interval)
        issued = time.time()
        response = _post(http, token_endpoint, form, issuer)
        if response.status_code == 200:
            return response.json(), issued
        error, description = _error_of(response)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_STEP_SECONDS
            continue
        if error == "access_denied":
            raise CliError("sign-in denied: the request was denied in the browser; nothing was saved", ExitCode.DENIED)
        if error == "expired_token":
            raise CliError(SIGN_IN_EXPIRED, ExitCode.DENIED)
        raise CliError(f"sign-in failed: {error}: {description}")
    raise CliError(SIGN_IN_EXPIRED, ExitCode.DENIED)


def _unverified_claims(token: str) -> dict[str, Any]:
    """For telling the person who they are; the services verify the token, not this."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}


def cmd_logout(args: argparse.Namespace) -> int:
    settings = CliSettings()
    path = login_file(settings)
    if not path.exists():
        print("not signed in")
        return 0
    revoked = _revoke(path)
    path.unlink()
    print(f"Signed out{' (the sign-in is revoked)' if revoked else ''}: removed {path}.")
    return 0


def _revoke(path: Path) -> bool:
    """Revokes the refresh token where it was issued; best effort, the file goes anyway."""
    try:
        record = json.loads(path.read_text())
        issuer, refresh_token = str(record.get("issuer", "")), str(record.get("refresh_token", ""))
        if not issuer or not refresh_token:
            return False
        with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as http:
            endpoint = discover(issuer, http).get("revocation_endpoint")
            if not endpoint:
                return False
            response = http.post(endpoint, data={"token": refresh_token, "token_type_hint": "refresh_token",
                                                 "client_id": str(record.get("client_id", CLI_CLIENT_ID))})
            return response.status_code == 200
    except (OSError, ValueError, httpx.HTTPError, CredentialsError):
        return False


def cmd_whoami(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        me = client.iam.WhoAmI(iam_service_pb2.WhoAmIRequest())
    return output.show(me, render_identity, as_json=args.json)


def render_identity(me: iam_service_pb2.WhoAmIResponse) -> str:
    expiry = "-"
    if me.HasField("expire_time"):
        left = me.expire_time.seconds - datetime.now(UTC).timestamp()
        expiry = f"{format_time(me.expire_time)} (in {format_duration(left)})" if left > 0 else "expired"
    return render_fields([
        ("subject", me.subject),
        ("issuer", me.issuer),
        ("client", me.client_id),
        ("groups", ", ".join(me.groups)),
        ("roles", ", ".join(me.roles)),
        ("queues", ", ".join(me.queues)),
        ("expires", expiry),
    ])
