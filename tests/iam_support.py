"""What the identity service's tests share: `panda serve iam` started on a database with known
people and robots, a browser that fills in the device page's forms as a person would, and
helpers to call IamService and verify tokens as the services do."""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import grpc
import httpx
from sqlalchemy import Engine

from iam_svc.main import IamSettings, Person, Robot, issue_user_tokens, provision
from panda.iam.v1 import iam_service_pb2_grpc
from panda_cli.launcher import spawn, wait_healthy
from panda_runtime.client.channels import sync_channel
from panda_runtime.client.credentials import StaticToken
from panda_runtime.service.auth import TokenAuthenticator
from panda_runtime.service.db import make_engine
from panda_runtime.service.principals import Principal
from tools.cluster import IdentityHandle, free_port

# People (password "<name>-password") and robots (groups, queues) every instance starts with.
USERS: dict[str, list[str]] = {
    "admin": ["/panda", "/panda/admin"],
    "alice": ["/panda", "/panda/production"],
    "bob": ["/panda"],
}
ROBOTS: dict[str, tuple[list[str], list[str]]] = {
    "panda-pilot": (["/panda/pilot"], ["*"]),
    "site-pilot": (["/panda/pilot"], ["local", "local-b"]),
    "panda-jedi": (["/panda/service"], []),
}
# Polling every second keeps the device flow quick; everything else stays at its default.
IAM_TEST_ENV = {"PANDA_IAM_DEVICE_POLL_SECONDS": "1"}
USER_CODE = re.compile(r"\b([B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4})\b")


@dataclass
class Iam(IdentityHandle):
    """The identity service as `panda serve iam` runs it, and the engine of its database."""

    engine: Engine | None = None

    def start(self) -> None:
        self.process = spawn("iam", [sys.executable, "-m", "panda_cli.main", "serve", "iam"], self.env,
                             self.data_dir / "logs" / "iam.log")
        wait_healthy(self.process, self.address)

    @property
    def settings(self) -> IamSettings:
        return IamSettings(database_url=self.database_url, iam_issuer=self.issuer, auth_issuers=[self.issuer])

    def db(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def user_tokens(self, user: str) -> dict[str, object]:
        """A full token response (with a refresh token) for `user`, as after `panda login`."""
        return dict(issue_user_tokens(self.settings, user))

    def cli_env(self, config_home: Path, token: str = "") -> dict[str, str]:
        """The environment of a `panda` command talking to this instance (and nothing else)."""
        return {
            "PANDA_IAM": self.address, "PANDA_AUTH_ISSUERS": self.issuer, "PANDA_IAM_ISSUER": self.issuer,
            "PANDA_AUTH_MODE": "token", "XDG_CONFIG_HOME": str(config_home), "PANDA_TOKEN": token,
            "PANDA_TOKEN_FILE": "", "PANDA_CLIENT_ID": "", "PANDA_CLIENT_SECRET": "",
        }


def start_iam_beside(iam: Iam, **env: str) -> Iam:
    """A second identity service process on `iam`'s database (its people, robots and keys), on
    ports of its own, with `env` on top; nothing is provisioned again."""
    address, http_port = f"127.0.0.1:{free_port()}", free_port()
    handle = Iam(address, http_port, 0, iam.database_url, iam.data_dir / f"beside-{http_port}")
    handle.env = {**iam.env, "PANDA_IAM": address, "PANDA_IAM_HTTP_PORT": str(http_port),
                  "PANDA_IAM_METRICS_PORT": "0", **env}
    handle.secrets, handle.tokens = dict(iam.secrets), dict(iam.tokens)
    handle.start()
    return handle


def start_iam_cli(data_dir: Path, database_url: str) -> Iam:
    address, http_port, metrics_port = f"127.0.0.1:{free_port()}", free_port(), free_port()
    handle = Iam(address, http_port, metrics_port, database_url, data_dir)
    handle.env = {
        "PANDA_DATA_DIR": str(data_dir), "PANDA_DATABASE_URL": database_url, "PANDA_IAM": address,
        "PANDA_IAM_HTTP_PORT": str(http_port), "PANDA_IAM_METRICS_PORT": str(metrics_port),
        **handle.trust_env(), **IAM_TEST_ENV,
    }
    handle.engine = make_engine(database_url, pool_size=2)
    provisioned = provision(
        handle.settings,
        people=[Person(name, groups=groups, password=f"{name}-password") for name, groups in USERS.items()],
        robots=[Robot(client_id, groups=groups, queues=queues) for client_id, (groups, queues) in ROBOTS.items()],
        sign_in=list(USERS),
    )
    handle.secrets = dict(provisioned.secrets)
    handle.tokens = {name: response["access_token"] for name, response in provisioned.tokens.items()}
    handle.start()
    return handle


def iam_stub(iam: Iam, user: str | None) -> iam_service_pb2_grpc.IamServiceStub:
    """IamService as `user` (None: without a token)."""
    channel: grpc.Channel = sync_channel(iam.address, StaticToken(iam.token(user)) if user else None)
    return iam_service_pb2_grpc.IamServiceStub(channel)


def verify(iam: Iam, token: str) -> Principal:
    """The token as every service checks it: a fresh TokenAuthenticator trusting this issuer."""
    async def check() -> Principal:
        authenticator = TokenAuthenticator([iam.issuer], audience="panda-mesh", jwks_min_refresh_seconds=0)
        try:
            return await authenticator.verify(token)
        finally:
            await authenticator.close()

    return asyncio.run(check())


# --- a browser, as far as the device page needs one ----------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type") == "submit":
                self.forms[-1].buttons.append((a["name"], a.get("value", "")))
            else:
                self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms:
            self.forms[-1].buttons.append((a.get("name", ""), a.get("value", "")))


@dataclass
class Page:
    url: str
    status: int
    html: str

    @property
    def text(self) -> str:
        """What a person reads: the page without its tags, whitespace folded."""
        body = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", self.html, flags=re.S)
        return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())

    def form(self) -> Form:
        parser = _Forms()
        parser.feed(self.html)
        assert len(parser.forms) == 1, f"expected one form on {self.url}: {self.text}"
        return parser.forms[0]


