"""An OpenID Connect provider that is not PanDA mesh's own: oidc-provider from npm
(tests/external_oidc/provider.mjs), run with node on loopback for the tests that load these
fixtures with `pytest_plugins = ["tests.external_oidc_fixtures"]`.

Its robot client gets RS256 JWT access tokens through the client_credentials grant, carrying
`wlcg.groups` (["/panda"] unless told otherwise), for the audience named by a resource indicator.
It needs the npm packages of package.json (`npm ci` at the top of the repository)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from panda_cli.launcher import Process, spawn
from tools.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_SCRIPT = ROOT / "tests" / "external_oidc" / "provider.mjs"
PROVIDER_PACKAGE = ROOT / "node_modules" / "oidc-provider" / "package.json"

CLIENT_ID = "external-robot"
CLIENT_SECRET = "external-robot-secret"
GROUPS = ("/panda",)
# The provider turns this resource indicator (an absolute URI, as RFC 8707 wants) into `aud`.
RESOURCE_PREFIX = "urn:panda:audience:"
READY_TIMEOUT_SECONDS = 20.0


@dataclass
class ExternalIssuer:
    """A running external provider: its issuer URL, and robot tokens from it."""

    issuer: str
    client_id: str
    client_secret: str
    groups: tuple[str, ...]
    process: Process
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0), repr=False)

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    def token(self, audience: str = "panda-mesh") -> str:
        """A fresh access token (client_credentials) for `audience`."""
        reply = self._http.post(
            self.token_endpoint,
            data={"grant_type": "client_credentials", "resource": RESOURCE_PREFIX + quote(audience, safe="")},
            auth=(self.client_id, self.client_secret),
        )
        if reply.status_code != 200:
            raise AssertionError(
                f"token request to {self.token_endpoint} failed: {reply.status_code} {reply.text}\n"
                f"provider log:\n{self.process.log()[-4000:]}"
            )
        return str(reply.json()["access_token"])

    def close(self) -> None:
        self._http.close()


def start_external_issuer(log_dir: Path, groups: tuple[str, ...] = GROUPS) -> ExternalIssuer:
    """Start the provider on a free loopback port and wait until it says READY."""
    if not PROVIDER_PACKAGE.exists():
        pytest.fail(
            f"the external OIDC provider needs the npm package oidc-provider, missing from {PROVIDER_PACKAGE.parent}: "
            f"run `npm ci` in {ROOT}",
            pytrace=False,
        )
    node = shutil.which("node")
    if node is None:
        pytest.fail("the external OIDC provider needs Node.js (`node` on PATH), then `npm ci`", pytrace=False)
    port = free_port()
    log_path = log_dir / "external-oidc.log"
    process = spawn(
        "external-oidc",
        [node, str(PROVIDER_SCRIPT), str(port)],
        {"OIDC_CLIENT_ID": CLIENT_ID, "OIDC_CLIENT_SECRET": CLIENT_SECRET, "OIDC_GROUPS": ",".join(groups)},
        log_path,
    )
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while f"READY {issuer}" not in process.log():
        if not process.alive():
            raise RuntimeError(
                f"the external OIDC provider exited with {process.returncode} before it was ready:\n"
                f"{process.log()[-4000:]}"
            )
        if time.monotonic() > deadline:
            process.stop()
            raise TimeoutError(
                f"the external OIDC provider did not say READY within {READY_TIMEOUT_SECONDS:.0f} s:\n"
                f"{process.log()[-4000:]}"
            )
        time.sleep(0.05)
    return ExternalIssuer(issuer, CLIENT_ID, CLIENT_SECRET, tuple(groups), process)


@pytest.fixture(scope="module")
def external_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalIssuer]:
    """A running external OIDC provider (see the module's doc), stopped by its PID at the end."""
    provider = start_external_issuer(tmp_path_factory.mktemp("external-oidc"))
    try:
        yield provider
    finally:
        provider.close()
        provider.process.stop()
