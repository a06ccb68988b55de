"""The command line's clients of the services: panda_runtime's clients with this user's token
(see panda_runtime.client.credentials) and what to tell a person when nothing answers."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from panda_runtime.client import ConnectConfig, IamClient, JediClient, ServerClient
from panda_runtime.client.credentials import TokenSource

from .settings import CliSettings

__all__ = ["all_pages", "first_rows", "iam_client", "jedi_client", "server_client"]

SERVER_HINT = "is `panda up` running? set PANDA_SERVER or --server"
JEDI_HINT = "is `panda up` running? set PANDA_JEDI or --jedi"
IAM_HINT = "is `panda up` running? set PANDA_IAM or --iam"


def _config(address: str, hint: str, tokens: TokenSource | None = None, **overrides: Any) -> ConnectConfig:
    overrides["unreachable_hint"] = hint
    if tokens is not None:
        overrides["tokens"] = tokens
    return ConnectConfig.from_settings(address, CliSettings(), **overrides)


def server_client(address: str, *, tokens: TokenSource | None = None, **overrides: Any) -> ServerClient:
    """The server at `address` (main() resolves --server), with `tokens` or the user's token;
    `overrides` set the connection's other fields (ConnectConfig: deadline, retry, ...)."""
    return ServerClient(_config(address, SERVER_HINT, tokens, **overrides))


def jedi_client(args: argparse.Namespace) -> JediClient:
    """JEDI at --jedi, else PANDA_JEDI (or the settings file's), else its default address."""
    return JediClient(_config(getattr(args, "jedi", None) or CliSettings().jedi_address, JEDI_HINT))


def iam_client(args: argparse.Namespace) -> IamClient:
    """The identity service at --iam, else PANDA_IAM (or the settings file's), else its default."""
    return IamClient(_config(getattr(args, "iam", None) or CliSettings().iam_address, IAM_HINT))


class _PagedRequest(Protocol):
    page_size: int
    page_token: str


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


RequestT = TypeVar("RequestT", bound=_PagedRequest)
PageT = TypeVar("PageT", bound=_Page)
RowT = TypeVar("RowT")


def all_pages(method: Callable[[RequestT], PageT], request: RequestT) -> Iterator[PageT]:
    """Every page of a List call, from `request`'s page on."""
    while True:
        page = method(request)
        yield page
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


def first_rows(
    method: Callable[[RequestT], PageT], request: RequestT, rows: Callable[[PageT], Sequence[RowT]], limit: int
) -> tuple[list[RowT], PageT]:
    """Up to `limit` rows of a List call, from `request`'s page on, however small the service's
    largest page is (1,000): it asks for what is still missing until it has `limit` or the list
    ends. Also the last page read: its next_page_token continues right after the rows returned,
    its total_size (where there is one) counts every row that matched."""
    found: list[RowT] = []
    while True:
        request.page_size = limit - len(found)
        page = method(request)
        found.extend(rows(page))
        if len(found) >= limit or not page.next_page_token:
            return found, page
        request.page_token = page.next_page_token