def http_from(address: str | None = None, **options: object) -> httpx.Client:
    """An HTTP client whose connections leave from `address` (any 127.x.y.z reaches a service on
    127.0.0.1), so that the service sees another client address; None: the default one."""
    transport = httpx.HTTPTransport(local_address=address) if address else None
    return httpx.Client(timeout=15, transport=transport, **options)  # type: ignore[arg-type]  # options are httpx's


class Browser:
    """Keeps cookies, follows the page's own form (its action, hidden fields and buttons); its
    connections leave from `address` (http_from)."""

    def __init__(self, address: str | None = None) -> None:
        self.http = http_from(address, follow_redirects=True)

    def open(self, url: str) -> Page:
        response = self.http.get(url)
        return Page(str(response.url), response.status_code, response.text)

    def submit(self, page: Page, fill: dict[str, str] | None = None, button: str | None = None) -> Page:
        form = page.form()
        data = {**form.fields, **(fill or {})}
        if button is not None:
            name, value = next((b for b in form.buttons if b[1] == button), ("", ""))
            assert name, f"no {button!r} button on {page.url}: {form.buttons}"
            data[name] = value
        assert form.method == "post"
        response = self.http.post(urljoin(page.url, form.action), data=data)
        return Page(str(response.url), response.status_code, response.text)

    def close(self) -> None:
        self.http.close()


def sign_in_and_decide(url: str, user: str, password: str, decision: str = "approve",
                       user_code: str | None = None) -> tuple[Page, Page]:
    """Opens `url` (the verification URI, with or without the code), signs in, and clicks
    Approve or Deny. Returns the consent page and the page after the decision."""
    browser = Browser()
    try:
        page = browser.open(url)
        fill = {"username": user, "password": password}
        if user_code is not None:
            fill["user_code"] = user_code
        consent = browser.submit(page, fill)
        assert consent.status == 200, consent.text
        return consent, browser.submit(consent, button=decision)
    finally:
        browser.close()
